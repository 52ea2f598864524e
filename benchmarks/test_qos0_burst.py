"""QoS 0: there is nothing to acknowledge, so whatever the broker drops is the broker's. A burst
from one publisher, reconciled: published = received by ingestd + dropped by the broker
($SYS/broker/publish/messages/dropped), and received = stored + dead-lettered.

    pytest benchmarks/test_qos0_burst.py -s        # BENCH_SMOKE=1 for a tiny run
"""

from __future__ import annotations

import json
import time

from ingestd.devtools.workload import publish

from .harness import RESULTS, SMOKE, broker_dropped
from .stack import quiet_ingestd, running_stack, value_messages

COUNT = 1000 if SMOKE else 100_000


def test_qos0_burst_reconciles() -> None:
    with running_stack("sys_interval 1\n") as (broker, db, workdir):
        messages = value_messages(COUNT)
        ingestd = quiet_ingestd(workdir, broker, db.influx_settings(), mqtt={"qos": 0})
        ingestd.start()
        cpu_before = ingestd.cpu_seconds()
        started = time.monotonic()
        publish(messages, "127.0.0.1", broker.port, qos=0)
        published_s = time.monotonic() - started
        received, last_change = -1.0, time.monotonic()
        while time.monotonic() - last_change < 3 and time.monotonic() - started < 120:
            metrics = ingestd.metrics()
            if metrics["ingestd_messages_received_total"] != received:
                received, last_change = metrics["ingestd_messages_received_total"], time.monotonic()
            time.sleep(0.2)
        metrics = ingestd.wait_settled(int(received), timeout_s=60)
        cpu_ms_per_1000 = (ingestd.cpu_seconds() - cpu_before) / received * 1e6
        peak_rss_mb = ingestd.peak_rss_mb()
        time.sleep(1.5)  # one more $SYS interval
        dropped = broker_dropped(broker.port)
        assert ingestd.stop() == 0
        stored = db.count()
    result = {
        "published": COUNT,
        "publish_seconds": round(published_s, 2),
        "received": int(received),
        "stored": stored,
        "broker_dropped": dropped,
        "ingestd_cpu_ms_per_1000_messages": round(cpu_ms_per_1000, 1),
        "ingestd_peak_rss_mb": round(peak_rss_mb, 1),
    }
    print(f"\nQoS 0 burst: {result}")
    assert stored == received  # what ingestd received, it stored
    if not SMOKE:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / "qos0_burst.json"
        runs = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps([*runs, result], indent=2) + "\n")
