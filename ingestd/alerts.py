"""Alerts at the edge (issue 14 item 2): thresholds and silent devices, decided inline.

A rule (`[[alerts]]`) watches one field of one measurement, per series (measurement + tags):
- `above` / `below` (both: outside a range) open an alert when the value crosses the threshold
  and close it only once the value is back past it by `hysteresis`, so a noisy crossing makes
  one episode, not one alert per message;
- `silent_s` opens one when a series sends nothing for that long, and closes it with its next
  reading, which also publishes `ingestd/events/device_back`;
- `min_interval_s` keeps a flapping series from opening alerts more often than that.

Each transition is published as JSON on `alerts/raw/<device>/<rule>` (QoS 1, not retained,
through the outbox, which retries and never blocks ingest) and written as a point of the
`alerts` measurement (tags rule, device, state; fields value, threshold), with the message that
caused it, for Grafana annotations. The state (open alerts, last readings) is saved at most
once a second and at shutdown, so an alert open before a restart is not sent again after it.
A silence timer starts at the later of the last reading and ingestd's own start: time ingestd
was down is nobody's silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from ingestd.config import AlertSettings
from ingestd.outbox import Outbox
from ingestd.records import FieldValue, Point, Series
from ingestd.timestamps import ns_to_iso

DEVICE_BACK = "ingestd/events/device_back"


@dataclass(slots=True)
class Watch:
    """One rule's view of one series."""

    tags: tuple[tuple[str, str], ...]
    last_value: float | None = None
    last_seen_ns: int = 0
    open: bool = False  # an alert is open
    open_since_ns: int = 0
    opened_ns: int | None = None  # when the last alert opened (for min_interval_s)
    silent: bool = False  # the open alert is a silence one
    threshold: float | None = None
    # rate of change: the first reading of the current window (time ns, value)
    window_ns: int = 0
    window_value: float | None = None
    rate: bool = False  # the open alert is a rate one


@dataclass(slots=True)
class Rule:
    settings: AlertSettings
    watches: dict[Series, Watch] = field(default_factory=dict)


