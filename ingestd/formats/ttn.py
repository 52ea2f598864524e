"""The Things Stack v3 (The Things Network): `v3/<app>@<tenant>/devices/<device>/up` uplinks.

- Topic: `v3/+/devices/+/up`. Measurement `ttn`; tags `application_id`, `device_id`, `dev_eui`
  (from `end_device_ids`) and `model_id` when the device repository names one.
- Fields: `uplink_message.decoded_payload`, flattened (its schema is the application's payload
  formatter, so are its units), plus `rssi` and `snr` of the first gateway in `rx_metadata`,
  the frame counter `f_cnt` and the network's `last_battery_percentage`.
  Without a formatter there is no `decoded_payload`: only the radio fields are stored.
- Time: `received_at` (top level, else the uplink's, else the first gateway's `time`), with all
  nine fractional digits.
- Skipped: every topic but `/up` (`/join`, `/down/*`, `/service/*`) under a wider filter.
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
    if message.levels[-1] != "up":
        return None
    data = json_object(message.payload)
    uplink = path_value(data, "uplink_message")
    ids = path_value(data, "end_device_ids")
    tags = tags_of(
        ("application_id", path_value(ids, "application_ids", "application_id")),
        ("device_id", path_value(ids, "device_id")),
        ("dev_eui", path_value(ids, "dev_eui")),
        ("model_id", path_value(uplink, "version_ids", "model_id")),
    )
    decoded = path_value(uplink, "decoded_payload")
    fields = flat_fields(decoded, message.max_readings) if isinstance(decoded, dict) else []
    gateway = path_value(uplink, "rx_metadata", 0)
    radio = (
        ("rssi", path_value(gateway, "rssi")),
        ("snr", path_value(gateway, "snr")),
        ("f_cnt", path_value(uplink, "f_cnt")),
        ("last_battery_percentage", path_value(uplink, "last_battery_percentage", "value")),
    )
    fields.extend((key, value) for key, value in radio if value is not None)
    received = (
        path_value(data, "received_at")
        or path_value(uplink, "received_at")
        or path_value(gateway, "time")
    )
    return [Sample("ttn", tags, fields, payload_time(received, message.timezone))]


FORMAT = Format("ttn", ("v3/+/devices/+/up",), samples)
