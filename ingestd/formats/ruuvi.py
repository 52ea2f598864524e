"""Ruuvi Gateway: `ruuvi/<gateway>/<tag>` with the tag's BLE advertisement, raw, decoded or both.

- Topic: `ruuvi/{gateway}/{mac}`. Measurement `ruuvi`; tags `gateway`, `mac`, `id` (the MAC a
  decoded message names) and `dataFormat`.
- Fields: the gateway's decoded values as they come (`temperature` °C, `humidity` %, `pressure`
  Pa, `accelX/Y/Z` g, `voltage` V, `txPower` dBm, `movementCounter`,
  `measurementSequenceNumber`; Ruuvi Air's `PM2.5` and friends keep their dotted names), plus
  `rssi`. A raw-only message (`data` hex) is decoded here from data format 5 (RAWv2), with the
  format's "not available" values left out. Other advertisers the gateway relays keep `rssi`.
- Time: `ts` (epoch seconds, a number or a string depending on the firmware), else the receive
  time.
- Skipped: `gw_status` (the gateway's availability), and the bookkeeping keys `gw_mac`, `gwts`,
  `aoa`, `coords`, `cnt`.
"""

from __future__ import annotations

import struct
from typing import Any

from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    json_object,
    payload_time,
    reading,
    tags_of,
)

_BOOKKEEPING = frozenset(
    {"gw_mac", "gwts", "ts", "aoa", "coords", "cnt", "data", "id", "dataFormat"}
)
_RUUVI_COMPANY = b"\x99\x04"
_MAX_HEX = 2 * 255  # one BLE advertisement, extended advertising included


def manufacturer_data(advertisement: bytes) -> bytes | None:
    """The Ruuvi manufacturer-specific data of a BLE advertisement, if any (AD type 0xFF,
    company 0x0499). Walks the AD structures once: linear and bounded by the length."""
    i = 0
    while i + 1 < len(advertisement):
        length = advertisement[i]
        if length == 0:
            return None
        kind = advertisement[i + 1]
        body = advertisement[i + 2 : i + 1 + length]
        if kind == 0xFF and body[:2] == _RUUVI_COMPANY:
            return body[2:]
        i += 1 + length
    return None


def decode_df5(data: bytes) -> dict[str, Any]:
    """RAWv2 (data format 5): 24 bytes after the company id. Values the format marks as not
    available are left out. Anything else is {} (not ours to guess)."""
    if len(data) < 24 or data[0] != 5:
        return {}
    temp, hum, pres, ax, ay, az, power, moves, seq = struct.unpack_from(">hHHhhhHBH", data, 1)
    out: dict[str, Any] = {"dataFormat": 5}
    if temp != -32768:
        out["temperature"] = round(temp * 0.005, 3)
    if hum != 0xFFFF:
        out["humidity"] = round(hum * 0.0025, 4)
    if pres != 0xFFFF:
        out["pressure"] = pres + 50_000
    for name, value in (("accelX", ax), ("accelY", ay), ("accelZ", az)):
        if value != -32768:
            out[name] = value / 1000
    if power >> 5 != 0x7FF:
        out["voltage"] = ((power >> 5) + 1600) / 1000
    if power & 0x1F != 0x1F:
        out["txPower"] = (power & 0x1F) * 2 - 40
    if moves != 0xFF:
        out["movementCounter"] = moves
    if seq != 0xFFFF:
        out["measurementSequenceNumber"] = seq
    out["id"] = ":".join(f"{b:02X}" for b in data[18:24])
    return out


def decode_advertisement(hex_text: str) -> dict[str, Any]:
    if len(hex_text) > _MAX_HEX:
        return {}
    try:
        advertisement = bytes.fromhex(hex_text)
    except ValueError:
        return {}
    data = manufacturer_data(advertisement)
    return {} if data is None else decode_df5(data)


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if len(levels) < 3 or levels[-1] == "gw_status":
        return None
    data = json_object(message.payload)
    decoded = data
    if "dataFormat" not in data and isinstance(data.get("data"), str):
        decoded = {**decode_advertisement(data["data"]), **data}
    tags = tags_of(
        ("gateway", message.segments.get("gateway", levels[-2])),
        ("mac", message.segments.get("mac", levels[-1])),
        ("id", decoded.get("id")),
        ("dataFormat", decoded.get("dataFormat")),
    )
    fields = [
        (key, reading(value))
        for key, value in decoded.items()
        if key not in _BOOKKEEPING and not isinstance(value, dict | list)
    ]
    return [Sample("ruuvi", tags, fields, payload_time(data.get("ts"), message.timezone, "s"))]


FORMAT = Format("ruuvi", ("ruuvi/{gateway}/{mac}",), samples)
