"""Acknowledge after storage: a message the broker handed us is in the database, in the dead
letters, or still with the broker. Never only in ingestd's memory."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until
from ingestd.devtools.workload import publish, workload

from .conftest import TRANSPORTS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("ack", ["after_write", "on_receipt"])
def test_sigkill_with_the_database_down_loses_nothing_when_acking_after_write(
    ack: str, transport: str, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    messages = workload(2000, bad_ratio=0)
    # without a spool, so that only the broker can hold what ingestd did not store
    ingestd = ingestd_factory(
        mosquitto, influxdb1.influx_settings(), mqtt={"ack": ack}, spool={"enabled": False}
    )
    publish(messages[:500], "127.0.0.1", mosquitto.port)
    ingestd.wait_settled(500, timeout_s=60)
    influxdb1.stop()
    publish(messages[500:], "127.0.0.1", mosquitto.port)
    time.sleep(2)  # ingestd now holds what it received, unwritten
    ingestd.kill()
    influxdb1.start()
    ingestd.start()  # same client id, persistent session: the broker redelivers what is unacked
    if ack == "after_write":
        ingestd.wait_settled(1500, timeout_s=60)  # all 1500 sent while the database was down
        assert ingestd.stop() == 0
        assert len(influxdb1.points()) == 2000
    else:  # what most MQTT clients do: ack on receipt, and lose all that was only in memory
        time.sleep(3)
        metrics = ingestd.metrics()
        assert ingestd.stop() == 0
        assert metrics["ingestd_messages_received_total"] == 0
        assert len(influxdb1.points()) == 500


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("policy", ["skip", "ingest"])
def test_retained_messages_follow_the_policy(
    policy: str, protocol: str, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    """3.1.1: skipped by the retain flag, counted, and logged (the first per filter). MQTT 5:
    the broker is asked for none at subscribe (Retain Handling 2), so nothing is guessed from
    a flag; before that, ingestd received the replay and skipped it by its flag."""
    stale = workload(5, bad_ratio=0)[0]  # sensors/dev-0/temperature with its own ts
    publish_retained(mosquitto, stale.topic, stale.payload)
    ingestd = ingestd_factory(
        mosquitto, influxdb1.influx_settings(), mqtt={"retained": policy, "protocol": protocol}
    )
    replayed = not (policy == "skip" and protocol == "5")
    if replayed:
        metrics = ingestd.wait_settled(1, timeout_s=30)
    else:
        time.sleep(2)  # what the broker would have sent by now
        metrics = ingestd.metrics()
    assert ingestd.stop() == 0
    assert metrics["ingestd_messages_received_total"] == int(replayed)
    skipped = [e for e in map(json.loads, ingestd.log.read_text().splitlines())
               if e["event"] == "retained_message_skipped"]  # fmt: skip
    if policy == "skip":
        assert metrics["ingestd_retained_skipped_total"] == int(replayed)
        assert [(e["topic_filter"], e["first"]) for e in skipped] == (
            [("sensors/#", True)] if replayed else []
        )
        assert influxdb1.points() == []
    else:
        assert metrics["ingestd_retained_skipped_total"] == 0 and skipped == []
        assert len(influxdb1.points()) == 1


def publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="retainer")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_full_buffer_never_turns_into_a_disconnect_loop(
    transport: str, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    """QoS 0 and no spool: reading pauses while the buffer is full. PINGREQ keeps going out and
    the PINGRESP waits unread; the connection must survive many keepalives regardless."""
    ingestd = ingestd_factory(
        mosquitto,
        influxdb1.influx_settings(),
        mqtt={"qos": 0, "keepalive_s": 5},
        batch={"max_lines": 100, "buffer_max_lines": 500},
        spool={"enabled": False},
    )
    influxdb1.stop()
    publish(workload(5000, bad_ratio=0), "127.0.0.1", mosquitto.port, qos=0)
    time.sleep(20)  # four keepalives with reading paused
    during = ingestd.metrics()
    assert during["ingestd_mqtt_reading_paused"] == 1
    assert during["ingestd_mqtt_connected"] == 1
    assert "mqtt_disconnected" not in ingestd.log.read_text()
    influxdb1.start()
    wait_until(lambda: ingestd.metrics()["ingestd_mqtt_reading_paused"] == 0, 60, "reading resumed")
    assert ingestd.stop() == 0
    assert "mqtt_disconnected" not in ingestd.log.read_text()
