"""The simulated fleet: every message it publishes is one ingestd's routes accept (or, when
malformed, drops with the reason the simulator predicted), series never repeat a timestamp,
readings follow a daily cycle, and a seed gives the same fleet."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from ingestd.buffer import MemoryBuffer
from ingestd.config import load_settings, parse_settings
from ingestd.devtools.workload import ROUTES, TOPICS
from ingestd.errors import MessageRejected
from ingestd.pipeline import Pipeline
from ingestd.records import RawMessage
from ingestd.routes import compile_routes
from ingestd.sim.fleet import DAY_S, FORMATS, Fleet, Signal
from ingestd.telemetry import Telemetry

NOW_MS = 1_763_900_000_000


SHIPPED = Path(__file__).resolve().parents[3] / "compose" / "ingest.toml"


def pipeline(routes: str = "workload") -> Pipeline:
    """The workload's routes, or the stack's own (compose/ingest.toml, with its declared types)."""
    if routes == "shipped":
        settings = load_settings(SHIPPED, unset={})
    else:
        settings = parse_settings(
            {"influx": {"api": "v1", "database": "d"}, "mqtt": {"topics": TOPICS}, "routes": ROUTES}
        )
    return Pipeline(
        compile_routes(settings),
        MemoryBuffer(1_000_000),
        Telemetry(),
        lambda _d: None,
        settings.limits,
    )


@pytest.mark.parametrize(
    ("fmt", "routes"), [*((f, "workload") for f in ["mixed", *FORMATS]), ("mixed", "shipped")]
)
def test_every_message_is_ingested_or_dropped_with_the_predicted_reason(
    fmt: str, routes: str
) -> None:
    fleet = Fleet(40, fmt, seed=7, malformed_share=0.05, dropout_share=0.01)
    messages = fleet.take(4000, NOW_MS) + fleet.take(4000, NOW_MS)  # same ms: clocks must step
    p = pipeline(routes)
    by_series: dict[str, list[int]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    for m in messages:
        raw = RawMessage(m.topic.decode(), m.payload, time.time_ns())
        try:
            encoded = p.to_lines(raw)
        except MessageRejected as exc:
            assert exc.reason == m.reason, (m, exc.detail)
            outcomes["dropped"] += 1
            continue
        assert m.reason is None and encoded, m
        lines, untimed = encoded
        # the routes say where a time is expected; bare values (time_key = "") carry none
        assert untimed is None, m
        outcomes[m.format] += 1
        for line in lines:
            series, _fields, ts = line.rsplit(" ", 2)
            if m.format != "bare":  # bare values carry no time: stamped on receipt
                by_series[series].append(int(ts))
    assert set(outcomes) == ({*FORMATS} if fmt == "mixed" else {fmt}) | {"dropped"}
    assert outcomes["dropped"] == sum(1 for m in messages if m.reason)
    assert 0 < fleet.dropouts < 8000 * 0.02
    for series, stamps in by_series.items():
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), series


def test_a_seed_gives_the_same_fleet_and_readings() -> None:
    def payloads(seed: int) -> list[bytes]:
        return [m.payload for m in Fleet(10, seed=seed, malformed_share=0.1).take(200, NOW_MS)]

    assert payloads(3) == payloads(3)
    assert payloads(3) != payloads(4)


def test_take_published_makes_up_for_dropouts() -> None:
    fleet = Fleet(5, dropout_share=0.3)
    assert len(fleet.take_published(1000, NOW_MS)) == 1000
    assert fleet.dropouts > 0


def test_readings_follow_a_daily_cycle_with_rare_spikes() -> None:
    signal = Signal(base=20.0, amplitude=3.0, noise=0.0, phase=0.0)
    rng = random.Random(1)
    assert signal.at(DAY_S / 4, rng, 0.0) == 23.0  # the daily peak
    assert signal.at(3 * DAY_S / 4, rng, 0.0) == 17.0
    spiky = [signal.at(0.0, rng, 1.0) for _ in range(20)]
    assert all(abs(v - 20.0) == 12.0 for v in spiky)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_single_format_fleet_speaks_only_that_format(fmt: str) -> None:
    assert {m.format for m in Fleet(8, fmt).take(100, NOW_MS)} == {fmt}


def test_an_outage_silences_one_p4n4_device_for_its_length() -> None:
    """Every 50 s a p4n4 device (in turn) goes quiet for 30 s: the demo's silence alert."""
    fleet = Fleet(8, "mixed", dropout_share=0, outage_every_s=50, outage_s=30)
    devices_at = {
        second: {m.topic.split(b"/")[1] for m in fleet.take(8, second * 1000)}
        for second in range(0, 140, 5)
    }
    everyone = devices_at[0]
    quiet = {second: everyone - seen for second, seen in devices_at.items()}
    assert all(quiet[t] == {b"dev-00000"} for t in range(50, 80, 5))
    assert all(quiet[t] == set() for t in (*range(0, 50, 5), 80, 85, 90, 95))
    assert all(quiet[t] == {b"dev-00004"} for t in range(100, 130, 5))
    assert fleet.outages == 2 and fleet.silenced == 12
