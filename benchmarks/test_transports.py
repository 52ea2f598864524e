"""The two MQTT transports side by side (mqtt.transport): "native", ingestd's own asyncio
protocol, and "paho", aiomqtt over paho-mqtt. Same probes as test_end_to_end.py: ingestd CPU per
1,000 messages and peak RSS at a paced 10k msg/s, and the time to store a 100k burst, at QoS 0
and QoS 1 (acks after storage).

    pytest benchmarks/test_transports.py -s     # writes results/transports.json and .md
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from .harness import RESULTS, SMOKE, Load, machine_info, median_of, probe, probe_dict

RUNS = 1 if SMOKE else int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = 1.0 if SMOKE else float(os.environ.get("BENCH_SECONDS", "30"))
RATE = 1_000 if SMOKE else 10_000
BURST = 2_000 if SMOKE else 100_000
TRANSPORTS = ["native", "paho"]
MEASURED: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transport(transport: str, qos: int) -> None:
    mqtt = {"mqtt": {"qos": qos, "max_inflight": 1000, "transport": transport}}
    paced = [probe(Load(qos, RATE, seconds=SECONDS), ingestd_overrides=mqtt) for _ in range(RUNS)]
    bursts = [probe(Load(qos, None, count=BURST), ingestd_overrides=mqtt) for _ in range(RUNS)]
    assert all(p.lossless for p in paced + bursts), [probe_dict(p) for p in paced + bursts]
    MEASURED[f"{transport} qos{qos}"] = {
        "cpu_ms_per_1000_at_rate": median_of([p.cpu_ms_per_1000 for p in paced]),
        "peak_rss_mb_at_rate": median_of([p.peak_rss_mb for p in paced]),
        "burst_stored_s": median_of([p.publish_s + p.settle_s for p in bursts]),
        "cpu_ms_per_1000_burst": median_of([p.cpu_ms_per_1000 for p in bursts]),
        "runs": [probe_dict(p) for p in paced + bursts],
    }
    print(f"\n{transport} QoS {qos}: {MEASURED[f'{transport} qos{qos}']}")


@pytest.fixture(scope="module", autouse=True)
def write_results() -> Any:
    yield
    if SMOKE or not MEASURED:
        return
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "transports.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    entry = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "rate": RATE,
        "burst": BURST,
        "probe_seconds": SECONDS,
        "results": MEASURED,
    }
    path.write_text(json.dumps([*runs, entry], indent=2) + "\n")
    lines = [
        "# MQTT transports side by side",
        "",
        f"Medians of {RUNS} runs; `pytest benchmarks/test_transports.py -s`. "
        f"ingestd CPU and peak RSS at a paced {RATE:,} msg/s for {SECONDS:g} s; "
        f"time to store a {BURST:,}-message burst.",
        "",
        "| transport | QoS | CPU ms / 1000 msgs | peak RSS MB | burst stored (s) "
        "| CPU ms / 1000 in the burst |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in MEASURED.items():
        transport, qos = key.split(" qos")
        lines.append(
            f"| {transport} | {qos} | {r['cpu_ms_per_1000_at_rate']} | {r['peak_rss_mb_at_rate']} "
            f"| {r['burst_stored_s']} | {r['cpu_ms_per_1000_burst']} |"
        )
    (RESULTS / "transports.md").write_text("\n".join(lines) + "\n")
