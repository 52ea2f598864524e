"""`ingestd discover`'s classification on the real-device corpus: every case under a format's
default topics is attributed to that format, and the printed config, used as is, reads them all
without a dead letter (issue 11 item 6)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from ingestd.buffer import MemoryBuffer
from ingestd.config import parse_settings
from ingestd.discover import MAX_TOPICS, Discovery
from ingestd.errors import MessageRejected
from ingestd.pipeline import Pipeline
from ingestd.records import RawMessage
from ingestd.routes import compile_routes, subscriptions
from ingestd.telemetry import Telemetry
from ingestd.topics import filter_matches
from tests.corpus import case_payload, corpus_cases

FORMAT_OF = {  # corpus file -> the format that reads its default-layout cases
    "zigbee2mqtt": "zigbee2mqtt",
    "tasmota": "tasmota",
    "shelly": "shelly",
    "esphome": "esphome",
    "homeassistant": "homeassistant",
    "ruuvi": "ruuvi",
    "ttn": "ttn",
    "owntracks": "owntracks",
    "sparkplug": "sparkplug_b",
    "plain": "homie",
}


def _default_layout(name: str, topic: str) -> bool:
    settings = parse_settings(
        {"influx": {"api": "v1", "database": "d"}, "routes": [{"format": name}]}
    )
    return any(filter_matches(f, topic) for f in subscriptions(settings)[1:])  # not sensors/#


def test_the_corpus_is_classified_and_the_printed_config_reads_it() -> None:
    cases = corpus_cases()
    if not cases:
        pytest.skip("no corpus")
    discovery = Discovery()
    classified: list[dict[str, Any]] = []
    formats: set[str] = set()
    for ecosystem, case in cases:
        got = discovery.observe(case["topic"], case_payload(case))
        if _default_layout(FORMAT_OF[ecosystem], case["topic"]):
            assert got == FORMAT_OF[ecosystem], (case["name"], got)
            classified.append(case)
            formats.add(got)
    assert len(classified) >= 60  # the custom prefixes (pub/, base/, emoncms/, home/) are not
    report = discovery.report(30, "broker:1883")
    config = tomllib.loads(report)  # comments and [[routes]]: valid TOML as printed
    assert {route["format"] for route in config["routes"]} >= formats
    assert len(formats) == 9  # all but homeassistant, whose only default-layout case is discovery
    settings = parse_settings({"influx": {"api": "v1", "database": "d"}, **config})
    pipeline = Pipeline(
        compile_routes(settings),
        MemoryBuffer(10_000),
        Telemetry(),
        lambda _d: None,
        settings.limits,
    )
    for case in classified:
        message = RawMessage(case["topic"], case_payload(case), 1)
        try:
            found = pipeline.to_points(message)
        except MessageRejected as exc:
            pytest.fail(f"{case['name']}: {exc.reason}: {exc.detail}")
        assert (found is None) == bool(case["expected"].get("ignore")), case["name"]


def test_unknown_topics_are_listed_by_count() -> None:
    discovery = Discovery()
    for _ in range(3):
        discovery.observe("factory/line1/press", b"<xml/>")
    assert discovery.observe("factory/line2/press", b"1") is None
    report = discovery.report(5, "b:1")
    assert "# not classified: 2 topics" in report
    assert "#   factory/line1/press (3 messages)" in report


def test_a_sparkplug_ddata_before_its_birth_is_still_sparkplug() -> None:
    discovery = Discovery()
    assert discovery.observe("spBv1.0/g/DDATA/n/d", b"\x12\x04\x10\x09\x70\x01") == "sparkplug_b"
    assert "1 refused" in discovery.report(1, "b:1")


def test_memory_is_bounded_by_the_topic_count() -> None:
    discovery = Discovery()
    for i in range(MAX_TOPICS + 5):
        discovery.observe(f"x/{i}", b"1")
    assert len(discovery.topics) == MAX_TOPICS and discovery.overflow == 5
