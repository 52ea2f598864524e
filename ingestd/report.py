"""Report by exception: which readings of a route are worth writing (Node-RED's `rbe` node,
Telegraf's `dedup`), decided inline after the cardinality guard and before encoding.

Per series (measurement + tags), against the last point *written* of it:
- exact repeats (the same fields) within `dedup_window_s` are written once: `duplicate`;
- with a deadband, a point whose numeric fields all moved no more than the band (absolute, or a
  percentage of the last written value) and whose other fields are unchanged is not written:
  `deadband`;
- a heartbeat writes a point anyway once `heartbeat_s` passed since the last one written, so a
  flat line still shows.
The first point of a series is always written, and a point older than the last one written
(a late or replayed one) is written and remembered nothing. Times are the points' own.

Suppressed points are counted per route and reason, never dead-lettered: nothing was wrong
with them. A message whose points were all suppressed is settled (acked) as stored.

Memory: one entry per series, and series are bounded by the cardinality guard before this.
Across restarts: the state is saved at shutdown, after the drain, when every point it
remembers is stored; it is never saved while points it remembers may still be unwritten, so a
crash leaves an older state, which can only make ingestd write more, never skip a reading whose
message the broker redelivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import orjson

from ingestd.config import ReportSettings
from ingestd.records import FieldValue, Point, Series

DEADBAND, DUPLICATE = "deadband", "duplicate"
SUPPRESSION_REASONS = (DEADBAND, DUPLICATE)


class Written(NamedTuple):
    time_ns: int
    fields: tuple[tuple[str, FieldValue], ...]


@dataclass(frozen=True, slots=True)
class Band:
    absolute: float
    percent: float

    def moved(self, old: FieldValue, new: FieldValue) -> bool:
        """Whether `new` differs from `old` by more than the band (any change, for text and
        booleans, or for numbers without a band)."""
        numeric = (int, float)
        if (
            isinstance(old, numeric)
            and isinstance(new, numeric)
            and not isinstance(old, bool)
            and not isinstance(new, bool)
        ):
            change = abs(new - old)
            if not self.absolute and not self.percent:
                return change != 0
            if self.absolute and change > self.absolute:
                return True
            return bool(self.percent) and change > self.percent / 100 * abs(old)
        return old != new


class ReportRule:
    """One route's `report` settings, compiled."""

    def __init__(self, settings: ReportSettings) -> None:
        self.dedup_ns = int(settings.dedup_window_s * 1e9)
        self.heartbeat_ns = int(settings.heartbeat_s * 1e9)
        self.deadband = (
            settings.deadband > 0 or settings.deadband_percent > 0 or bool(settings.fields)
        )
        self.band = Band(settings.deadband, settings.deadband_percent)
        self.bands = {
            name: Band(field.deadband, field.deadband_percent)
            for name, field in settings.fields.items()
        }

    def suppression(self, point: Point, last: Written | None) -> str | None:
        """Why `point` need not be written, given the last point written of its series; None
        to write it."""
        if last is None or point.time_ns < last.time_ns:
            return None
        elapsed = point.time_ns - last.time_ns
        if self.heartbeat_ns and elapsed >= self.heartbeat_ns:
            return None
        if self.dedup_ns and point.fields == last.fields and elapsed < self.dedup_ns:
            return DUPLICATE
        if self.deadband:
            fields, last_fields = point.fields, last.fields
            if len(fields) == 1 and len(last_fields) == 1 and fields[0][0] == last_fields[0][0]:
                name, value = fields[0]  # the common case, one field: no dict built
                band = self.bands.get(name, self.band) if self.bands else self.band
                return None if band.moved(last_fields[0][1], value) else DEADBAND
            before = dict(last_fields)
            for name, value in point.fields:
                if name not in before:
                    return None
                if self.bands.get(name, self.band).moved(before[name], value):
                    return None
            return DEADBAND
        return None


class ReportByException:
    """The last point written of every series a route with a `report` rule wrote, and the
    decision for the next one. `changed` says the state differs from what was saved."""

    def __init__(self) -> None:
        self.written: dict[Series, Written] = {}
        self.changed = False

    def keep(self, rule: ReportRule, points: list[Point]) -> tuple[list[Point], list[str]]:
        """The points to write, and the reason for each one suppressed."""
        kept: list[Point] = []
        reasons: list[str] = []
        written = self.written
        for point in points:
            series = (point.measurement, point.tags)
            last = written.get(series)
            reason = rule.suppression(point, last)
            if reason is not None:
                reasons.append(reason)
                continue
            kept.append(point)
            if last is None or point.time_ns >= last.time_ns:
                written[series] = Written(point.time_ns, point.fields)
                self.changed = True
        return kept, reasons

    # -- persistence (statefiles.Remembered) ----------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps(
            [[m, [list(t) for t in tags], w.time_ns, [list(f) for f in w.fields]]
             for (m, tags), w in self.written.items()]
        )  # fmt: skip

    def load_json(self, data: bytes) -> None:
        for measurement, tags, time_ns, fields in orjson.loads(data):
            series = (str(measurement), tuple((str(k), str(v)) for k, v in tags))
            self.written[series] = Written(int(time_ns), tuple((str(k), v) for k, v in fields))
