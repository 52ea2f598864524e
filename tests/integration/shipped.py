"""The repository's own mosquitto.conf and acl, started by a real mosquitto on free loopback
ports (listeners and paths rewritten), and an MQTT client that reports how its connect went."""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.servers import Process, free_port

REPO = Path(__file__).resolve().parents[2]


def load_setup_secrets() -> Any:
    """compose/setup_secrets.py as a module (it is a script, outside the package)."""
    spec = importlib.util.spec_from_file_location(
        "setup_secrets", REPO / "compose" / "setup_secrets.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_shipped_broker(workdir: Path, passwd: Path) -> tuple[Process, int, int]:
    """The shipped config with `passwd`; returns the broker and its MQTT and websocket ports."""
    mqtt_port, ws_port = free_port(), free_port()
    shutil.copy(REPO / "mosquitto" / "acl", workdir / "acl")
    if passwd != workdir / "passwd":
        shutil.copy(passwd, workdir / "passwd")
    conf = (REPO / "mosquitto" / "mosquitto.conf").read_text()
    conf = re.sub(r"^listener 1883$", f"listener {mqtt_port} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 9001$", f"listener {ws_port} 127.0.0.1", conf, flags=re.M)
    conf = conf.replace("/mosquitto/config/", f"{workdir}/").replace(
        "/mosquitto/data/", f"{workdir}/"
    )
    (workdir / "shipped.conf").write_text(f"user root\n{conf}")
    broker = Process(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(workdir / "shipped.conf")],
        workdir,
        mqtt_port,
        "mosquitto-shipped",
    )
    broker.start()
    return broker, mqtt_port, ws_port


def connect(
    port: int,
    user: str | None,
    password: str = "",
    transport: Literal["tcp", "websockets"] = "tcp",
) -> tuple[paho.Client, list[int]]:
    """A started client and the CONNACK reason codes it got (waits up to 5 s for one)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-{user}-{time.monotonic_ns()}",
        transport=transport,
    )
    if user:
        client.username_pw_set(user, password)
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: codes.append(reason.value)
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        time.sleep(0.02)
    return client, codes


def close(*clients: paho.Client) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()
