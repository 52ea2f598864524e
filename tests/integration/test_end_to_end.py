"""10,000 messages at QoS 1 over every format, 5% bad: every good one stored exactly, every bad
one dead-lettered with its reason, the metrics counting both. Against InfluxDB 1.6 (api v1) and
VictoriaMetrics (api v2)."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import pytest

from ingestd.deadletter import read_dead_letters
from ingestd.devtools.servers import Database, InfluxDB1, Mosquitto, VictoriaMetrics
from ingestd.devtools.workload import Expected, publish, workload

from .conftest import TRANSPORTS

pytestmark = pytest.mark.integration

COUNT = 10_000


def same_value(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return bool(got == want and type(got) is type(want))
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=0)


def check_exact(db: Any, good: list[Expected], window: tuple[int, int]) -> None:
    stored = db.points()
    assert len(stored) == len(good)
    by_key = {(p["measurement"], tuple(sorted(p["tags"].items())), p["time_ns"]): p for p in stored}
    by_series = {(p["measurement"], tuple(sorted(p["tags"].items()))): p for p in stored}
    for want in good:
        tags = tuple(sorted(want.tags.items()))
        if want.time_ns is None:
            got = by_series[(want.measurement, tags)]
            assert window[0] <= got["time_ns"] <= window[1]
        else:
            got = by_key[(want.measurement, tags, want.time_ns)]
        assert set(got["fields"]) == set(want.fields), want
        for key, value in want.fields.items():
            assert same_value(got["fields"][key], value), (want, key, got)
    types = db.field_types()
    assert types[("temperature", "value")] == "float"
    assert types[("humidity", "value")] == "float"  # ints on the wire, one type per field
    assert types[("telemetry", "light")] == "boolean"
    assert types[("ruuvi", "battery_mv")] == "float"


def check_victoria(db: Database, good: list[Expected], window: tuple[int, int]) -> None:
    expected_samples = sum(len(w.fields) for w in good)
    # VictoriaMetrics answers 204 before rows are searchable; wait (bounded) until they all are
    deadline = time.monotonic() + 30
    stored = db.points()
    while len(stored) < expected_samples and time.monotonic() < deadline:
        time.sleep(0.5)
        stored = db.points()
    index: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}
    for p in stored:
        index.setdefault((p["metric"], tuple(sorted(p["tags"].items()))), []).append(p)
    assert len(stored) == expected_samples
    for want in good:
        tags = tuple(sorted(want.tags.items()))
        for key, value in want.fields.items():
            samples = index[(f"{want.measurement}_{key}", tags)]
            if want.time_ns is None:
                assert len(samples) == 1
                sample = samples[0]
                assert window[0] // 10**6 <= sample["time_ms"] <= window[1] // 10**6
            else:
                matching = [s for s in samples if s["time_ms"] == want.time_ns // 10**6]
                assert len(matching) == 1, (want, key)
                sample = matching[0]
            # VictoriaMetrics stores floats as decimals with ~12 significant digits
            assert math.isclose(sample["value"], float(value), rel_tol=1e-10), (want, key, sample)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_good_message_is_stored_and_every_bad_one_dead_lettered(
    transport: str, mosquitto: Mosquitto, database: Database, ingestd_factory: Any
) -> None:
    ingestd = ingestd_factory(mosquitto, database.influx_settings())
    messages = workload(COUNT, bad_ratio=0.05)
    good = [m for m in messages if m.reason is None]
    bad = [m for m in messages if m.reason is not None]
    assert len(bad) == COUNT // 20

    started_ns = time.time_ns()
    publish(messages, "127.0.0.1", mosquitto.port)
    metrics = ingestd.wait_settled(COUNT, timeout_s=120)
    finished_ns = time.time_ns()
    assert ingestd.stop() == 0

    assert metrics["ingestd_messages_received_total"] == COUNT
    assert metrics["ingestd_points_written_total"] == len(good)
    expected_reasons = Counter(m.reason for m in bad)
    for reason, count in expected_reasons.items():
        assert metrics[f'ingestd_messages_dropped_total{{reason="{reason}"}}'] == count
    assert metrics['ingestd_messages_dropped_total{reason="rejected_by_sink"}'] == 0

    letters = read_dead_letters(ingestd.deadletters)
    assert Counter(letter.reason for letter in letters) == expected_reasons
    assert sorted((m.topic, m.payload, m.reason) for m in bad) == sorted(
        (letter.topic, letter.payload, letter.reason) for letter in letters
    )

    window = (started_ns, finished_ns)
    if isinstance(database, VictoriaMetrics):
        check_victoria(database, good, window)
    else:  # InfluxDB 1.6, or InfluxDB 2.7 in a container: types and nanoseconds kept exactly
        check_exact(database, good, window)


def test_a_ten_second_database_outage_loses_nothing(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    # without a spool: the broker holds the backlog (the spool has its own tests)
    ingestd = ingestd_factory(mosquitto, influxdb1.influx_settings(), spool={"enabled": False})
    messages = workload(3000, bad_ratio=0)
    publish(messages[:1000], "127.0.0.1", mosquitto.port)
    ingestd.wait_settled(1000, timeout_s=60)
    influxdb1.stop()
    publish(messages[1000:2000], "127.0.0.1", mosquitto.port)
    time.sleep(10)  # the outage: writes fail and are retried with backoff meanwhile
    held = ingestd.metrics()
    # Nothing is acked while nothing is stored, so the broker stops at its in-flight window
    # (20) and keeps the rest; ingestd holds only the window, and stays connected.
    assert 0 < held["ingestd_buffer_lines"] <= 20
    assert held["ingestd_mqtt_connected"] == 1
    assert held["ingestd_mqtt_reading_paused"] == 0
    assert held['ingestd_write_batches_total{outcome="retried"}'] >= 1
    influxdb1.start()
    publish(messages[2000:], "127.0.0.1", mosquitto.port)
    metrics = ingestd.wait_settled(3000, timeout_s=90)
    assert ingestd.stop() == 0
    assert metrics["ingestd_points_written_total"] == 3000
    assert sum(v for k, v in metrics.items() if k.startswith("ingestd_messages_dropped_total")) == 0
    assert len(influxdb1.points()) == 3000
