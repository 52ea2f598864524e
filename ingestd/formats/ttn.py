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

from typing import Any

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


def _get(node: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and len(node) > part else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def samples(message: FormatInput) -> Samples:
    if message.levels[-1] != "up":
        return None
    data = json_object(message.payload)
    uplink = _get(data, "uplink_message")
    ids = _get(data, "end_device_ids")
    tags = tags_of(
        ("application_id", _get(ids, "application_ids", "application_id")),
        ("device_id", _get(ids, "device_id")),
        ("dev_eui", _get(ids, "dev_eui")),
        ("model_id", _get(uplink, "version_ids", "model_id")),
    )
    decoded = _get(uplink, "decoded_payload")
    fields = flat_fields(decoded, message.max_readings) if isinstance(decoded, dict) else []
    gateway = _get(uplink, "rx_metadata", 0)
    radio = (
        ("rssi", _get(gateway, "rssi")),
        ("snr", _get(gateway, "snr")),
        ("f_cnt", _get(uplink, "f_cnt")),
        ("last_battery_percentage", _get(uplink, "last_battery_percentage", "value")),
    )
    fields.extend((key, value) for key, value in radio if value is not None)
    received = _get(data, "received_at") or _get(uplink, "received_at") or _get(gateway, "time")
    return [Sample("ttn", tags, fields, payload_time(received, message.timezone))]


FORMAT = Format("ttn", ("v3/+/devices/+/up",), samples)
