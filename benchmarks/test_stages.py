"""Stage micro-benchmarks: µs per message for decode+validate, convert, encode and the whole
inline pipeline, per payload format, over a seeded workload with 5% bad messages.

    pytest benchmarks/test_stages.py -s            # prints the table, writes results/stages.json
BENCH_SMOKE=1 makes it tiny (CI keeps the harness from rotting); medians of 5 repeats otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ingestd.alerts import Alerts
from ingestd.buffer import MemoryBuffer
from ingestd.config import AlertSettings, ReportSettings, parse_settings
from ingestd.decode import parse_json
from ingestd.devtools.workload import ROUTES, TOPICS, workload
from ingestd.encode import LineEncoder, to_line
from ingestd.fieldtypes import FieldTypes
from ingestd.outbox import Outbox
from ingestd.pipeline import Pipeline
from ingestd.records import RawMessage
from ingestd.routes import compile_routes
from ingestd.telemetry import Telemetry
from ingestd.transform import to_points
from ingestd.units import parse_conversion
from tests.corpus import case_payload, corpus_cases, corpus_settings

from .harness import RESULTS, SMOKE

COUNT = 500 if SMOKE else 50_000
REPEATS = 1 if SMOKE else 5

SETTINGS = parse_settings(
    {"mqtt": {"topics": TOPICS}, "influx": {"api": "v1", "database": "db"}, "routes": ROUTES}
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def us_per_call(fn: Callable[[], object], calls: int) -> float:
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(runs)


def handle_all(pipeline: Pipeline, messages: list[RawMessage]) -> Callable[[], None]:
    def run() -> None:
        for message in messages:
            pipeline.handle(message)

    return run


def _format_costs() -> dict[str, float]:
    """pipeline.handle per ecosystem format, over that ecosystem's corpus cases (the
    measurements, in file order: a Sparkplug DDATA after its DBIRTH) repeated to COUNT, through
    the README's one-line routes. Empty without ../shared/corpus."""
    out: dict[str, float] = {}
    by_file: dict[str, list[dict[str, Any]]] = {}
    for ecosystem, case in corpus_cases():
        if not case["expected"].get("ignore"):
            by_file.setdefault(ecosystem, []).append(case)
    for ecosystem, cases in by_file.items():
        settings = corpus_settings(ecosystem)
        pipeline = Pipeline(
            compile_routes(settings),
            MemoryBuffer(10**9),
            Telemetry(),
            lambda _d: None,
            settings.limits,
        )
        one_round = [RawMessage(c["topic"], case_payload(c), 1) for c in cases]
        messages = one_round * max(1, COUNT // 10 // len(one_round))
        out[f"pipeline.handle: {ecosystem} (corpus)"] = us_per_call(
            handle_all(pipeline, messages), len(messages)
        )
    return out


def test_stage_costs() -> None:
    messages = [RawMessage(m.topic, m.payload, 1) for m in workload(COUNT, 0.05)]
    routes = compile_routes(SETTINGS)
    results: dict[str, float] = {}

    objects = [m.payload for m in messages if m.payload[:1] == b"{" and m.payload.endswith(b"}")]
    results["decode (orjson)"] = us_per_call(lambda: [parse_json(p) for p in objects], len(objects))

    routed = [(m, routes.match(m.topic)) for m in messages]
    good = []
    types = FieldTypes()
    for message, match in routed:
        if match is None:
            continue
        try:
            to_points(match[0], match[1], message.payload, 1, types=types)
            good.append((message, match))
        except Exception:
            continue

    def transform_all() -> None:
        for message, (route, segments) in good:
            to_points(route, segments, message.payload, 1, types=types)

    results["route match"] = us_per_call(lambda: [routes.match(m.topic) for m in messages], COUNT)
    results["decode+validate+convert (to_points, good only)"] = us_per_call(
        transform_all, len(good)
    )
    conversion = parse_conversion("degF -> degC", "k")
    values = [float(i) for i in range(COUNT)]
    results["unit conversion (one field)"] = us_per_call(
        lambda: [conversion.apply(v) for v in values], COUNT
    )
    points = [
        p
        for message, (route, seg) in good
        for p in to_points(route, seg, message.payload, 1, types=types)[0]
    ]
    results["encode, uncached (to_line)"] = us_per_call(
        lambda: [to_line(p) for p in points], len(points)
    )
    encoder = LineEncoder()
    results["encode, per-series cache (LineEncoder, used by the pipeline)"] = us_per_call(
        lambda: [encoder.to_line(p) for p in points], len(points)
    )

    for kind in ("value", "value_ms", "bare", "telemetry", "ruuvi", "bad"):
        subset = [
            RawMessage(m.topic, m.payload, 1) for m in workload(COUNT, 0.05) if m.kind == kind
        ]
        pipeline = Pipeline(
            routes, MemoryBuffer(10**9), Telemetry(), lambda _d: None, SETTINGS.limits
        )
        results[f"pipeline.handle: {kind}"] = us_per_call(handle_all(pipeline, subset), len(subset))

    # p4n4 values whose payload lacks the route's time_key: stamped on receipt, counted, and
    # logged at most once per interval, so the price is the count
    untimed = [
        RawMessage(m.topic, orjson.dumps({"v": orjson.loads(m.payload)["v"]}), 1)
        for m in workload(COUNT, 0.05)
        if m.kind == "value"
    ]
    pipeline = Pipeline(routes, MemoryBuffer(10**9), Telemetry(), lambda _d: None, SETTINGS.limits)
    results["pipeline.handle: value without its ts (counted)"] = us_per_call(
        handle_all(pipeline, untimed), len(untimed)
    )

    pipeline = Pipeline(routes, MemoryBuffer(10**9), Telemetry(), lambda _d: None, SETTINGS.limits)
    results["pipeline.handle: mixed, 5% bad"] = us_per_call(handle_all(pipeline, messages), COUNT)

    # report by exception on the p4n4 route (issue 14): what a deadband rule costs a message;
    # routes without one pay only the check that they have none (the "value" figure above)
    with_rule = SETTINGS.model_copy(
        update={
            "routes": [
                SETTINGS.routes[0].model_copy(
                    update={"report": ReportSettings(deadband=0.5, heartbeat_s=300)}
                ),
                *SETTINGS.routes[1:],
            ]
        }
    )
    values_only = [
        RawMessage(m.topic, m.payload, 1) for m in workload(COUNT, 0.05) if m.kind == "value"
    ]
    pipeline = Pipeline(
        compile_routes(with_rule), MemoryBuffer(10**9), Telemetry(), lambda _d: None,
        SETTINGS.limits,
    )  # fmt: skip
    results["pipeline.handle: value, deadband rule"] = us_per_call(
        handle_all(pipeline, values_only), len(values_only)
    )
    # an alert rule on the same readings: what watching a field costs a message (the readings
    # stay under the threshold: the common case, no transition to publish)
    alerts = Alerts(
        [AlertSettings(name="hot", measurement="temperature", above=1e9)], Outbox(), 10**6
    )
    pipeline = Pipeline(
        routes, MemoryBuffer(10**9), Telemetry(), lambda _d: None, SETTINGS.limits, alerts=alerts
    )
    results["pipeline.handle: value, alert rule"] = us_per_call(
        handle_all(pipeline, values_only), len(values_only)
    )

    results.update(_format_costs())

    width = max(len(k) for k in results)
    print(f"\n{'stage':<{width}}  µs/message (median of {REPEATS})")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:8.2f}")
    assert all(v > 0 for v in results.values())
    if not SMOKE:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "stages.json").write_text(
            json.dumps(
                {
                    "machine": {
                        "cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(),
                        "python": platform.python_version(),
                    },
                    "messages": COUNT,
                    "repeats": REPEATS,
                    "us_per_message": results,
                },
                indent=2,
            )
            + "\n"
        )
