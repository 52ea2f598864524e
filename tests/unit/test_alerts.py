"""Alert rules (issue 14 item 2): one episode per crossing however noisy, hysteresis, a minimum
interval, silence measured on ingestd's clock and never across its own downtime, and state that
survives a restart without re-sending an open alert."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ingestd.alerts import DEVICE_BACK, Alerts
from ingestd.config import AlertSettings
from ingestd.outbox import Outbox
from ingestd.records import Point

S = 10**9


def reading(t_s: float, value: float, device: str = "dev-a") -> Point:
    return Point("temperature", (("device", device),), (("value", value),), int(t_s * S))


def alerts(outbox: Outbox | None = None, **rule: Any) -> Alerts:
    settings = AlertSettings(name="too_hot", measurement="temperature", **rule)
    return Alerts([settings], outbox or Outbox(), max_watches=100)


def sent(outbox: Outbox) -> list[dict[str, Any]]:
    return [{"topic": t, **json.loads(p)} for t, p, _ in outbox._pending]


def test_a_noisy_crossing_opens_once_and_resolves_once() -> None:
    outbox = Outbox()
    rules = alerts(outbox, above=45, hysteresis=1)
    values = [44, 46, 45.5, 44.8, 46.2, 44.5, 43.9, 44.2, 44.9]
    points = [p for i, v in enumerate(values) for p in rules.observe([reading(i, v)])]
    assert [dict(p.fields)["state"] for p in points] == ["firing", "resolved"]
    assert [p.time_ns // S for p in points] == [1, 6]  # 46 opens; 43.9 (<= 45 - 1) closes
    firing, resolved = sent(outbox)
    assert firing["topic"] == "alerts/raw/dev-a/too_hot"
    assert (firing["state"], firing["value"], firing["threshold"]) == ("firing", 46, 45)
    assert firing["tags"] == {"device": "dev-a"} and firing["kind"] == "above"
    assert (resolved["state"], resolved["value"]) == ("resolved", 43.9)
    assert dict(points[0].tags) == {"device": "dev-a", "kind": "above", "rule": "too_hot"}
    assert points[0].measurement == "alerts"


def test_outside_a_range_and_a_minimum_interval_between_openings() -> None:
    outbox = Outbox()
    rules = alerts(outbox, above=30, below=10, min_interval_s=60)
    for t, v in [(0, 20), (1, 5), (2, 20), (3, 35), (100, 20), (101, 35)]:
        rules.observe([reading(t, v)])
    assert [(e["state"], e["kind"], e["time"][17:19]) for e in sent(outbox)] == [
        ("firing", "below", "01"),
        ("resolved", "below", "02"),
        # 35 at 3 s: within 60 s of the last opening, not opened
        ("firing", "above", "41"),  # 101 s: 1970-01-01T00:01:41
    ]


def test_series_are_watched_apart() -> None:
    outbox = Outbox()
    rules = alerts(outbox, above=45)
    rules.observe([reading(0, 50, "dev-a"), reading(0, 40, "dev-b"), reading(1, 51, "dev-b")])
    assert [e["topic"] for e in sent(outbox)] == [
        "alerts/raw/dev-a/too_hot",
        "alerts/raw/dev-b/too_hot",
    ]


def test_silence_opens_after_silent_s_and_a_reading_closes_it_with_device_back() -> None:
    outbox = Outbox()
    rules = alerts(outbox, silent_s=60)
    rules.started_ns = 0  # ingestd has been up for long
    rules.observe([reading(0, 20)])
    now = time.time_ns()
    assert rules.check_silence(now + 30 * S) == []
    (opened,) = rules.check_silence(now + 61 * S)
    assert dict(opened.tags)["kind"] == "silent" and dict(opened.fields)["state"] == "firing"
    assert rules.check_silence(now + 120 * S) == []  # open: not again
    (closed,) = rules.observe([reading(200, 21)])
    assert dict(closed.fields)["state"] == "resolved"
    topics = [e["topic"] for e in sent(outbox)]
    assert topics == ["alerts/raw/dev-a/too_hot", "alerts/raw/dev-a/too_hot", DEVICE_BACK]
    assert sent(outbox)[2]["device"] == "dev-a"


def test_after_a_restart_an_open_alert_is_not_sent_again_nor_silence_counted_from_the_stop() -> (
    None
):
    before = alerts(above=45, silent_s=60)
    before.observe([reading(0, 50)])  # open
    saved = before.to_json()
    outbox = Outbox()
    after = alerts(outbox, above=45, silent_s=60)
    after.load_json(saved)
    after.observe([reading(10, 52)])  # still above: the alert is open, nothing to send
    assert outbox.pending == 0
    after.observe([reading(11, 43)])  # below: resolved, once
    assert [e["state"] for e in sent(outbox)] == ["resolved"]
    # a series last seen long before the restart is not silent before silent_s after it
    old = alerts(silent_s=60)
    old.observe([reading(0, 20, "dev-z")])
    next(iter(old.rules[0].watches.values())).last_seen_ns = 1  # 1970: long ago
    restarted = alerts(Outbox(), silent_s=60)
    restarted.load_json(old.to_json())
    assert restarted.check_silence(restarted.started_ns + 30 * S) == []
    assert len(restarted.check_silence(restarted.started_ns + 61 * S)) == 1


def test_a_rule_needs_a_condition_and_a_sane_range() -> None:
    with pytest.raises(ValueError, match="above, below, rate_per_s or silent_s"):
        AlertSettings(name="x", measurement="m")
    with pytest.raises(ValueError, match="below must be under above"):
        AlertSettings(name="x", measurement="m", above=1, below=2)


def test_a_rate_of_change_over_a_window_opens_and_closes() -> None:
    outbox = Outbox()
    rules = alerts(outbox, rate_per_s=0.1, rate_window_s=60)
    # steady, then 10 degrees in a minute (0.17/s), then steady again
    series = [(0, 20), (30, 20.2), (60, 20.4), (90, 25), (120, 30.5), (150, 30.6), (180, 30.8)]
    states = [
        (t, dict(p.fields)["state"]) for t, v in series for p in rules.observe([reading(t, v)])
    ]
    assert states == [(120, "firing"), (180, "resolved")]
    firing = sent(outbox)[0]
    assert (firing["kind"], firing["threshold"]) == ("rate", 0.1)
