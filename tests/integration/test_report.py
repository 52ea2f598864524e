"""Report by exception against a real Mosquitto and InfluxDB 1.6 (issue 14): the points stored
are exactly the expected subset of a scripted series; exact repeats are stored once; what was
written before a clean restart stays the reference after it; and after a SIGKILL, which saves
nothing, a redelivered or new reading is never skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import Expected, publish

pytestmark = pytest.mark.integration

ROUTES = [
    {
        "topic": "rbe/{device}/{measurement}",
        "report": {"deadband": 0.5, "heartbeat_s": 60, "dedup_window_s": 5},
    }
]


def readings(device: str, series: list[tuple[float, float]]) -> list[Expected]:
    """(time s, value) pairs as p4n4 messages with their own time."""
    return [
        Expected(f"rbe/{device}/t", f'{{"v": {v}, "ts": {1_700_000_000 + t}}}'.encode(), "value")
        for t, v in series
    ]


def stored(db: InfluxDB1, device: str) -> list[tuple[float, float]]:
    rows = db.query(f'SELECT "value" FROM "t" WHERE "device" = \'{device}\'')["results"][0]
    values = rows.get("series", [{"values": []}])[0]["values"]
    return [(round(t / 1e9 - 1_700_000_000, 3), v) for t, v in values]


@pytest.fixture
def daemon(tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1) -> Iterator[Ingestd]:
    process = Ingestd(tmp_path, mosquitto, influxdb1.influx_settings(), ["rbe/#"], ROUTES)
    process.start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def settle(daemon: Ingestd, received: int) -> dict[str, float]:
    return daemon.wait_settled(received, timeout_s=30)


def test_stored_points_are_exactly_the_deadband_heartbeat_and_dedup_subset(
    daemon: Ingestd, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    series = [
        (0, 20.0),  # first: written
        (0.5, 20.0),  # an exact repeat within 5 s: duplicate
        (10, 20.3),  # within 0.5: deadband
        (20, 20.6),  # moved 0.6: written
        (30, 20.7),
        (40, 20.8),
        (81, 20.9),  # 61 s since 20.6 was written: heartbeat
        (90, 19.0),  # moved: written
    ]
    publish(readings("a", series), "127.0.0.1", mosquitto.port)
    metrics = settle(daemon, len(series))
    assert stored(influxdb1, "a") == [(0, 20.0), (20, 20.6), (81, 20.9), (90, 19.0)]
    route = 'route="rbe/{device}/{measurement}"'
    assert metrics[f'ingestd_points_suppressed_total{{reason="deadband",{route}}}'] == 3
    assert metrics[f'ingestd_points_suppressed_total{{reason="duplicate",{route}}}'] == 1
    assert metrics.get('ingestd_messages_dropped_total{reason="invalid_json"}', 0) == 0
    assert not daemon.deadletters.exists() or not daemon.deadletters.read_text()
    assert daemon.stop() == 0


def test_a_clean_restart_keeps_the_reference_and_a_crash_never_skips_a_reading(
    daemon: Ingestd, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    publish(readings("b", [(0, 20.0)]), "127.0.0.1", mosquitto.port)
    settle(daemon, 1)
    assert daemon.stop() == 0  # saves what report by exception remembers: all of it stored
    daemon.start()
    publish(readings("b", [(10, 20.2)]), "127.0.0.1", mosquitto.port)  # within the band of 20.0
    settle(daemon, 1)
    assert stored(influxdb1, "b") == [(0, 20.0)]
    # a SIGKILL saves nothing: the state on disk is the clean stop's, older than the database,
    # so the next reading within the band of 20.0 is suppressed (the database has 20.0) ...
    daemon.kill()
    daemon.start()
    publish(readings("b", [(20, 20.3), (30, 21.0)]), "127.0.0.1", mosquitto.port)
    settle(daemon, 2)
    assert stored(influxdb1, "b") == [(0, 20.0), (30, 21.0)]
    # ... and a reading written but not saved before a crash (21.0) is not the reference:
    # 21.3 is measured against 20.0 again, and written
    daemon.kill()
    daemon.start()
    publish(readings("b", [(40, 21.3)]), "127.0.0.1", mosquitto.port)
    settle(daemon, 1)
    assert stored(influxdb1, "b") == [(0, 20.0), (30, 21.0), (40, 21.3)]
    assert daemon.stop() == 0
