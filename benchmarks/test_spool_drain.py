"""How fast the disk spool drains once the database is back: a 100,000-message QoS 1 backlog
spooled while InfluxDB 1.6 was down, then timed from its restart until the spool is empty.

    pytest benchmarks/test_spool_drain.py -s       # BENCH_SMOKE=1 for a tiny run
"""

from __future__ import annotations

import json
import statistics
import time

from ingestd.devtools.servers import wait_until
from ingestd.devtools.workload import publish

from .harness import RESULTS, SMOKE
from .stack import quiet_ingestd, running_stack, value_messages

COUNT = 1000 if SMOKE else 100_000
RUNS = 1 if SMOKE else 3


def drain_rate() -> float:
    with running_stack("max_inflight_messages 1000\n") as (broker, db, workdir):
        messages = value_messages(COUNT)
        ingestd = quiet_ingestd(workdir, broker, db.influx_settings(), mqtt={"max_inflight": 1000})
        ingestd.start()
        db.stop()
        publish(messages, "127.0.0.1", broker.port)
        wait_until(
            lambda: ingestd.metrics()["ingestd_points_spooled_total"] >= COUNT, 300, "spooled"
        )
        db.start()
        started = time.monotonic()
        wait_until(
            lambda: ingestd.metrics()["ingestd_spool_bytes"] == 0, 300, "spool drained", 0.05
        )
        elapsed = time.monotonic() - started
        assert ingestd.stop() == 0
        assert db.count() == COUNT
        return COUNT / elapsed


def test_spool_drain_rate() -> None:
    rates = [drain_rate() for _ in range(RUNS)]
    median = statistics.median(rates)
    print(f"\nspool drain: {median:,.0f} points/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")
    if not SMOKE:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "spool_drain.json").write_text(
            json.dumps(
                {
                    "messages": COUNT,
                    "points_per_s_median": round(median),
                    "runs": [round(r) for r in rates],
                },
                indent=2,
            )
            + "\n"
        )
