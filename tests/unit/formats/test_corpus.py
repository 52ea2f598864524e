"""The real-device corpus (`../shared/corpus/`, 89 messages from ten ecosystems) through the
named formats: every measurement case stores its readings, every `ignore` case is skipped
without an error, and each case that cannot pass yet says why (skipped with its reason). Each
case runs after the cases before it in its file, as the corpus README asks for Sparkplug.

Each file runs against the config a user writes from the README: one `format = "<name>"` route
per ecosystem, plus a `topic` where the case was captured under a custom prefix. A judge accepts
any consistent naming (corpus README): what must match is every expected value, the identity
tags, and whether the time came from the payload or is the receive time.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from ingestd.buffer import MemoryBuffer
from ingestd.errors import MessageRejected
from ingestd.pipeline import Pipeline
from ingestd.records import FieldValue, Point, RawMessage
from ingestd.routes import compile_routes, subscriptions
from ingestd.telemetry import Telemetry
from ingestd.topics import filter_matches
from tests.corpus import CORPUS, NOT_YET, case_payload, corpus_cases, corpus_settings

RECEIVED_NS = 1_800_000_000_000_000_000


def _cases() -> list[Any]:
    cases = corpus_cases()
    if not cases:
        return [
            pytest.param(None, None, [], marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))
        ]
    out = []
    for i, (ecosystem, case) in enumerate(cases):
        # the cases of its file before it, fed first: a Sparkplug DDATA needs its DBIRTH
        before = [c for e, c in cases[:i] if e == ecosystem]
        marks = [pytest.mark.skip(reason=NOT_YET[ecosystem])] if ecosystem in NOT_YET else []
        out.append(pytest.param(ecosystem, case, before, id=case["name"], marks=marks))
    return out


def _same(expected: Any, got: FieldValue, spec: dict[str, Any]) -> bool:
    if "bool" in spec and isinstance(got, bool):
        return got is spec["bool"]
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, int | float) and isinstance(got, int | float):
        # converted to °C: devices round to 0.1 °F, the corpus its si_value to 4 digits
        tolerance = 0.05 if "si_value" in spec else 1e-9 * max(1.0, abs(expected))
        return math.isclose(got, expected, rel_tol=1e-6, abs_tol=tolerance)
    return bool(expected == got)


def _names_match(expected: str, key: str, point: Point) -> bool:
    tag_values = [value for _key, value in point.tags]
    return (
        key == expected
        or any(expected == f"{tag}.{key}" for tag in tag_values)  # a block became a tag
        or any(expected == f"{key}{tag}" for tag in tag_values)  # POWER1: POWER, relay=1
        or any(expected == key + unit for unit in ("_f", ".tC", ".tF"))  # converted to °C
        or (key == "value" and point.measurement == expected)  # p4n4: the name is the measurement
        or expected == f"{key}.value"  # a {"value": x} wrapper unwrapped
    )


def _find(name: str, spec: dict[str, Any], points: list[Point]) -> Point | None:
    wanted = spec["si_value"] if "si_value" in spec else spec["value"]
    if spec.get("unit") == "°F" and "si_value" not in spec:  # ingestd stores °C
        spec = {**spec, "si_value": (wanted - 32) * 5 / 9}
        wanted = spec["si_value"]
    for point in points:
        for key, value in point.fields:
            if _names_match(name, key, point) and _same(wanted, value, spec):
                return point
    return None


@pytest.mark.parametrize(("ecosystem", "case", "before"), _cases())
def test_corpus_case(ecosystem: str, case: dict[str, Any], before: list[dict[str, Any]]) -> None:
    settings = corpus_settings(ecosystem)
    expected = case["expected"]
    topic = case["topic"]
    payload = case_payload(case)
    if not any(filter_matches(f, topic) for f in subscriptions(settings)):
        assert expected.get("ignore"), f"{topic} is not subscribed, but it is a measurement"
        return
    pipeline = Pipeline(
        compile_routes(settings), MemoryBuffer(1000), Telemetry(), lambda _d: None, settings.limits
    )
    for earlier in before:
        pipeline.handle(RawMessage(earlier["topic"], case_payload(earlier), RECEIVED_NS))
    try:
        found = pipeline.to_points(RawMessage(topic, payload, RECEIVED_NS))
    except MessageRejected as exc:
        pytest.fail(f"dead-lettered: {exc.reason}: {exc.detail}")
    if expected.get("ignore"):
        assert found is None, f"stored, but it is not a measurement: {found}"
        return
    assert found is not None, "ignored, but it is a measurement"
    points = found[0]
    for name, spec in expected["fields"].items():
        assert _find(name, spec, points) is not None, (name, spec, points)
    for point_spec in expected.get("points", []):
        for name, spec in point_spec["fields"].items():
            point = _find(name, spec, points)
            assert point is not None, (name, spec, points)
            assert set(point_spec["tags"].items()) <= set(point.tags), (point_spec, point)
    tags = {tag for point in points for tag in point.tags}
    assert set(expected["tags"].items()) <= tags, (expected["tags"], tags)
    from_payload = expected["timestamp"].startswith("from payload")
    for point in points:
        assert (point.time_ns != RECEIVED_NS) == from_payload, (expected["timestamp"], point)
