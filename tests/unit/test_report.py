"""Report by exception (issue 14 item 1): deadband, heartbeat and exact deduplication decide
which readings of a route are written; the rest are counted, never dead-lettered, and their
messages are settled as stored."""

from __future__ import annotations

from typing import Any

import pytest

from ingestd.buffer import MemoryBuffer
from ingestd.config import ReportSettings, parse_settings
from ingestd.pipeline import Pipeline
from ingestd.records import DeadLetter, FieldValue, Point, RawMessage
from ingestd.report import ReportByException, ReportRule
from ingestd.routes import compile_routes
from ingestd.service import check_messages
from ingestd.telemetry import Telemetry

S = 10**9


def point(t_s: float, **fields: FieldValue) -> Point:
    return Point("m", (("device", "d"),), tuple(sorted(fields.items())), int(t_s * S))


def written(rule: dict[str, Any], series: list[Point]) -> list[float]:
    """The times of the points written, one at a time as they would arrive."""
    compiled = ReportRule(ReportSettings(**rule))
    state = ReportByException()
    out = []
    for p in series:
        kept, _ = state.keep(compiled, [p])
        out += [k.time_ns / S for k in kept]
    return out


def test_a_deadband_writes_what_moved_more_than_the_band_since_the_last_written() -> None:
    values = [20.0, 20.1, 20.4, 20.6, 20.2, 19.9, 21.0, 21.4, 21.5]
    series = [point(i, v=v) for i, v in enumerate(values)]
    # 20.6 moved 0.6 from 20.0; 19.9 only 0.7 from 20.6 -> written; 21.0 1.1 from 19.9
    assert written({"deadband": 0.5}, series) == [0, 3, 5, 6]


def test_a_percentage_band_is_of_the_last_written_value() -> None:
    series = [point(i, v=v) for i, v in enumerate([100, 104, 106, 110, 111.5])]
    assert written({"deadband_percent": 5}, series) == [0, 2, 4]


def test_a_heartbeat_writes_a_flat_line_anyway() -> None:
    series = [point(10 * i, v=1.0) for i in range(13)]  # every 10 s, never moving
    assert written({"deadband": 0.5, "heartbeat_s": 60}, series) == [0, 60, 120]


def test_exact_repeats_within_the_window_are_written_once() -> None:
    series = [
        point(0, v=1.0, on=True),
        point(0.2, v=1.0, on=True),  # Zigbee2MQTT's repeat
        point(0.4, v=1.0, on=False),  # changed
        point(3, v=1.0, on=False),
        point(12, v=1.0, on=False),  # same again, but the window passed
    ]
    assert written({"dedup_window_s": 5}, series) == [0, 0.4, 12]


def test_one_field_moving_writes_the_whole_point_and_text_counts_any_change() -> None:
    series = [
        point(0, t=20.0, h=50.0, state="idle"),
        point(1, t=20.1, h=50.1, state="idle"),
        point(2, t=20.1, h=57.0, state="idle"),  # h moved past its own band
        point(3, t=20.1, h=57.0, state="run"),  # text: any change
    ]
    rule = {"deadband": 0.5, "fields": {"h": {"deadband": 5}}}
    assert written(rule, series) == [0, 2, 3]


def test_a_new_field_or_a_late_point_is_written_and_a_late_one_not_remembered() -> None:
    series = [point(10, v=1.0), point(11, v=1.0, w=2.0), point(5, v=1.0), point(12, v=1.2)]
    assert written({"deadband": 0.5}, series) == [10, 11, 5]  # 1.2: within 0.5 of 1.0 at 11


def test_a_rule_that_does_nothing_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="deadband"):
        ReportSettings(heartbeat_s=60)


def test_the_state_round_trips_through_its_file_format() -> None:
    state = ReportByException()
    rule = ReportRule(ReportSettings(deadband=0.5))
    state.keep(rule, [point(1, v=1.5, n=3, on=True, s="x")])
    again = ReportByException()
    again.load_json(state.to_json())
    assert again.written == state.written
    kept, reasons = again.keep(rule, [point(2, v=1.7, n=3, on=True, s="x")])
    assert kept == [] and reasons == ["deadband"]


SETTINGS = parse_settings(
    {
        "mqtt": {"topics": ["#"]},
        "influx": {"api": "v1", "database": "d"},
        "routes": [
            {"topic": "rbe/{device}/{measurement}", "report": {"deadband": 0.5}},
            {"topic": "sensors/{device}/{measurement}"},
        ],
    }
)


def test_a_suppressed_message_is_settled_counted_and_never_dead_lettered() -> None:
    letters: list[DeadLetter] = []
    settled: list[RawMessage] = []
    buffer = MemoryBuffer(100)
    telemetry = Telemetry()
    pipeline = Pipeline(
        compile_routes(SETTINGS), buffer, telemetry, letters.append, SETTINGS.limits,
        settled=settled.append,
    )  # fmt: skip
    first = RawMessage("rbe/d1/t", b'{"v": 20.0, "ts": 1}', 1, mid=1, qos=1)
    same = RawMessage("rbe/d1/t", b'{"v": 20.2, "ts": 2}', 2, mid=2, qos=1)
    other_route = RawMessage("sensors/d1/t", b'{"v": 20.0, "ts": 2}', 2, mid=3, qos=1)
    for message in (first, same, other_route, other_route):
        pipeline.handle(message)
    assert buffer.fill == 3  # the first, and every message of the route without a rule
    assert settled == [same] and letters == []  # acked as stored, not dead-lettered
    assert telemetry.suppressed == {("rbe/{device}/{measurement}", "deadband"): 1}
    assert telemetry.messages_ignored == 0


def test_check_says_what_a_rule_would_suppress() -> None:
    out = check_messages(
        SETTINGS, [("rbe/d1/t", b'{"v": 20.0, "ts": 1}'), ("rbe/d1/t", b'{"v": 20.3, "ts": 2}')]
    )
    assert out[0].lines and out[1].lines is None and out[1].suppressed == ["deadband"]
    assert out[1].reason is None  # not a failure: check exits 0
