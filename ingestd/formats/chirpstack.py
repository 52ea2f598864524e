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
    payload_time,
    tags_of,
)


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if levels[-2:] != ["event", "up"]:
        return None
    data = json_object(message.payload)
    info = data.get("deviceInfo")
    info = info if isinstance(info, dict) else {}
    tags = tags_of(
        ("application_id", message.segments.get("application_id", info.get("applicationId"))),
        ("dev_eui", message.segments.get("dev_eui", info.get("devEui"))),
        ("device_name", info.get("deviceName")),
        ("application_name", info.get("applicationName")),
        ("device_profile_name", info.get("deviceProfileName")),
    )
    decoded = data.get("object")
    fields = flat_fields(decoded, message.max_readings) if isinstance(decoded, dict) else []
    rx = data.get("rxInfo")
    gateway = rx[0] if isinstance(rx, list) and rx and isinstance(rx[0], dict) else {}
    radio = (
        ("rssi", gateway.get("rssi")),
        ("snr", gateway.get("snr")),
        ("f_cnt", data.get("fCnt")),
        ("dr", data.get("dr")),
    )
    fields.extend((key, value) for key, value in radio if value is not None)
    return [Sample("chirpstack", tags, fields, payload_time(data.get("time"), message.timezone))]


FORMAT = Format("chirpstack", ("application/{application_id}/device/{dev_eui}/event/up",), samples)
