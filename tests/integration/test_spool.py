"""The disk spool with real processes: what was spooled before a crash is written after it, a
torn record costs only itself, and a full spool applies its policy and keeps ingestd running."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until
from ingestd.devtools.workload import Expected, publish, workload
from ingestd.spool import DiskSpool, decode_batch

pytestmark = pytest.mark.integration


def stamped(count: int) -> list[Expected]:
    return [m for m in workload(count * 2, bad_ratio=0) if m.time_ns is not None][:count]


def spooled_lines(spool_dir: Path) -> list[int]:
    """Lines per record in the spool, oldest first (read with the spool's own scanner)."""
    spool = DiskSpool(spool_dir, 1 << 40, 1 << 30, fsync=False)
    out: list[int] = []
    try:
        for segment in sorted(spool_dir.glob("*.seg")):
            _, records = spool._scan(segment.read_bytes(), 0)
            out.extend(len(decode_batch(body)) for _, _, body in records)
    finally:
        spool.close()  # the next ingestd takes the lock
    return out


def test_spooled_before_a_sigkill_is_written_after_it(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    messages = stamped(3000)
    ingestd = ingestd_factory(mosquitto, influxdb1.influx_settings())
    influxdb1.stop()
    publish(messages, "127.0.0.1", mosquitto.port)
    wait_until(lambda: ingestd.metrics()["ingestd_points_spooled_total"] >= 3000, 60, "all spooled")
    ingestd.kill()  # everything was acked when spooled: the broker holds nothing any more
    influxdb1.start()
    ingestd.start()
    metrics = ingestd.wait_settled(0, timeout_s=60)
    assert ingestd.stop() == 0
    assert metrics["ingestd_messages_received_total"] == 0  # nothing redelivered: it was spooled
    assert influxdb1.count() == 3000


def test_a_torn_spool_record_costs_only_its_own_lines(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    messages = stamped(2000)
    ingestd = ingestd_factory(mosquitto, influxdb1.influx_settings())
    influxdb1.stop()
    publish(messages, "127.0.0.1", mosquitto.port)
    wait_until(lambda: ingestd.metrics()["ingestd_points_spooled_total"] >= 2000, 60, "all spooled")
    assert ingestd.stop() == 0
    spool_dir = tmp_path / "spool"
    lines = spooled_lines(spool_dir)
    assert sum(lines) == 2000
    last = sorted(spool_dir.glob("*.seg"))[-1]
    last.write_bytes(last.read_bytes()[:-10])  # power lost while the last record was written
    influxdb1.start()
    ingestd.start()
    metrics = ingestd.wait_settled(0, timeout_s=60)
    assert ingestd.stop() == 0
    assert metrics["ingestd_spool_corrupt_records_total"] == 1
    assert influxdb1.count() == 2000 - lines[-1]


def test_a_full_spool_drops_the_newest_counts_and_logs_and_ingestd_keeps_running(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    messages = stamped(12000)
    ingestd = ingestd_factory(
        mosquitto,
        influxdb1.influx_settings(),
        spool={"max_bytes": 1024 * 1024, "segment_bytes": 65536, "on_full": "drop_newest"},
        batch={"max_lines": 500},
    )
    influxdb1.stop()
    publish(messages, "127.0.0.1", mosquitto.port)
    wait_until(
        lambda: ingestd.metrics()["ingestd_messages_received_total"] >= 12000, 60, "received"
    )
    time.sleep(1)
    during = ingestd.metrics()
    dropped = during['ingestd_messages_dropped_total{reason="spool_full"}']
    assert dropped > 0 and during["ingestd_spool_bytes"] <= 1024 * 1024
    assert during["ingestd_mqtt_connected"] == 1  # still running, still reading
    influxdb1.start()
    ingestd.wait_settled(12000, timeout_s=60)
    assert ingestd.stop() == 0
    assert influxdb1.count() + dropped == 12000  # every message stored or counted as dropped
    assert '"reason": "spool_full"' in ingestd.log.read_text()
