"""A Sparkplug DDATA for an alias ingestd never saw born makes it ask the node for a rebirth,
through a real Mosquitto: an NCMD `Node Control/Rebirth` on the node's command topic."""

from __future__ import annotations

import queue
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import Expected, publish
from ingestd.formats.sparkplug_b_pb2 import Payload  # type: ignore[attr-defined]

pytestmark = pytest.mark.integration


def test_an_unknown_alias_makes_ingestd_request_a_rebirth(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
    node = paho.Client(CallbackAPIVersion.VERSION2, client_id="edge-node")
    node.on_message = lambda _c, _u, m: commands.put((m.topic, bytes(m.payload)))
    node.connect("127.0.0.1", mosquitto.port)
    node.subscribe("spBv1.0/plant/NCMD/press-7")
    node.loop_start()
    routes = [{"format": "sparkplug_b", "request_rebirth": True}]
    ingestd = Ingestd(tmp_path, mosquitto, influxdb1.influx_settings(), ["sensors/#"], routes)
    ingestd.start()
    try:
        ddata = Payload(timestamp=1_700_000_000_000, seq=4)
        ddata.metrics.add(alias=3, float_value=1.5)
        message = Expected("spBv1.0/plant/DDATA/press-7/sensor", ddata.SerializeToString(), "d")
        publish([message], "127.0.0.1", mosquitto.port)
        topic, data = commands.get(timeout=20)
    finally:
        assert ingestd.stop() == 0
        node.loop_stop()
        node.disconnect()
    request = Payload()
    request.ParseFromString(data)
    assert topic == "spBv1.0/plant/NCMD/press-7"
    assert [(m.name, m.boolean_value) for m in request.metrics] == [("Node Control/Rebirth", True)]
