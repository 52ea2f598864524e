"""Instructions per message through `pipeline.handle`, under callgrind: a measure that does not
move with the machine's load, for changes too small for the timed benchmarks to see.

    python -m benchmarks.instructions            # needs valgrind; about a minute per case

Each case handles the same 600 p4n4 value messages once to warm every cache, then again; the
difference between a run with and without the second pass, divided by 600, is the steady-state
cost of one message. Routes without unit conversions, so the conversion child process stays out
of the count; PYTHONHASHSEED=0, so dict layouts are the same from run to run.

Cases: "none" (the p4n4 route as shipped), "deadband" (report = { deadband = 0.5,
heartbeat_s = 300 } on it) and "alert" (an `above` rule on each measurement, never firing).
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tempfile

MESSAGES = 600
CASES = ("none", "deadband", "alert")


def handle(case: str, passes: int) -> None:
    """The measured program: warm up, then `passes` more passes (0 or 1)."""
    from ingestd.alerts import Alerts
    from ingestd.buffer import MemoryBuffer
    from ingestd.config import AlertSettings, parse_settings
    from ingestd.devtools.workload import ROUTES, TOPICS, workload
    from ingestd.outbox import Outbox
    from ingestd.pipeline import Pipeline
    from ingestd.records import RawMessage
    from ingestd.routes import compile_routes
    from ingestd.telemetry import Telemetry

    routes = [dict(r) for r in ROUTES if "units" not in r]
    if case == "deadband":
        routes[0]["report"] = {"deadband": 0.5, "heartbeat_s": 300}
    settings = parse_settings(
        {"mqtt": {"topics": TOPICS}, "influx": {"api": "v1", "database": "d"}, "routes": routes}
    )
    messages = [
        RawMessage(m.topic, m.payload, 1) for m in workload(5_000, 0.0) if m.kind == "value"
    ][:MESSAGES]
    alerts = None
    if case == "alert":
        names = sorted({m.topic.split("/")[2] for m in messages})
        rules = [AlertSettings(name=f"a{i}", measurement=n, above=1e9) for i, n in enumerate(names)]
        alerts = Alerts(rules, Outbox(), 10**6)
    pipeline = Pipeline(
        compile_routes(settings), MemoryBuffer(10**7), Telemetry(), lambda _d: None,
        settings.limits, alerts=alerts,
    )  # fmt: skip
    for message in messages:
        pipeline.handle(message)
    gc.collect()
    gc.freeze()
    gc.disable()  # the code's own instructions, not where the collector happens to run
    for _ in range(passes):
        for message in messages:
            pipeline.handle(message)


def instructions(case: str, passes: int) -> int:
    with tempfile.TemporaryDirectory() as work:
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/out",
             sys.executable, "-m", "benchmarks.instructions", "--run", case, str(passes)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
    found = re.search(r"Collected : (\d+)", result.stderr)
    assert found, result.stderr[-500:]
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--run"]:
        handle(sys.argv[2], int(sys.argv[3]))
        return
    base = None
    for case in CASES:
        per_message = (instructions(case, 1) - instructions(case, 0)) / MESSAGES
        base = base or per_message
        print(f"{case:9} {per_message:9,.0f} instructions a message ({per_message / base:.3f}x)")


if __name__ == "__main__":
    main()
