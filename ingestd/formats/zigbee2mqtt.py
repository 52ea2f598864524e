"""Zigbee2MQTT: `zigbee2mqtt/<friendly_name>` with the device's state as a JSON object.

- Topic: `zigbee2mqtt/#`; a friendly name may contain `/` (`livingroom/door`), so the device
  is every level after the base. With `output: attribute` a reading also arrives as a bare
  value on `<base>/<name>/<attribute>`: a payload that is not a JSON object names its field
  by the last level. A different `base_topic`: `topic = "<base>/#"`.
- Measurement `zigbee2mqtt`; tags `device` (the friendly name), and `model` and `manufacturer`
  when `include_device_information` adds the `device` object, whose other keys are metadata.
- Time: `last_seen` when the bridge adds it (ISO 8601 or epoch ms), else the receive time.
- Skipped: `bridge/*` (bridge state, logging, devices), `/availability`, and the `/set` and
  `/get` commands. An empty payload (attribute output of null) is no reading.
"""

from __future__ import annotations

from ingestd.decode import parse_bare
from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    flat_fields,
    payload_time,
    reading,
    tags_of,
)

_COMMANDS = frozenset({"set", "get"})
_METADATA = frozenset({"last_seen", "device"})


def samples(message: FormatInput) -> Samples:
    rest = message.rest
    if not rest or rest[0] == "bridge" or rest[-1] == "availability":
        return None
    if any(level in _COMMANDS for level in rest[1:]):
        return None
    data = parse_bare(message.payload)
    if isinstance(data, dict):
        device_info = data.get("device")
        info = device_info if isinstance(device_info, dict) else {}
        tags = tags_of(
            ("device", "/".join(rest)),
            ("model", info.get("modelID") or info.get("modelId") or info.get("model")),
            ("manufacturer", info.get("manufName") or info.get("manufacturer")),
        )
        readings = {key: value for key, value in data.items() if key not in _METADATA}
        fields = flat_fields(readings, message.max_readings)
        stamp = payload_time(data.get("last_seen"), message.timezone)
        return [Sample("zigbee2mqtt", tags, fields, stamp)]
    if len(rest) < 2:
        field = "state"
        device = rest[0]
    else:
        field, device = rest[-1], "/".join(rest[:-1])
    return [Sample("zigbee2mqtt", tags_of(("device", device)), [(field, reading(data))], None)]


FORMAT = Format("zigbee2mqtt", ("zigbee2mqtt/#",), samples)
