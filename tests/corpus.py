"""The real-device corpus (`../shared/corpus/`) and the routes a user writes for it from the
README: shared by the pipeline test (tests/unit/formats/test_corpus.py) and the end-to-end one
(tests/integration/test_corpus_end_to_end.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ingestd.config import Settings, parse_settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"  # ../shared beside the clone

ROUTES: dict[str, list[dict[str, Any]]] = {
    "zigbee2mqtt": [{"format": "zigbee2mqtt"}, {"format": "zigbee2mqtt", "topic": "base/#"}],
    "tasmota": [{"format": "tasmota"}, {"format": "tasmota", "topic": "emoncms/#"}],
    "shelly": [{"format": "shelly"}],
    "esphome": [{"format": "esphome"}],
    "homeassistant": [
        {"format": "homeassistant"},
        {"format": "homeassistant", "topic": "pub/{domain}/{entity}/+"},
        # two payloads from Home Assistant's docs that devices publish for HA to read: plain
        # JSON, read with the object format like any other device of one's own
        {
            "topic": "home-assistant/window/contact",
            "format": "object",
            "measurement": "homeassistant",
            "tags": {"entity": "window/contact"},
            "time_key": "",
        },
        {
            "topic": "office/sensor1",
            "format": "object",
            "measurement": "homeassistant",
            "tags": {"entity": "office/sensor1"},
            "time_key": "",
        },
    ],
    "ruuvi": [{"format": "ruuvi"}],
    "ttn": [{"format": "ttn"}],
    "owntracks": [{"format": "owntracks"}],
    "sparkplug": [{"format": "sparkplug_b"}],
    "plain": [
        {"format": "homie"},
        {"topic": "devices/{device}/{measurement}", "time_key": ""},
        # ESPEasy's generic MQTT controller: %sysname%/%tskname%/%valname%, bare values
        {"topic": "home/+/status", "format": "ignore"},
        {"topic": "home/{device}/{task}/{measurement}", "time_key": ""},
    ],
}

NOT_YET: dict[str, str] = {}  # corpus file -> why its cases cannot pass yet

# the plain routes of the value and object formats need their topics subscribed
TOPICS = {"plain": ["devices/#", "home/#"], "homeassistant": ["home-assistant/#", "office/#"]}


def corpus_settings(ecosystem: str) -> Settings:
    return parse_settings(
        {
            "mqtt": {"topics": ["sensors/#", *TOPICS.get(ecosystem, [])]},
            "influx": {"api": "v1", "database": "corpus"},
            "routes": ROUTES[ecosystem],
        }
    )


def corpus_cases() -> list[tuple[str, dict[str, Any]]]:
    """(ecosystem, case) for every case, in file order; [] without the corpus, except in CI,
    which always has it beside the clone: there a missing corpus fails instead of skipping."""
    if not CORPUS.is_dir():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"no corpus at {CORPUS}")
        return []
    return [
        (path.stem, case)
        for path in sorted(CORPUS.glob("*.json"))
        for case in json.loads(path.read_text())
    ]


def case_payload(case: dict[str, Any]) -> bytes:
    if "payload_hex" in case:
        return bytes.fromhex(case["payload_hex"])
    return str(case["payload"]).encode()
