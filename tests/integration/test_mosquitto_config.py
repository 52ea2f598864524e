"""The shipped mosquitto.conf and acl, loaded by a real mosquitto (ports and paths rewritten):
no anonymous access, a device may publish only under its own sensors/<device>/ prefix, and
ingestd receives what the ACL lets through."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.localservers import Process, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS = {"ingestd": "ingestd-pw", "n8n": "n8n-pw", "device-1": "d1-pw", "device-2": "d2-pw"}


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[tuple[int, int]]:
    mqtt_port, ws_port = free_port(), free_port()
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    for user, password in USERS.items():
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=30
        )
    shutil.copy(REPO / "mosquitto" / "acl", tmp_path / "acl")
    conf = (REPO / "mosquitto" / "mosquitto.conf").read_text()
    conf = re.sub(r"^listener 1883$", f"listener {mqtt_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 9001$", f"listener {ws_port} 127.0.0.1", conf, flags=re.M)
    conf = conf.replace("/mosquitto/config/", f"{tmp_path}/").replace(
        "/mosquitto/data/", f"{tmp_path}/"
    )
    (tmp_path / "shipped.conf").write_text(f"user root\n{conf}")
    broker = Process(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp_path / "shipped.conf")],
        tmp_path,
        mqtt_port,
        "mosquitto-shipped",
    )
    broker.start()
    yield mqtt_port, ws_port
    broker.stop()


def client(port: int, user: str | None, transport: str = "tcp") -> tuple[paho.Client, list[int]]:
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-{user}-{time.monotonic_ns()}",
        transport=transport,
    )
    if user:
        c.username_pw_set(user, USERS[user])
    codes: list[int] = []
    c.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.02)
    return c, codes


def test_shipped_config_enforces_the_acl(shipped_broker: tuple[int, int]) -> None:
    port, ws_port = shipped_broker
    received: list[str] = []
    got = threading.Event()
    ingestd, codes = client(port, "ingestd")
    assert codes == [0]
    ingestd.on_message = lambda _c, _u, m: (received.append(m.topic), got.set())
    ingestd.subscribe("sensors/#", qos=1)
    time.sleep(0.3)

    device, _ = client(port, "device-1")
    device.publish("sensors/device-2/temperature", b"1", qos=1).wait_for_publish(5)  # not its own
    device.publish("sensors/device-1/temperature", b"2", qos=1).wait_for_publish(5)
    assert got.wait(5)
    time.sleep(0.5)  # anything else would have arrived by now
    assert received == ["sensors/device-1/temperature"]

    stranger, anonymous = client(port, None)
    assert anonymous and anonymous[0] != 0  # refused: no anonymous access
    browser, over_websockets = client(ws_port, "device-2", transport="websockets")
    assert over_websockets == [0]
    for c in (ingestd, device, stranger, browser):
        c.disconnect()
        c.loop_stop()
