"""Types that never go wrong, against a real InfluxDB 1.6 (issue 11 item 3): "no reading"
markers never decide a type, the memory survives a restart, and what the database already
holds wins, learned at startup or from the answer to a conflicting write."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from ingestd.deadletter import read_dead_letters
from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import Expected, publish

pytestmark = pytest.mark.integration

ROUTES = [{"topic": "sensors/{device}/{measurement}"}]


def _ingestd(tmp_path: Path, broker: Mosquitto, db: InfluxDB1) -> Ingestd:
    return Ingestd(tmp_path, broker, db.influx_settings(), ["sensors/#"], ROUTES)


def _send(broker: Mosquitto, *payloads: bytes, topic: str = "sensors/dev-1/temperature") -> None:
    publish([Expected(topic, p, "m") for p in payloads], "127.0.0.1", broker.port)


def _seed(db: InfluxDB1, line: bytes) -> None:
    db.query('CREATE DATABASE "sensors"')
    request = urllib.request.Request(f"{db.url}/write?db=sensors", data=line, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def test_markers_around_numbers_with_a_restart_leave_a_float_holding_every_reading(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    first = _ingestd(tmp_path, mosquitto, influxdb1)
    first.start()
    try:
        _send(mosquitto, b'{"v": "unavailable"}', b"21.5", b'{"v": 22}')
        first.wait_settled(3, timeout_s=30)
    finally:
        assert first.stop() == 0
    second = _ingestd(tmp_path, mosquitto, influxdb1)
    second.start()
    try:
        _send(mosquitto, b"unknown", b"nan", b'{"v": 23.25}', b"24")
        metrics = second.wait_settled(4, timeout_s=30)
    finally:
        assert second.stop() == 0
    assert metrics["ingestd_messages_ignored_total"] == 2
    assert read_dead_letters(second.deadletters) == []
    assert influxdb1.field_types()[("temperature", "value")] == "float"
    values = sorted(p["fields"]["value"] for p in influxdb1.points())
    assert values == [21.5, 22.0, 23.25, 24.0]


def test_the_databases_integer_is_learned_at_startup(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    _seed(influxdb1, b"temperature,device=old value=1i 1700000000000000000")
    ingestd = _ingestd(tmp_path, mosquitto, influxdb1)
    ingestd.start()
    try:
        _send(mosquitto, b'{"v": 2}', b'{"v": 2.5}')
        ingestd.wait_settled(2, timeout_s=30)
    finally:
        assert ingestd.stop() == 0
    stored = sorted(p["fields"]["value"] for p in influxdb1.points())
    assert stored == [1, 2] and all(isinstance(v, int) for v in stored)
    letters = read_dead_letters(ingestd.deadletters)
    assert [letter.reason for letter in letters] == ["field_type_conflict"]
    assert "2.5 (float) is not a valid int" in letters[0].detail


def test_a_conflict_the_database_answers_is_learned_for_the_next_values(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    ingestd = _ingestd(tmp_path, mosquitto, influxdb1)
    ingestd.start()
    try:
        # created behind ingestd's back, after it asked at startup; now, so in the shard the
        # next writes go to (InfluxDB 1.x keeps a field's type per shard)
        _seed(influxdb1, b"pressure,device=old value=1i")
        _send(mosquitto, b'{"v": 3}', topic="sensors/dev-1/pressure")
        ingestd.wait_settled(1, timeout_s=30)
        _send(mosquitto, b'{"v": 4}', b'{"v": 5}', topic="sensors/dev-1/pressure")
        metrics = ingestd.wait_settled(3, timeout_s=30)
    finally:
        assert ingestd.stop() == 0
    letters = read_dead_letters(ingestd.deadletters)
    assert [letter.reason for letter in letters] == ["rejected_by_sink"]  # only the first
    assert "already exists as type integer" in letters[0].detail
    assert metrics["ingestd_points_written_total"] == 2
    assert sorted(p["fields"]["value"] for p in influxdb1.points()) == [1, 4, 5]
