"""QoS 1 drain rate with acks after storage: the broker's default in-flight window (20) against a
larger one, and acks on receipt for reference.

The broker is pre-loaded while ingestd's persistent session is offline, then ingestd is started
and timed until every message is written: the rate ingestd drains a backlog at, unpaced by the
publisher. Real Mosquitto and InfluxDB 1.6 on loopback.

    pytest benchmarks/test_qos1_ack.py -s          # BENCH_SMOKE=1 for a tiny run
"""

from __future__ import annotations

import json
import statistics
import time

import pytest

from ingestd.devtools.workload import publish

from .harness import RESULTS, SMOKE
from .stack import quiet_ingestd, running_stack, value_messages

COUNT = 500 if SMOKE else 20_000
RUNS = 1 if SMOKE else 3

CASES: dict[str, tuple[int | None, dict[str, object]]] = {
    # name: (broker max_inflight_messages or None for its default, ingestd mqtt settings)
    "after_write, broker default window (20)": (None, {"ack": "after_write", "max_inflight": 20}),
    "after_write, window 1000": (1000, {"ack": "after_write", "max_inflight": 1000}),
    "on_receipt (reference, not durable)": (1000, {"ack": "on_receipt"}),
}


def drain_rate(window: int | None, mqtt: dict[str, object]) -> float:
    options = f"max_inflight_messages {window}\n" if window else ""
    with running_stack(options) as (broker, db, workdir):
        messages = value_messages(COUNT)
        ingestd = quiet_ingestd(
            workdir, broker, db.influx_settings(), mqtt=mqtt, batch={"flush_interval_s": 1.0}
        )
        ingestd.start()  # creates the persistent session
        assert ingestd.stop() == 0
        publish(messages, "127.0.0.1", broker.port)
        started = time.monotonic()
        ingestd.start()
        metrics = ingestd.wait_settled(COUNT, timeout_s=300)
        elapsed = time.monotonic() - started
        assert ingestd.stop() == 0
        assert metrics["ingestd_points_written_total"] == COUNT
        return COUNT / elapsed


@pytest.mark.parametrize("case", list(CASES))
def test_qos1_drain_rate(case: str) -> None:
    window, mqtt = CASES[case]
    rates = [drain_rate(window, mqtt) for _ in range(RUNS)]
    median = statistics.median(rates)
    print(f"\n{case}: {median:,.0f} msg/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    if not SMOKE:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "qos1_ack.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data[case] = {
            "messages": COUNT,
            "msg_per_s_median": round(median),
            "runs": [round(r) for r in rates],
            "note": "includes ingestd startup (~0.5 s) in the elapsed time",
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
