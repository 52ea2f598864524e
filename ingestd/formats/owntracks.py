"""OwnTracks: `owntracks/<user>/<device>` locations, and `/event` region transitions.

- Topics: `owntracks/{user}/{device}` and `owntracks/{user}/{device}/event`.
- Routing by `_type`: `location` is measurement `owntracks` with fields `lat`, `lon` (°), `alt`,
  `acc`, `vac` (m), `vel` (km/h), `cog` (°), `batt` (%), `bs` and `p` (kPa, as sent), tagged
  `user`, `device` and `tid`; `transition` is measurement `owntracks_transition` with `lat`,
  `lon` and `event` (`enter`/`leave`), tagged with the `region` (`desc`).
- `batt: -1` means unknown and is left out.
- Time: `tst`, the fix time (epoch seconds).
- Skipped: every other `_type` (`lwt`, `waypoint`, `card`, `cmd`, `status`, ...), and the
  string extras (`conn`, `SSID`, `BSSID`, `t`, `inregions`).
"""

from __future__ import annotations

from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    json_object,
    payload_time,
    tags_of,
)

_LOCATION = ("lat", "lon", "alt", "acc", "vac", "vel", "cog", "batt", "bs", "p")


def samples(message: FormatInput) -> Samples:
    data = json_object(message.payload)
    kind = data.get("_type")
    levels = message.levels
    user = message.segments.get("user", levels[1] if len(levels) > 1 else None)
    device = message.segments.get("device", levels[2] if len(levels) > 2 else None)
    stamp = payload_time(data.get("tst"), message.timezone, "s")
    if kind == "location":
        tags = tags_of(("user", user), ("device", device), ("tid", data.get("tid")))
        fields = [(key, data[key]) for key in _LOCATION if key in data]
        fields = [(key, value) for key, value in fields if not (key == "batt" and value == -1)]
        return [Sample("owntracks", tags, fields, stamp)]
    if kind == "transition":
        tags = tags_of(
            ("user", user),
            ("device", device),
            ("tid", data.get("tid")),
            ("region", data.get("desc")),
        )
        fields = [(key, data[key]) for key in ("lat", "lon", "event") if key in data]
        return [Sample("owntracks_transition", tags, fields, stamp)]
    return None


FORMAT = Format(
    "owntracks", ("owntracks/{user}/{device}", "owntracks/{user}/{device}/event"), samples
)
