"""End to end, the way a Pi owner would measure it: `ingestd simulate` -> Mosquitto -> ingestd ->
InfluxDB 1.6, all on this machine, every run reconciled exactly (published = received = stored +
dead-lettered, and the broker's $SYS drop counter at 0).

    pytest benchmarks/test_end_to_end.py -s         # full: 30 s probes, 3 runs (~40 min)
    BENCH_SMOKE=1 pytest benchmarks/ -q             # tiny sizes, what CI runs
    BENCH_RUNS=1 BENCH_SECONDS=10 pytest ...        # quicker, noisier

(a) the highest paced rate sustained with zero loss (ramp x1.5, then bisection),
(b) the time to drain a 100k-message burst, (c) p50/p99 publish-to-stored latency at 1k msg/s
(flush_interval_s = 1), (d) ingestd CPU per 1,000 messages and peak RSS at 10k msg/s and
through a 200k burst; each at QoS 0 and QoS 1 (acks after storage, window 1000). Results:
results/end_to_end.json (with machine facts), end_to_end.md and end_to_end.png.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from .harness import SMOKE, Load, Probe, median_of, probe, probe_dict
from .report import RUN

RUNS = 1 if SMOKE else int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = 1.0 if SMOKE else float(os.environ.get("BENCH_SECONDS", "30"))
START_RATE = 500 if SMOKE else 5_000
KEEP_UP_GRACE_S = 2.0  # after the last publish, everything stored within this
DEFAULT_FLUSH = {"batch": {"flush_interval_s": 1.0}}  # the shipped default, for latency

QOS = [0, 1]


def ramp(qos: int) -> tuple[float, list[Probe]]:
    """Multiply the rate by 1.5 until a probe loses or falls behind, then bisect twice."""
    probes: list[Probe] = []

    def passes(rate: float) -> bool:
        result = probe(Load(qos, rate, seconds=SECONDS))
        probes.append(result)
        return result.keeps_up(KEEP_UP_GRACE_S, SECONDS)

    good, bad = 0.0, float(START_RATE)
    while passes(bad):
        good, bad = bad, bad * 1.5
        if SMOKE:
            return good, probes
    for _ in range(2):
        middle = round((good + bad) / 2, -2)
        if passes(middle):
            good = middle
        else:
            bad = middle
    return good, probes


@pytest.mark.parametrize("qos", QOS)
def test_a_highest_lossless_rate(qos: int) -> None:
    runs = [ramp(qos) for _ in range(RUNS)]
    rates = [rate for rate, _ in runs]
    RUN["lossless_rate"][f"qos{qos}"] = {
        "median_msg_per_s": median_of(rates),
        "runs": rates,
        "probe_seconds": SECONDS,
        "probes": [probe_dict(p) for _, probes in runs for p in probes],
    }
    print(f"\nQoS {qos}: highest lossless rate {median_of(rates):,.0f} msg/s (runs {rates})")
    assert all(rate > 0 for rate in rates), "not even the starting rate was lossless"


@pytest.mark.parametrize("qos", QOS)
def test_b_burst_drain_time(qos: int) -> None:
    count = 2_000 if SMOKE else 100_000
    probes = [probe(Load(qos, None, count=count)) for _ in range(RUNS)]
    assert all(p.lossless for p in probes), [probe_dict(p) for p in probes]
    seconds = [round(p.publish_s + p.settle_s, 2) for p in probes]
    RUN["burst_drain"][f"qos{qos}"] = {
        "messages": count,
        "median_s": median_of(seconds),
        "runs_s": seconds,
        "probes": [probe_dict(p) for p in probes],
    }
    print(f"\nQoS {qos}: {count:,} burst stored in {median_of(seconds)} s (runs {seconds})")


@pytest.mark.parametrize("qos", QOS)
def test_c_latency_at_1k_per_s(qos: int) -> None:
    probes = [
        probe(Load(qos, 1000, seconds=SECONDS, live=True), True, DEFAULT_FLUSH) for _ in range(RUNS)
    ]
    assert all(p.lossless for p in probes), [probe_dict(p) for p in probes]
    p50 = [p.latency["p50_ms"] for p in probes]
    p99 = [p.latency["p99_ms"] for p in probes]
    RUN["latency_1k"][f"qos{qos}"] = {
        "flush_interval_s": 1.0,
        "p50_ms_median": median_of(p50),
        "p99_ms_median": median_of(p99),
        "runs": [p.latency for p in probes],
    }
    print(f"\nQoS {qos} at 1k msg/s: p50 {median_of(p50)} ms, p99 {median_of(p99)} ms")


@pytest.mark.parametrize("qos", QOS)
def test_d_cpu_and_memory(qos: int) -> None:
    rate = 1_000 if SMOKE else 10_000
    burst = 2_000 if SMOKE else 200_000
    paced = [probe(Load(qos, rate, seconds=SECONDS)) for _ in range(RUNS)]
    bursts = [probe(Load(qos, None, count=burst)) for _ in range(RUNS)]
    assert all(p.lossless for p in paced + bursts)
    RUN["cpu_memory"][f"qos{qos}"] = {
        "paced_rate": rate,
        "cpu_ms_per_1000_median": median_of([p.ingestd_cpu_ms_per_1000 for p in paced]),
        "peak_rss_mb_paced_median": median_of([p.ingestd_peak_rss_mb for p in paced]),
        "burst": burst,
        "peak_rss_mb_burst_median": median_of([p.ingestd_peak_rss_mb for p in bursts]),
        "cpu_ms_per_1000_burst_median": median_of([p.ingestd_cpu_ms_per_1000 for p in bursts]),
        "simulator_cpu_ms_per_1000_median": median_of(
            [p.simulator_cpu_ms_per_1000 or 0.0 for p in paced]
        ),
        "probes": [probe_dict(p) for p in paced + bursts],
    }
    r = RUN["cpu_memory"][f"qos{qos}"]
    print(f"\nQoS {qos}: {r}")


def test_e_latency_against_offered_load() -> None:
    """For the chart: latency at a few paced rates (QoS 0, generated live)."""
    rates = [500, 1_000] if SMOKE else [1_000, 2_000, 5_000, 10_000]
    curve: list[dict[str, Any]] = []
    for rate in rates:
        p = probe(Load(0, rate, seconds=SECONDS, live=True), True, DEFAULT_FLUSH)
        curve.append({"offered_rate": rate, "stored_rate": p.stored_rate, **p.latency})
    RUN["latency_curve"]["qos0"] = curve