class Alerts:
    """Every rule's state, and the transitions it publishes."""

    def __init__(
        self,
        rules: list[AlertSettings],
        outbox: Outbox,
        max_watches: int,
        webhook: tuple[Outbox, str] | None = None,
    ) -> None:
        self.rules = [Rule(r) for r in rules]
        self.by_measurement: dict[str, list[Rule]] = {}
        for rule in self.rules:
            self.by_measurement.setdefault(rule.settings.measurement, []).append(rule)
        self.outbox = outbox
        self.webhook = webhook  # (its outbox, the URL): every transition POSTed there too
        self.max_watches = max_watches  # per rule: the series limits bound them anyway
        self.started_ns = time.time_ns()
        # an alert opened or closed since the last save (readings alone are saved at shutdown:
        # a silence timer restarts with ingestd anyway)
        self.changed = False
        self.on_change: Callable[[], None] | None = None  # the service's save trigger
        self.transitions = 0

    # -- readings --------------------------------------------------------------------------------

    def observe(self, points: list[Point]) -> list[Point]:
        """The `alerts` points of the transitions these points cause (usually none)."""
        out: list[Point] = []
        for point in points:
            rules = self.by_measurement.get(point.measurement)
            if rules is None:
                continue
            for rule in rules:
                wanted = rule.settings.field
                for name, value in point.fields:  # usually one or a few: no dict built
                    if name == wanted:
                        if type(value) is float or type(value) is int:  # not bool, not text
                            out += self._reading(rule, point, float(value))
                        break
        return out

    def _reading(self, rule: Rule, point: Point, value: float) -> list[Point]:
        s = rule.settings
        series = (point.measurement, point.tags)
        watch = rule.watches.get(series)
        if watch is None:
            if len(rule.watches) >= self.max_watches:
                return []
            watch = rule.watches[series] = Watch(point.tags)
        now = point.time_ns
        watch.last_value = value
        if s.silent_s:  # measured on ingestd's clock: a device's own may be off, or replayed
            watch.last_seen_ns = time.time_ns()
        if watch.open and watch.silent:  # it spoke again
            out = [
                self._transition(rule, watch, "resolved", value=value, threshold=None, now_ns=now)
            ]
            self._device_back(rule, watch, now)
            return out
        if watch.open and not watch.rate:
            assert watch.threshold is not None
            back = (
                value <= watch.threshold - s.hysteresis
                if s.above is not None and watch.threshold == s.above
                else value >= watch.threshold + s.hysteresis
            )
            return (
                [
                    self._transition(
                        rule, watch, "resolved", value=value, threshold=watch.threshold, now_ns=now
                    )
                ]
                if back
                else []
            )
        rate = self._rate(rule, watch, value, now) if s.rate_per_s is not None else None
        if watch.open and watch.rate:
            if rate is None or abs(rate) > (s.rate_per_s or 0) - s.hysteresis:
                return []
            return [
                self._transition(rule, watch, "resolved", value=value, threshold=None, now_ns=now)
            ]
        crossed, by_rate = None, False
        if s.above is not None and value > s.above:
            crossed = s.above
        elif s.below is not None and value < s.below:
            crossed = s.below
        elif s.rate_per_s is not None and rate is not None and abs(rate) > s.rate_per_s:
            crossed, by_rate = s.rate_per_s, True
        recent = watch.opened_ns is not None and now - watch.opened_ns < s.min_interval_s * 1e9
        if crossed is None or recent:
            return []
        watch.rate = by_rate
        return [self._transition(rule, watch, "firing", value=value, threshold=crossed, now_ns=now)]

    @staticmethod
    def _rate(rule: Rule, watch: Watch, value: float, now: int) -> float | None:
        """The change per second over the last window, once a window has passed; else None."""
        if rule.settings.rate_per_s is None:
            return None
        if watch.window_value is None or now < watch.window_ns:
            watch.window_ns, watch.window_value = now, value
            return None
        elapsed = now - watch.window_ns
        if elapsed < rule.settings.rate_window_s * 1e9:
            return None
        rate = (value - watch.window_value) / (elapsed / 1e9)
        watch.window_ns, watch.window_value = now, value
        return rate

    # -- silence ---------------------------------------------------------------------------------

    def check_silence(self, now_ns: int) -> list[Point]:
        """Open a silence alert for each watched series quiet longer than its rule's silent_s."""
        out: list[Point] = []
        for rule in self.rules:
            silent_s = rule.settings.silent_s
            if not silent_s:
                continue
            for watch in rule.watches.values():
                since = max(watch.last_seen_ns, self.started_ns)
                if watch.open or now_ns - since < silent_s * 1e9:
                    continue
                watch.silent = True
                out.append(
                    self._transition(
                        rule, watch, "firing", value=watch.last_value, threshold=None, now_ns=now_ns
                    )
                )
        return out

    # -- transitions -----------------------------------------------------------------------------

    def _transition(
        self,
        rule: Rule,
        watch: Watch,
        state: str,
        *,
        value: float | None,
        threshold: float | None,
        now_ns: int,
    ) -> Point:
        s = rule.settings
        tags = dict(watch.tags)
        device = tags.get("device", "all")
        since = watch.open_since_ns if watch.open else now_ns
        if watch.silent:
            kind = "silent"
        elif watch.rate:
            kind = "rate"
        else:
            kind = "above" if threshold == s.above else "below"
        if state == "firing":
            watch.open, watch.open_since_ns, watch.opened_ns = True, now_ns, now_ns
            watch.threshold = threshold
        else:
            watch.open, watch.silent, watch.rate, watch.threshold = False, False, False, None
        self.changed = True
        self.transitions += 1
        if self.on_change is not None:
            self.on_change()
        payload = {
            "rule": s.name,
            "state": state,
            "kind": kind,
            "measurement": s.measurement,
            "field": s.field,
            "value": value,
            "threshold": threshold if threshold is not None else s.silent_s or None,
            "hysteresis": s.hysteresis,
            "tags": tags,
            "device": device,
            "since": ns_to_iso(since),
            "time": ns_to_iso(now_ns),
        }
        body = orjson.dumps(payload)
        self.outbox.put(f"alerts/raw/{device}/{s.name}", body)
        if self.webhook is not None:
            self.webhook[0].put(self.webhook[1], body)
        fields: tuple[tuple[str, FieldValue], ...] = (("state", state),)
        if value is not None:
            fields += (("value", value),)
        if threshold is not None:
            fields += (("threshold", threshold),)
        alert_tags = tuple(sorted({"rule": s.name, "device": device, "kind": kind}.items()))
        return Point("alerts", alert_tags, fields, now_ns)

    def _device_back(self, rule: Rule, watch: Watch, now_ns: int) -> None:
        event = {
            "event": "device_back",
            "rule": rule.settings.name,
            "tags": dict(watch.tags),
            "device": dict(watch.tags).get("device", "all"),
            "time": ns_to_iso(now_ns),
        }
        self.outbox.put(DEVICE_BACK, orjson.dumps(event))

    # -- persistence (statefiles.Remembered) --------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                rule.settings.name: [
                    [m, [list(t) for t in w.tags], w.last_value, w.last_seen_ns, w.open,
                     w.open_since_ns, w.opened_ns, w.silent, w.threshold, w.rate]
                    for (m, _), w in rule.watches.items()
                ]
                for rule in self.rules
            }
        )  # fmt: skip

    def load_json(self, data: bytes) -> None:
        saved = orjson.loads(data)
        for rule in self.rules:
            for entry in saved.get(rule.settings.name, []):
                m, tags, value, seen, is_open, since, opened, silent, threshold, rate = entry
                tag_tuple = tuple((str(k), str(v)) for k, v in tags)
                rule.watches[(str(m), tag_tuple)] = Watch(
                    tag_tuple,
                    value,
                    int(seen),
                    bool(is_open),
                    int(since),
                    opened,
                    bool(silent),
                    threshold,
                    rate=bool(rate),
                )
