"""The corpus end to end: every non-Sparkplug case published through a real Mosquitto to ingestd
running one config with every one-line ecosystem route, stored in a real InfluxDB 1.6. What is
stored is exactly what the pipeline computes for each case (tests/unit/formats/test_corpus.py
checks that against the corpus' expected readings), nothing is dead-lettered, and the `ignore`
cases that are subscribed are counted as ignored."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from ingestd.buffer import MemoryBuffer
from ingestd.config import parse_settings
from ingestd.deadletter import read_dead_letters
from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import Expected, publish
from ingestd.pipeline import Pipeline
from ingestd.records import RawMessage
from ingestd.routes import compile_routes, subscriptions
from ingestd.telemetry import Telemetry
from ingestd.topics import filter_matches
from tests.corpus import NOT_YET, ROUTES, TOPICS, case_payload, corpus_cases

pytestmark = pytest.mark.integration

# The custom-prefix routes first: the first route that matches wins, and HA statestream's
# `pub/fake/entity/state` also fits ESPHome's `+/+/+/state`.
FIRST = ("homeassistant", "plain")


def _config() -> tuple[list[str], list[dict[str, Any]]]:
    order = [*FIRST, *(name for name in ROUTES if name not in FIRST)]
    routes = [route for name in order for route in ROUTES[name] if "topic" in route]
    routes += [route for name in order for route in ROUTES[name] if "topic" not in route]
    topics = ["sensors/#", *(t for name in order for t in TOPICS.get(name, []))]
    return topics, routes


def test_the_corpus_is_stored_exactly_through_mosquitto_and_influxdb(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    cases = [(name, case) for name, case in corpus_cases() if name not in NOT_YET]
    if not cases:
        pytest.skip("no corpus")
    topics, routes = _config()
    settings = parse_settings(
        {"mqtt": {"topics": topics}, "influx": {"api": "v1", "database": "x"}, "routes": routes}
    )
    delivered = [
        (case["topic"], case_payload(case))
        for _name, case in cases
        if any(filter_matches(f, case["topic"]) for f in subscriptions(settings))
    ]
    # the oracle: the pipeline in this process, fed in the same order
    oracle = Pipeline(
        compile_routes(settings), MemoryBuffer(1000), Telemetry(), lambda _d: None, settings.limits
    )
    expected: dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, Any]] = {}
    ignored = 0
    for i, (topic, payload) in enumerate(delivered):
        found = oracle.to_points(RawMessage(topic, payload, i + 1))
        if found is None:
            ignored += 1
            continue
        for point in found[0]:
            stamp = None if point.time_ns == i + 1 else point.time_ns
            # points of one series at one payload time overwrite each other in InfluxDB
            key = (point.measurement, tuple(sorted(point.tags)), stamp if stamp else -(i + 1))
            expected.setdefault(key, {}).update(point.fields)

    ingestd = Ingestd(tmp_path, mosquitto, influxdb1.influx_settings(), topics, routes)
    ingestd.start()
    publish([Expected(t, p, "corpus") for t, p in delivered], "127.0.0.1", mosquitto.port)
    try:
        metrics = ingestd.wait_settled(len(delivered), timeout_s=60)
    finally:
        code = ingestd.stop()
    assert code == 0

    assert read_dead_letters(ingestd.deadletters) == []
    assert metrics["ingestd_messages_ignored_total"] == ignored
    stored = influxdb1.points()
    assert len(stored) == len(expected)
    by_series: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}
    for row in stored:
        by_series.setdefault((row["measurement"], tuple(sorted(row["tags"].items()))), []).append(
            row
        )
    for (measurement, tags, stamp), fields in expected.items():
        candidates = by_series[(measurement, tags)]
        if stamp > 0:
            candidates = [p for p in candidates if p["time_ns"] == stamp]
        assert any(_same_fields(p["fields"], fields) for p in candidates), (
            measurement,
            tags,
            fields,
            candidates,
        )


def _same_fields(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if set(got) != set(want):
        return False
    for key, value in want.items():
        if isinstance(value, float):
            if not math.isclose(got[key], value, rel_tol=1e-12):
                return False
        elif got[key] != value:
            return False
    return True
