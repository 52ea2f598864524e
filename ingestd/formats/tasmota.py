"""Tasmota: `tele/<topic>/SENSOR` and `STATE`, and the `stat/<topic>/...` results.

- Topics: `tele/{device}/+` and `stat/{device}/+`. A custom FullTopic that puts the prefix
  after the device (`emoncms/ch2i/factory/%topic%/%prefix%/`): `topic = "emoncms/#"`; the device
  is then the level before `tele` or `stat`.
- Measurement `tasmota`. One point per sensor block (`BME280`, `DS18B20-1`, `ENERGY`, `TIC`),
  tagged `sensor`; a block's `Id` becomes `sensor_id` and a Teleinfo `ADCO` `meter_id`, since
  DS18B20 names are not stable across reboots and the meter serial keeps its leading zero. The
  top-level values (`Switch1`, and all of `STATE`, `Wifi.RSSI` flattened) make one point without
  `sensor`. `POWER<n>` is field `POWER` tagged `relay=<n>`. Arrays (`"Power": [23.63, 67.17]`)
  flatten to `Power.0`, `Power.1`.
- Units: `TempUnit: "F"` converts every temperature to °C; `PressureUnit` mmHg and inHg become
  hPa. Tasmota's own units otherwise (kWh, W, V, A, hPa).
- Time: `Time` is the device's local time without an offset: read in the route's `timezone`
  (default UTC; set it to the devices' zone). A `Time` with an offset is exact. No `Time`: the
  receive time.
- Skipped: `LWT`, `INFO1`-`INFO3`, `UPTIME` and every `stat/` reply that is not a reading
  (`RESULT`, `POWER<n>`, `STATUS8`/`STATUS10` `StatusSNS`, `STATUS11` `StatusSTS` are).
"""

from __future__ import annotations

import re
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
    payload_time,
    reading,
)

_TELE = frozenset({"SENSOR", "STATE"})
_STAT = re.compile(r"RESULT|POWER\d*|STATUS(8|10|11)")
_POWER = re.compile(r"POWER(\d*)")
_UNIT_KEYS = frozenset({"Time", "TempUnit", "PressureUnit", "SpeedUnit", "Epoch"})
_IDENTITY = {"Id": "sensor_id", "ADCO": "meter_id"}
_TO_HPA = {"mmhg": 1.333223684, "inhg": 33.86388158}


def _device(message: FormatInput) -> tuple[str, str] | None:
    """(device, prefix) from the topic, or None if it is not a Tasmota topic."""
    levels = message.levels
    for i, level in enumerate(levels[:-1]):
        if level in ("tele", "stat"):
            device = message.segments.get("device")
            if device is None:
                if i == 0 and len(levels) >= 3:
                    device = levels[1]
                elif i > 0:
                    device = levels[i - 1]
            if device:
                return device, level
    return None


def _convert(key: str, value: Any, temp_unit: str, pressure_unit: str) -> Any:
    if temp_unit == "F" and ("Temperature" in key or "DewPoint" in key):
        return fahrenheit_to_celsius(value)
    if "Pressure" in key and pressure_unit in _TO_HPA and isinstance(value, float):
        return value * _TO_HPA[pressure_unit]
    return value


def samples(message: FormatInput) -> Samples:
    found = _device(message)
    if found is None:
        return None
    device, prefix = found
    command = message.levels[-1]
    if prefix == "tele" and command not in _TELE:
        return None
    if prefix == "stat" and not _STAT.fullmatch(command):
        return None
    data = parse_bare(message.payload)
    if not isinstance(data, dict):  # stat/<t>/POWER: a bare ON/OFF
        data = {command: data}
    for wrapper in ("StatusSNS", "StatusSTS"):
        if isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    temp_unit = str(data.get("TempUnit", "C")).upper()
    pressure_unit = str(data.get("PressureUnit", "hPa")).lower()
    stamp = payload_time(data.get("Time"), message.timezone)
    base: Tags = (("device", device),)
    top: list[tuple[str, Any]] = []
    out: list[Sample] = []
    blocks = command != "STATE"
    for key, value in data.items():
        if key in _UNIT_KEYS:
            continue
        power = _POWER.fullmatch(key)
        if power and not isinstance(value, dict | list):
            tags = (*base, ("relay", power.group(1))) if power.group(1) else base
            out.append(Sample("tasmota", tags, [("POWER", reading(value))], stamp))
        elif blocks and isinstance(value, dict):
            units = (temp_unit, pressure_unit)
            sample = _block(key, value, base, stamp, max_readings=message.max_readings, units=units)
            out.append(sample)
        elif isinstance(value, dict | list):
            top.extend(flat_fields(value, message.max_readings, key))
        else:
            top.append((key, reading(value)))
    if top:
        fields = [(k, _convert(k, v, temp_unit, pressure_unit)) for k, v in top]
        out.append(Sample("tasmota", base, fields, stamp))
    return out


def _block(
    name: str,
    block: dict[str, Any],
    base: Tags,
    stamp: int | None,
    *,
    max_readings: int,
    units: tuple[str, str],
) -> Sample:
    tags = [*base, ("sensor", name)]
    readings = {}
    for key, value in block.items():
        if key in _IDENTITY and isinstance(value, str | int) and not isinstance(value, bool):
            tags.append((_IDENTITY[key], str(value)))
        else:
            readings[key] = value
    fields = [
        (key, _convert(key, value, *units)) for key, value in flat_fields(readings, max_readings)
    ]
    return Sample("tasmota", tuple(tags), fields, stamp)


FORMAT = Format("tasmota", ("tele/{device}/+", "stat/{device}/+"), samples)
