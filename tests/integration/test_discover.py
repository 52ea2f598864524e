"""`ingestd discover` against a real Mosquitto carrying the corpus (retained, so the broker hands
it over at subscribe): it names every ecosystem heard, and its printed config is valid as is."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.config import parse_settings
from ingestd.devtools.servers import Mosquitto
from tests.corpus import case_payload, corpus_cases

pytestmark = pytest.mark.integration


def test_discover_names_the_ecosystems_on_a_broker(mosquitto: Mosquitto) -> None:
    cases = corpus_cases()
    if not cases:
        pytest.skip("no corpus")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="corpus-retained")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        infos = [
            client.publish(case["topic"], case_payload(case), qos=1, retain=True)
            for _name, case in cases
        ]
        for info in infos:
            info.wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingestd",
            "discover",
            "--port",
            str(mosquitto.port),
            "--seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    last = {case["topic"]: case_payload(case) for _name, case in cases}
    topics = [topic for topic, payload in last.items() if payload]  # empty clears a retained one
    assert f"messages on {len(topics)} topics" in result.stdout.splitlines()[0]
    config = tomllib.loads(result.stdout)
    formats = {route["format"] for route in config["routes"]}
    assert formats == {
        "sparkplug_b",
        "zigbee2mqtt",
        "tasmota",
        "shelly",
        "ruuvi",
        "ttn",
        "owntracks",
        "homie",
        "esphome",
    }
    parse_settings({"influx": {"api": "v1", "database": "d"}, **config})
