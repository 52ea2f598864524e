"""The broker's limits, visible (issue 12 item 7): at QoS 1 a fast burst can overflow the
broker's queue for a subscriber, and the broker drops what does not fit, where ingestd cannot see
it. Mosquitto counts those drops in $SYS; ingestd now exports them and warns when they grow."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until

pytestmark = pytest.mark.integration


def test_messages_the_broker_drops_are_exported_and_warned_about(
    tmp_path: Path, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    broker = Mosquitto(tmp_path, max_queued_messages=10, sys_interval_s=1)
    broker.start()
    try:
        ingestd = ingestd_factory(broker, influxdb1.influx_settings())
        wait_until(
            lambda: ingestd.metrics().get("ingestd_broker_messages_dropped", -1) >= 0,
            10,
            "the broker's drop counter",
        )
        start = ingestd.metrics()["ingestd_broker_messages_dropped"]
        # a persistent subscriber that went away: the broker queues 10 of its messages, drops 20
        away = paho.Client(CallbackAPIVersion.VERSION2, client_id="away", clean_session=False)
        away.connect("127.0.0.1", broker.port)
        away.loop_start()
        away.subscribe("parked/#", qos=1)
        time.sleep(0.3)
        away.loop_stop()
        away.disconnect()
        sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="sender")
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()
        for i in range(30):
            sender.publish(f"parked/{i}", b"1", qos=1).wait_for_publish(5)
        sender.loop_stop()
        sender.disconnect()
        wait_until(
            lambda: ingestd.metrics()["ingestd_broker_messages_dropped"] >= start + 20,
            10,
            "20 drops counted",
        )
        metrics = ingestd.metrics()
        assert metrics["ingestd_broker_messages_stored"] >= 10
        # the $SYS messages are read, not routed: no message received, none dead-lettered
        assert metrics.get("ingestd_messages_received_total", 0) == 0
        assert ingestd.stop() == 0
        events = [json.loads(line) for line in ingestd.log.read_text().splitlines()]
        warned = [e for e in events if e.get("event") == "broker_dropped_messages"]
        assert warned and sum(e["dropped"] for e in warned) >= 20
        assert "max_queued_messages" in warned[0]["fix"]
    finally:
        broker.stop()
