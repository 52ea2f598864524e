"""The shipped mosquitto.conf and acl, loaded by a real mosquitto (ports and paths rewritten):
no anonymous access, a device may publish only under its own sensors/<device>/ prefix, and
ingestd receives what the ACL lets through."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import paho.mqtt.client as paho
import pytest

from .shipped import close, connect, start_shipped_broker

pytestmark = pytest.mark.integration

USERS = {
    "ingestd": "ingestd-pw",
    "n8n": "n8n-pw",
    "simulator": "sim-pw",
    "device-1": "d1-pw",
    "device-2": "d2-pw",
}


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[tuple[int, int]]:
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    for user, password in USERS.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=30
        )
    broker, mqtt_port, ws_port = start_shipped_broker(tmp_path, passwd)
    yield mqtt_port, ws_port
    broker.stop()


def client(
    port: int, user: str | None, transport: Literal["tcp", "websockets"] = "tcp"
) -> tuple[paho.Client, list[int]]:
    return connect(port, user, USERS[user] if user else "", transport)


def test_shipped_config_enforces_the_acl(shipped_broker: tuple[int, int]) -> None:
    port, ws_port = shipped_broker
    received: list[str] = []
    got = threading.Event()
    ingestd, codes = client(port, "ingestd")
    assert codes == [0]

    def on_message(_client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        received.append(message.topic)
        got.set()

    ingestd.on_message = on_message
    ingestd.subscribe("sensors/#", qos=1)
    time.sleep(0.3)

    device, _ = client(port, "device-1")
    device.publish("sensors/device-2/temperature", b"1", qos=1).wait_for_publish(5)  # not its own
    # under its own name, but a level deeper: the route {site}/{system}/{device}/data would
    # store it as device-2 (issue 12; the ACL said sensors/%u/#)
    device.publish("sensors/device-1/device-2/data", b"{}", qos=1).wait_for_publish(5)
    device.publish("sensors/device-1/temperature", b"2", qos=1).wait_for_publish(5)
    assert got.wait(5)
    time.sleep(0.5)  # anything else would have arrived by now
    assert received == ["sensors/device-1/temperature"]

    stranger, anonymous = client(port, None)
    assert anonymous and anonymous[0] != 0  # refused: no anonymous access
    browser, over_websockets = client(ws_port, "device-2", transport="websockets")
    assert over_websockets == [0]
    close(ingestd, device, stranger, browser)


def test_the_demo_fleet_reaches_every_route_and_ingestd_reads_the_broker_counters(
    shipped_broker: tuple[int, int],
) -> None:
    port, _ = shipped_broker
    received: list[str] = []
    ingestd, _ = client(port, "ingestd")
    ingestd.on_message = lambda _c, _u, m: received.append(m.topic)
    for topic in ("sensors/#", "iot/#", "devices/#", "+/+/+/data", "$SYS/broker/uptime"):
        ingestd.subscribe(topic, qos=1)
    time.sleep(0.3)
    fleet, _ = client(port, "simulator")
    device, _ = client(port, "device-1")
    allowed = [
        "sensors/d-9/temperature",
        "iot/telemetry/d-9",
        "devices/d-9/co2",
        "home/ruuvi/d-9/data",
    ]
    for topic in allowed:
        fleet.publish(topic, b"1", qos=1).wait_for_publish(5)
    device.publish("iot/telemetry/device-1", b"1", qos=1).wait_for_publish(5)  # not a device's
    deadline = time.monotonic() + 15  # $SYS is published every sys_interval (10 s by default)
    while time.monotonic() < deadline and "$SYS/broker/uptime" not in received:
        time.sleep(0.2)
    time.sleep(0.3)
    assert sorted(t for t in received if not t.startswith("$SYS")) == sorted(allowed)
    assert "$SYS/broker/uptime" in received
    close(ingestd, fleet, device)
