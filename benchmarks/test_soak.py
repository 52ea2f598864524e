"""The soak (issue 12's "Done when"): 20,000 devices of every simulated format at 5,000 msg/s
for 8 minutes, QoS 1, through a real Mosquitto into InfluxDB 1.6, with ingestd's default limits.
It must reconcile exactly (published = received = stored + dead-lettered, the broker dropped
none), with no cardinality drops, and ingestd's memory must stay flat.

    pytest benchmarks/test_soak.py -s    # ~10 minutes; writes benchmarks/results/soak.json
    BENCH_SMOKE=1 pytest benchmarks/test_soak.py -s    # 20 s, 1,000 devices
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from .harness import (
    RESULTS,
    SHIPPED_BROKER_LIMITS,
    SMOKE,
    _dropped,
    broker_dropped,
    machine_info,
    run_simulator,
    settle,
)
from .stack import quiet_ingestd, running_stack

DEVICES = 1000 if SMOKE else 20_000
RATE = 1000 if SMOKE else 5000
SECONDS = 20 if SMOKE else 480
RSS_EVERY_S = 2 if SMOKE else 10


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_mixed_fleet_soak_reconciles_exactly_with_flat_memory() -> None:
    with running_stack(SHIPPED_BROKER_LIMITS) as (broker, db, workdir):
        ingestd = quiet_ingestd(
            workdir, broker, db.influx_settings(), mqtt={"qos": 1, "max_inflight": 1000}
        )
        ingestd.start()
        assert ingestd.proc is not None
        pid = ingestd.proc.pid
        samples: list[tuple[float, float]] = []
        done = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not done.wait(RSS_EVERY_S):
                samples.append((round(time.monotonic() - started), round(rss_mb(pid), 1)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        args = ["--devices", str(DEVICES), "--format", "mixed", "--qos", "1"]
        args += ["--rate", str(RATE), "--duration-s", str(SECONDS), "--max-inflight", "1000"]
        args += ["--dropout-share", "0"]
        report = run_simulator(broker.port, args, workdir / "published.json", SECONDS + 600)
        published = int(report["published"])
        metrics, unanswered = settle(ingestd.metrics, published)
        done.set()
        sampler.join()
        time.sleep(1.2)  # one more $SYS interval
        dropped_by_broker = broker_dropped(broker.port)
        assert ingestd.stop() == 0
        stored = db.count()
    by_reason = {
        key.split('"')[1]: int(value)
        for key, value in metrics.items()
        if key.startswith("ingestd_messages_dropped_total{") and value
    }
    during = [mb for at, mb in samples if at <= SECONDS]
    early = during[len(during) // 4] if during else 0.0  # after the fleet's series are known
    result = {
        "devices": DEVICES,
        "rate": RATE,
        "seconds": SECONDS,
        "published": published,
        "publish_seconds": report["duration_s"],
        "received": int(metrics.get("ingestd_messages_received_total", 0)),
        "stored": stored,
        "dead_lettered": int(_dropped(metrics)),
        "dropped_by_reason": by_reason,
        "broker_dropped": dropped_by_broker,
        "metrics_unanswered": unanswered,
        "rss_mb_at_a_quarter": early,
        "rss_mb_last": during[-1] if during else 0.0,
        "rss_mb_max": max(during, default=0.0),
        "rss_samples": samples,
        "machine": machine_info(),
    }
    print(f"\nsoak: { {k: v for k, v in result.items() if k not in ('rss_samples', 'machine')} }")
    if not SMOKE:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    assert published >= 0.95 * RATE * SECONDS
    assert dropped_by_broker == 0
    assert result["received"] == published
    assert stored + result["dead_lettered"] == published
    assert "cardinality_limit" not in by_reason
    assert result["rss_mb_last"] <= 1.1 * early + 5  # flat after the fleet is known
