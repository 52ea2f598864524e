"""ChirpStack v4: `application/<application_id>/device/<dev_eui>/event/up` uplink events, JSON.

- Topic: `application/{application_id}/device/{dev_eui}/event/up`. Measurement `chirpstack`;
  tags `application_id`, `dev_eui`, and from `deviceInfo` the `device_name`,
  `application_name` and `device_profile_name`.
- Fields: `object` (the device profile codec's decoded data, flattened; without a codec there
  is none), plus `rssi` and `snr` of the first gateway in `rxInfo`, `f_cnt` and `dr`.
- Time: `time` (ISO 8601, nanoseconds kept), else the receive time.
- Skipped: every other event (`join`, `status`, `ack`, `txack`, `log`, `location`,
  `integration`): they are not readings.
"""

from __future__ import annotations

from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    flat_fields,
    json_object,
    path_value,
    payload_time,
    tags_of,
)


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if levels[-2:] != ["event", "up"]:
        return None
    data = json_object(message.payload)
    info = path_value(data, "deviceInfo")
    tags = tags_of(
        (
            "application_id",
            message.segments.get("application_id", path_value(info, "applicationId")),
        ),
        ("dev_eui", message.segments.get("dev_eui", path_value(info, "devEui"))),
        ("device_name", path_value(info, "deviceName")),
        ("application_name", path_value(info, "applicationName")),
        ("device_profile_name", path_value(info, "deviceProfileName")),
    )
    decoded = data.get("object")
    fields = flat_fields(decoded, message.max_readings) if isinstance(decoded, dict) else []
    gateway = path_value(data, "rxInfo", 0)
    radio = (
        ("rssi", path_value(gateway, "rssi")),
        ("snr", path_value(gateway, "snr")),
        ("f_cnt", data.get("fCnt")),
        ("dr", data.get("dr")),
    )
    fields.extend((key, value) for key, value in radio if value is not None)
    return [Sample("chirpstack", tags, fields, payload_time(data.get("time"), message.timezone))]


FORMAT = Format("chirpstack", ("application/{application_id}/device/{dev_eui}/event/up",), samples)
