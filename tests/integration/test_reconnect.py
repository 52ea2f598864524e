"""Reconnects never stall delivery: what the broker sends with the CONNACK is acked on the
connection it came on, and a reconnect loop never stores a message twice."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingestd.localservers import InfluxDB1, Mosquitto, wait_until
from ingestd.runner import Ingestd
from ingestd.testing import BASE_S, ROUTES, TOPICS

from .conftest import TRANSPORTS
from .scripted_broker import ScriptedBroker

pytestmark = pytest.mark.integration


def readings(count: int) -> list[tuple[str, bytes]]:
    return [
        (f"sensors/dev-{i}/temperature", orjson.dumps({"v": i, "ts": BASE_S + i}))
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("transport", "qos"), [("native", 1), ("native", 2), ("paho", 1)]
)  # paho cannot hold QoS 2 until storage: refused at config time
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_window_that_arrives_with_the_connack_is_stored_and_acked(
    transport: str, qos: int, protocol: str, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    """A persistent session's queue comes in the same read as the CONNACK. Before the fix the
    messages were tagged with the previous connection: all 10 stored, 0 acked, and the broker
    (whose window they filled) sent nothing more."""
    broker = ScriptedBroker(readings(10), qos=qos)
    broker.start()
    try:
        ingestd = ingestd_factory(
            broker,
            influxdb1.influx_settings(),
            mqtt={"qos": qos, "protocol": protocol, "transport": transport, "max_inflight": 10},
        )
        wait_until(
            lambda: ingestd.metrics().get("ingestd_points_written_total") == 10, 30, "10 stored"
        )
        acks = broker.received.puback if qos == 1 else broker.received.pubrec
        wait_until(lambda: len(acks) >= 10, 10, "10 acks")
        assert sorted(acks) == list(range(1, 11))
        if qos == 2:  # the broker's PUBREL, answered
            wait_until(lambda: len(broker.received.pubcomp) >= 10, 10, "10 PUBCOMPs")
            assert sorted(broker.received.pubcomp) == list(range(1, 11))
        assert ingestd.stop() == 0
    finally:
        broker.stop()
    assert len(influxdb1.points()) == 10


def test_the_server_keep_alive_overrides_ours_on_mqtt_5(
    tmp_path: Path, influxdb1: InfluxDB1
) -> None:
    """Mosquitto's max_keepalive 10 below our keepalive_s 60: MQTT 5 says the client MUST use
    the Server Keep Alive [MQTT-3.2.2-21]. Before the fix the native transport sent no PINGREQ
    and was disconnected every ~15-18 s. Both transports run side by side for 25 s."""
    broker = Mosquitto(tmp_path, listener_options="allow_anonymous true\nmax_keepalive 10\n")
    broker.start()
    daemons = []
    try:
        for transport in TRANSPORTS:
            workdir = tmp_path / transport
            workdir.mkdir()
            mqtt = {"protocol": "5", "keepalive_s": 60, "transport": transport}
            daemon = Ingestd(
                workdir, broker, influxdb1.influx_settings(), TOPICS, ROUTES, mqtt=mqtt
            )
            daemon.start()
            daemons.append(daemon)
        time.sleep(25)
        for daemon in daemons:
            log = daemon.log.read_text()
            assert daemon.ready(), log[-2000:]
            assert "mqtt_disconnected" not in log, log[-2000:]
            connected = [json.loads(line) for line in log.splitlines() if "mqtt_connected" in line]
            assert [e["keepalive_s"] for e in connected] == [10]
            assert daemon.stop() == 0
    finally:
        for daemon in daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()
        broker.stop()
