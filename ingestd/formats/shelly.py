"""Shelly: Gen1 `shellies/<id>/...` bare values, Gen2/Gen3 RPC notifications and status.

- Topics: `shellies/#` (Gen1), `+/events/rpc` and `+/status/+` (Gen2/Gen3, whose topic prefix
  defaults to the device id).
- Measurement `shelly`; tag `device`.
  - Gen1: `relay/<n>` is field `state` tagged `relay=<n>`; `relay/<n>/power` field `power`;
    `emeter/<n>/<x>` (and `roller`, `light`, `input`, ...) field `<x>` tagged `channel=<n>`; a
    bare `temperature` is field `temperature`. Relay `energy` is in watt-minutes and becomes Wh;
    `temperature_f` becomes °C in field `temperature`.
  - Gen2/3 `events/rpc`: `NotifyStatus` and `NotifyFullStatus` give one point per component
    (`switch:0`, `input:0`, `sys`, `wifi`), tagged `component`; `device` is `src`, and
    `topic_prefix` the topic's first level when it differs. Time: `params.ts` (epoch seconds).
  - Gen2/3 `status/<component>`: the component's full status, at receive time.
  - `temperature: {tC, tF}` is field `temperature` in °C; `aenergy.by_minute` (mWh per minute)
    and `minute_ts` are bookkeeping and left out, and so are `sys.time` and `sys.unixtime`.
- Skipped: `online`, `announce`, `info`, Gen1 `command` topics, `NotifyEvent`, and the
  connection flags of the `mqtt`, `cloud`, `ws` and `ble` components.
"""

from __future__ import annotations

from typing import Any

from ingestd.decode import parse_bare
from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    Tags,
    fahrenheit_to_celsius,
    flat_fields,
    json_object,
    payload_time,
    reading,
    tags_of,
)

_GEN1_SKIP = frozenset({"online", "announce", "info", "command", "set"})
_CONNECTIONS = frozenset({"mqtt", "cloud", "ws", "ble"})
# per-minute energy history and clock readings: bookkeeping, and `time` is InfluxDB's own key
_BOOKKEEPING = ("by_minute", "minute_ts")
_CLOCK = frozenset({"time", "unixtime"})
_NOTIFY = frozenset({"NotifyStatus", "NotifyFullStatus"})


def _gen1(message: FormatInput) -> Samples:
    rest = message.rest
    if len(rest) < 2 or any(level in _GEN1_SKIP for level in rest):
        return None
    device, path = rest[0], rest[1:]
    tags: Tags = (("device", device),)
    value = reading(parse_bare(message.payload))
    if len(path) == 1:
        field = path[0]
    elif path[1].isdigit():
        tag = "relay" if path[0] == "relay" else "channel"
        tags = (*tags, (tag, path[1]))
        field = path[2] if len(path) > 2 else ("state" if path[0] == "relay" else path[0])
        if path[0] == "relay" and field == "energy" and isinstance(value, float):
            value = value / 60  # watt-minutes
    else:
        field = "_".join(path[1:]) if path[0] == "relay" else "_".join(path)
    if field.endswith("_f"):
        field, value = field[:-2], fahrenheit_to_celsius(value)
    if isinstance(value, dict):
        return [Sample("shelly", tags, flat_fields(value, message.max_readings, field), None)]
    return [Sample("shelly", tags, [(field, value)], None)]


def _component(
    name: str, status: Any, tags: Tags, stamp: int | None, max_readings: int
) -> Sample | None:
    if not isinstance(status, dict) or name.split(":", maxsplit=1)[0] in _CONNECTIONS:
        return None
    fields = []
    for key, value in flat_fields(status, max_readings):
        if key == "id" or key in _CLOCK or any(part in key for part in _BOOKKEEPING):
            continue
        if key.endswith(".tF"):
            continue  # the same reading as .tC
        fields.append((key.removesuffix(".tC"), value))
    if not fields:
        return None
    return Sample("shelly", (*tags, ("component", name)), fields, stamp)


def _rpc(message: FormatInput) -> Samples:
    data = json_object(message.payload)
    params = data.get("params")
    if data.get("method") not in _NOTIFY or not isinstance(params, dict):
        return None
    source = data.get("src")
    prefix = message.levels[0]
    tags = tags_of(
        ("device", source or prefix), ("topic_prefix", prefix if source != prefix else None)
    )
    stamp = payload_time(params.get("ts"), message.timezone, "s")
    out = []
    for name, status in params.items():
        sample = _component(name, status, tags, stamp, message.max_readings)
        if sample is not None:
            out.append(sample)
    return out or None


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if levels[0] == "shellies":
        return _gen1(message._replace(rest=levels[1:]))
    if levels[1:] == ["events", "rpc"]:
        return _rpc(message)
    if len(levels) == 3 and levels[1] == "status":
        data = json_object(message.payload)
        sample = _component(levels[2], data, (("device", levels[0]),), None, message.max_readings)
        return None if sample is None else [sample]
    return None


FORMAT = Format("shelly", ("shellies/#", "+/events/rpc", "+/status/+"), samples)
