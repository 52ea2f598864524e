"""The fleet simulator end to end: what it reports as published is exactly what ingestd
received, stored (read back from InfluxDB 1.6) and dead-lettered, at QoS 0 and QoS 1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.sim.fleet import Fleet
from ingestd.sim.simulate import simulate


def stored_per_measurement(db: InfluxDB1) -> Counter[str]:
    out: Counter[str] = Counter()
    for series in db.query("SELECT count(*) FROM /.*/")["results"][0].get("series", []):
        out[series["name"]] = max(v for v in series["values"][0][1:] if v is not None)
    return out


@pytest.mark.parametrize("qos", [0, 1])
def test_published_equals_stored_plus_dead_lettered(
    qos: int, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    ingestd = ingestd_factory(mosquitto, influxdb1.influx_settings())
    fleet = Fleet(300, "mixed", seed=11, malformed_share=0.03)
    report = asyncio.run(
        simulate(fleet, "127.0.0.1", mosquitto.port, count=6000, qos=qos, pre_encode=True)
    )
    assert report.published == 6000
    if qos:
        assert report.acked == 6000
    metrics = ingestd.wait_settled(report.published, timeout_s=60)
    assert ingestd.stop() == 0

    malformed = report.malformed_by_reason
    assert sum(malformed.values()) == report.per_format["malformed"] > 0
    assert metrics["ingestd_messages_received_total"] == report.published
    for reason, count in malformed.items():
        assert metrics[f'ingestd_messages_dropped_total{{reason="{reason}"}}'] == count
    good = report.published - sum(malformed.values())
    assert metrics["ingestd_points_written_total"] == good
    # one point per good message, none overwritten: every series' timestamps were unique
    stored = stored_per_measurement(influxdb1)
    assert sum(stored.values()) == good
    assert stored["telemetry"] == report.per_format["telemetry"]
    assert stored["ruuvi"] == report.per_format["ruuvi"]


def test_the_cli_paces_reports_and_logs_in(tmp_path: Path, mosquitto: Mosquitto) -> None:
    report_path = tmp_path / "published.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "ingestd", "simulate",
            "--port", str(mosquitto.port), "--devices", "50", "--rate", "500",
            "--duration-s", "2", "--qos", "1", "--report", str(report_path),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    # how close to the pace it keeps is timing, so benchmarks/test_simulator_pacing.py
    # reports it; what holds on any machine: never more than the 1000 slots, all acked
    assert 0 < report["published"] <= 1000
    assert report["acked"] == report["published"]
    assert sum(report["per_topic"].values()) == report["published"]
    assert report["duration_s"] > 0
    assert "published" in result.stdout


def test_a_refused_login_is_an_error_not_a_hang(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, listener_options="allow_anonymous false\n")
    broker.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ingestd", "simulate", "--port", str(broker.port),
             "--count", "10", "--burst"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        broker.stop()
    assert result.returncode == 1
    assert "refused" in result.stderr
