"""rtl_433's MQTT output: one JSON event per decoded radio message on `rtl_433/<host>/events`.

- Topic: `rtl_433/{host}/events`. Measurement `rtl_433`; tags `model`, `id`, `channel` and
  `subtype` when the event has them (together they name one sensor), and `host`.
- Fields: every other value. rtl_433 puts the unit in the key: `temperature_F` becomes
  `temperature_C`, `wind_avg_mi_h` `wind_avg_km_h`, `rain_in` `rain_mm`, `pressure_inHg`
  `pressure_hPa`, converted. `mic` (the integrity check) and `time` are not readings.
- Time: `time` as rtl_433 prints it, local time without an offset by default
  (`2023-06-01 12:00:00`): read in the route's `timezone`. With `-M time:utc` or `-M time:iso`
  it carries its offset; `-M time:unix` is epoch seconds.
- Skipped: `rtl_433/<host>/states` and the per-field `devices/...` topics: not subscribed, and
  ignored under a wider filter.
"""

from __future__ import annotations

from typing import Any

from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    fahrenheit_to_celsius,
    json_object,
    payload_time,
    reading,
    tags_of,
)

_IDENTITY = ("model", "id", "channel", "subtype")
_NOT_READINGS = frozenset({"time", "mic", *_IDENTITY})
# imperial key suffix -> (SI suffix, factor); °F is an offset, handled apart
_TO_SI = {"_mi_h": ("_km_h", 1.609344), "_in": ("_mm", 25.4), "_inHg": ("_hPa", 33.86388158)}


def _si(key: str, value: Any) -> tuple[str, Any]:
    if key.endswith("_F"):
        return key[:-2] + "_C", fahrenheit_to_celsius(value)
    for suffix, (si, factor) in _TO_SI.items():
        if key.endswith(suffix) and isinstance(value, int | float) and not isinstance(value, bool):
            return key[: -len(suffix)] + si, value * factor
    return key, value


def samples(message: FormatInput) -> Samples:
    if message.levels[-1] != "events":
        return None
    data = json_object(message.payload)
    tags = tags_of(
        *((key, data.get(key)) for key in _IDENTITY),
        ("host", message.segments.get("host")),
    )
    fields = [
        _si(key, reading(value))
        for key, value in data.items()
        if key not in _NOT_READINGS and not isinstance(value, dict | list)
    ]
    stamp = payload_time(data.get("time"), message.timezone)
    return [Sample("rtl_433", tags, fields, stamp)]


FORMAT = Format("rtl_433", ("rtl_433/{host}/events",), samples)
