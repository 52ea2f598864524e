"""How closely `ingestd simulate --rate R --duration-s D` keeps its pace: published / (R x D) and
the measured sending time / D, at a low and a high rate, medians of 3 runs. The load every other
benchmark offers is only as good as this. (Moved here from tests/integration/test_simulate.py:
a timed assertion on a shared machine is noise, a benchmark reports it.)

    pytest benchmarks/test_simulator_pacing.py -s   # appends to results/simulator_pacing.json
BENCH_SMOKE=1 makes it one short run per rate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ingestd.devtools.servers import Mosquitto

from .harness import SMOKE, median_of, run_simulator, save

RUNS = 1 if SMOKE else 3
SECONDS = 1.0 if SMOKE else 5.0
FLEET = ["--devices", "50", "--qos", "1", "--dropout-share", "0"]


@pytest.mark.parametrize("rate", [500, 10_000])
def test_the_simulator_keeps_its_pace(rate: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-pacing-"))
    broker = Mosquitto(workdir)
    broker.start()
    try:
        reports = [
            run_simulator(
                broker.port,
                [*FLEET, "--rate", str(rate), "--duration-s", str(SECONDS)],
                workdir / f"run{i}.json",
                timeout_s=SECONDS * 10 + 60,
            )
            for i in range(RUNS)
        ]
    finally:
        broker.stop()
    slots = rate * SECONDS
    result = {
        "offered_rate": rate,
        "seconds": SECONDS,
        "published_share_median": median_of([r["published"] / slots for r in reports]),
        "duration_ratio_median": median_of([r["duration_s"] / SECONDS for r in reports]),
        "runs": [{k: r[k] for k in ("published", "acked", "duration_s")} for r in reports],
    }
    print(f"\nsimulator pacing at {rate} msg/s: {result}")
    # not timing: a paced run never sends more than its slots, and QoS 1 acks everything
    assert all(0 < r["published"] <= slots and r["acked"] == r["published"] for r in reports)
    if not SMOKE:
        save("simulator_pacing", result)
