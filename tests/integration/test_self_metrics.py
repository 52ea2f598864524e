"""ingestd writes its own counters into a database of their own, "ingestd" (the stack's health
dashboard reads them there); the sensors' database holds only sensor data."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import publish, workload

COUNT = 2000


def latest(db: InfluxDB1, query: str) -> dict[str, Any]:
    series = db.query(query, "ingestd")["results"][0].get("series", [])
    return {
        (s.get("tags") or {}).get("reason", s["name"]): dict(
            zip(s["columns"], s["values"][0], strict=True)
        )
        for s in series
    }


def test_health_counters_reach_the_database_and_agree_with_metrics(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    ingestd = ingestd_factory(
        mosquitto, influxdb1.influx_settings(), self_metrics={"interval_s": 0.3}
    )
    messages = workload(COUNT, bad_ratio=0.05)
    good = sum(1 for m in messages if m.reason is None)
    reasons = Counter(m.reason for m in messages if m.reason is not None)
    publish(messages, "127.0.0.1", mosquitto.port)
    ingestd.wait_settled(COUNT, timeout_s=60)

    # the next report after settling carries the final totals; bounded wait for it
    deadline = time.monotonic() + 20
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        report = latest(influxdb1, "SELECT last(*) FROM ingestd").get("ingestd", {})
        if report.get("last_points_written") == good:
            break
        time.sleep(0.3)
    assert ingestd.stop() == 0

    assert report["last_messages_received"] == COUNT
    assert report["last_points_written"] == good
    assert report["last_messages_dropped"] == sum(reasons.values())
    assert report["last_mqtt_connected"] == 1
    assert report["last_buffer_capacity_lines"] > 0
    assert report["last_rss_bytes"] > 10_000_000
    drops = latest(influxdb1, "SELECT last(count) FROM ingestd_drops GROUP BY reason")
    assert {r: d["last"] for r, d in drops.items() if d["last"]} == dict(reasons)
    # integers stay integers, so Grafana's derivative() is exact
    types = influxdb1.field_types("ingestd")
    assert types[("ingestd", "points_written")] == "integer"
    assert types[("ingestd", "write_seconds_sum")] == "float"
    # and none of it in the sensors' database, where a sensor query would see it (issue 13)
    shown = influxdb1.query("SHOW MEASUREMENTS")["results"][0]["series"][0]["values"]
    assert not [name for [name] in shown if name.startswith("ingestd")]
