"""End to end, the way a Pi owner would measure it: `ingestd simulate` -> Mosquitto -> ingestd ->
InfluxDB 1.6, all on this machine, every run reconciled exactly (published = received = stored +
dead-lettered, and the broker's $SYS drop counter at 0).

    pytest benchmarks/test_end_to_end.py -s         # full: 30 s probes, 3 runs (~40 min)
    BENCH_SMOKE=1 pytest benchmarks/ -q             # tiny sizes, what CI runs
    BENCH_RUNS=1 BENCH_SECONDS=10 pytest ...        # quicker, noisier

(a) the highest paced rate sustained with zero loss (ramp x1.5, then bisection), and the same
for the references in reference.py (mosquitto_sub, a paho counting subscriber) in the same run,
(b) the time to drain a 100k-message burst, (c) p50/p99 publish-to-stored latency at 1k msg/s
(flush_interval_s = 1), (d) ingestd CPU per 1,000 messages and peak RSS at 10k msg/s and
through a 200k burst; each at QoS 0 and QoS 1 (acks after storage, window 1000). Results:
results/end_to_end.json (with machine facts), end_to_end.md and end_to_end.png.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from .harness import SMOKE, Load, Probe, highest_rate, median_of, probe, probe_dict
from .reference import COUNTERS, reference_probe
from .report import RUN

RUNS = 1 if SMOKE else int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = 1.0 if SMOKE else float(os.environ.get("BENCH_SECONDS", "30"))
START_RATE = 500 if SMOKE else 5_000
KEEP_UP_GRACE_S = 2.0  # after the last publish, everything stored within this
DEFAULT_FLUSH = {"batch": {"flush_interval_s": 1.0}}  # the shipped default, for latency

QOS = [0, 1]


def ramp(qos: int, subscriber: str = "ingestd", start: float = START_RATE) -> Rated:
    """The highest rate `subscriber` (ingestd, or a reference.COUNTERS name) keeps up with."""
    probes: list[Probe] = []

    def passes(rate: float) -> bool:
        load = Load(qos, rate, seconds=SECONDS)
        result = probe(load) if subscriber == "ingestd" else reference_probe(load, subscriber)
        probes.append(result)
        return result.keeps_up(KEEP_UP_GRACE_S, SECONDS)

    return Rated(highest_rate(passes, start), probes)


@dataclass(frozen=True)
class Rated:
    rate: float
    probes: list[Probe]


@pytest.mark.parametrize("qos", QOS)
def test_a_highest_lossless_rate(qos: int) -> None:
    """ingestd's ramp, then each reference's from ingestd's rate, run by run, so that machine
    drift over the session falls on both sides of each ratio alike."""
    runs: list[dict[str, Rated]] = []
    for _ in range(RUNS):
        ours = ramp(qos)
        run = {"ingestd": ours}
        for name in COUNTERS:
            run[name] = ramp(qos, name, start=ours.rate or START_RATE)
        runs.append(run)
    rates = [run["ingestd"].rate for run in runs]
    references = {
        name: {
            "median_msg_per_s": median_of([run[name].rate for run in runs]),
            "runs": [run[name].rate for run in runs],
            "ingestd_share_median": median_of(
                [run["ingestd"].rate / run[name].rate if run[name].rate else 0.0 for run in runs]
            ),
        }
        for name in COUNTERS
    }
    RUN["lossless_rate"][f"qos{qos}"] = {
        "median_msg_per_s": median_of(rates),
        "runs": rates,
        "probe_seconds": SECONDS,
        "references": references,
        "probes": [probe_dict(p) for run in runs for p in run["ingestd"].probes],
        "reference_probes": [
            probe_dict(p) for run in runs for name in COUNTERS for p in run[name].probes
        ],
    }
    shares = ", ".join(
        f"{r['ingestd_share_median']:.2f} of {name} ({r['median_msg_per_s']:,.0f})"
        for name, r in references.items()
    )
    print(
        f"\nQoS {qos}: highest lossless rate {median_of(rates):,.0f} msg/s (runs {rates}); {shares}"
    )
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
        "cpu_ms_per_1000_median": median_of([p.cpu_ms_per_1000 for p in paced]),
        "peak_rss_mb_paced_median": median_of([p.peak_rss_mb for p in paced]),
        "burst": burst,
        "peak_rss_mb_burst_median": median_of([p.peak_rss_mb for p in bursts]),
        "cpu_ms_per_1000_burst_median": median_of([p.cpu_ms_per_1000 for p in bursts]),
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
