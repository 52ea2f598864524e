"""Reconnects never stall delivery: what the broker sends with the CONNACK is acked on the
connection it came on, and a reconnect loop never stores a message twice."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until
from ingestd.devtools.workload import BASE_S, ROUTES, TOPICS, publish, workload

from .brokers import Aedes
from .conftest import TRANSPORTS
from .scripted_broker import ScriptedBroker

pytestmark = pytest.mark.integration


@pytest.fixture
def spawned() -> Iterator[list[Ingestd]]:
    """Daemons a test starts by hand: killed at teardown if still running, pass or fail."""
    daemons: list[Ingestd] = []
    yield daemons
    for daemon in daemons:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


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
    tmp_path: Path, influxdb1: InfluxDB1, spawned: list[Ingestd]
) -> None:
    """Mosquitto's max_keepalive 10 below our keepalive_s 60: MQTT 5 says the client MUST use
    the Server Keep Alive [MQTT-3.2.2-21]. Before the fix the native transport sent no PINGREQ
    and was disconnected every ~15-18 s. Both transports run side by side for 25 s."""
    broker = Mosquitto(tmp_path, listener_options="allow_anonymous true\nmax_keepalive 10\n")
    broker.start()
    try:
        for transport in TRANSPORTS:
            workdir = tmp_path / transport
            workdir.mkdir()
            mqtt = {"protocol": "5", "keepalive_s": 60, "transport": transport}
            daemon = Ingestd(
                workdir, broker, influxdb1.influx_settings(), TOPICS, ROUTES, mqtt=mqtt
            )
            spawned.append(daemon)
            daemon.start()
        time.sleep(25)
        for daemon in spawned:
            log = daemon.log.read_text()
            assert daemon.ready(), log[-2000:]
            assert "mqtt_disconnected" not in log, log[-2000:]
            connected = [json.loads(line) for line in log.splitlines() if "mqtt_connected" in line]
            assert [e["keepalive_s"] for e in connected] == [10]
            assert daemon.stop() == 0
    finally:
        broker.stop()


def run_until_exit(daemon: Ingestd, timeout_s: float = 30) -> int:
    """Start a daemon that is expected to stop by itself; its exit code."""
    with contextlib.suppress(RuntimeError):  # it exits before (or instead of) being ready
        daemon.start(ready_timeout_s=timeout_s)
    assert daemon.proc is not None
    return daemon.proc.wait(timeout=timeout_s)


def events(daemon: Ingestd, name: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, daemon.log.read_text().splitlines()) if e["event"] == name]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_refused_subscription_is_one_clear_error_and_never_a_duplicate(
    transport: str, tmp_path: Path, influxdb1: InfluxDB1, spawned: list[Ingestd]
) -> None:
    """aedes refuses one of two filters (SUBACK 0x80), as an ACL would. Before the fix the
    native transport reconnected over and over, storing the granted filter's messages again on
    every short connection; paho ignored the refusal."""
    broker = Aedes(tmp_path, denied=["iot/telemetry/+"])
    broker.start()
    topics = ["sensors/#", "iot/telemetry/+"]
    mqtt = {"transport": transport, "client_id": f"refused-{transport}"}

    def daemon(name: str, on_refused: str) -> Ingestd:
        workdir = tmp_path / name
        workdir.mkdir()
        settings = {**mqtt, "on_subscription_refused": on_refused}
        routes = ROUTES[:2]  # the routes of those two filters
        spawned.append(
            Ingestd(workdir, broker, influxdb1.influx_settings(), topics, routes, mqtt=settings)
        )
        return spawned[-1]

    sensors = [m for m in workload(40, bad_ratio=0) if m.topic.startswith("sensors/")][:10]
    assert len(sensors) == 10
    try:
        # "continue": one error naming the filter and the reason, then the granted filter works
        first = daemon("continue", "continue")
        first.start()
        publish(sensors[:5], "127.0.0.1", broker.port)
        first.wait_settled(5, timeout_s=30)
        assert first.stop() == 0
        refusals = events(first, "mqtt_subscription_refused")
        assert [(e["topic_filter"], e["reason"]) for e in refusals] == [
            ("iot/telemetry/+", "failure (0x80)")
        ]
        assert len(events(first, "mqtt_connected")) == 1  # no reconnect loop
        # "exit" (the default), with 5 messages queued in the session: what it read before the
        # SUBACK is stored and acked, then it exits 1; the rest stays with the broker
        publish(sensors[5:], "127.0.0.1", broker.port)
        second = daemon("exit", "exit")
        assert run_until_exit(second) == 1
        assert len(events(second, "mqtt_subscription_refused")) == 1
        assert len(events(second, "ingestd_cannot_continue")) == 1
        [summary] = events(second, "ingestd_stopped")
        assert summary["received"] == summary["written"] and summary["left_with_broker"] == 0
        # the next run gets exactly what the exiting one did not read: nothing twice
        third = daemon("again", "continue")
        third.start()
        rest = 5 - summary["received"]
        if rest:
            third.wait_settled(rest, timeout_s=30)
        time.sleep(1)
        assert third.metrics()["ingestd_messages_received_total"] == rest
        assert third.stop() == 0
    finally:
        broker.stop()
    assert len(influxdb1.points()) == 10


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_v5_refusal_names_its_reason_code(
    transport: str, tmp_path: Path, influxdb1: InfluxDB1, spawned: list[Ingestd]
) -> None:
    broker = ScriptedBroker([], suback_codes=[0x00, 0x87])  # the second: not authorized
    broker.start()
    try:
        mqtt = {"transport": transport, "protocol": "5", "qos": 0}
        daemon = Ingestd(
            tmp_path,
            broker,
            influxdb1.influx_settings(),
            ["sensors/#", "x/#"],
            ROUTES[:1],
            mqtt=mqtt,
        )
        assert run_until_exit(daemon) == 1
    finally:
        broker.stop()
    refusals = events(daemon, "mqtt_subscription_refused")
    assert [(e["topic_filter"], e["reason"]) for e in refusals] == [
        ("x/#", "not authorized (0x87)")
    ]
    assert broker.received.connects == 1


def unacked_on_last_connection(broker_log: str, client_id: str) -> set[int]:
    """From Mosquitto's own log (log_type all): the packet ids it sent to `client_id` on its
    latest connection that the client never acknowledged (PUBACK, or PUBREC for QoS 2)."""
    pending: set[int] = set()
    sent = re.compile(rf"Sending PUBLISH to {re.escape(client_id)} \(d\d, q[12], r\d, m(\d+),")
    acked = re.compile(rf"Received PUB(?:ACK|REC) from {re.escape(client_id)} \(Mid: (\d+)")
    for line in broker_log.splitlines():
        if "New client connected from" in line and f" as {client_id} " in line:
            pending = set()  # a new connection: what was in flight is resent on it
        elif m := sent.search(line):
            pending.add(int(m.group(1)))
        elif m := acked.search(line):
            pending.discard(int(m.group(1)))
    return pending


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_sigkill_and_restart_rounds_with_a_window_of_10_store_everything_and_ack_it(
    transport: str, protocol: str, tmp_path: Path, influxdb1: InfluxDB1, spawned: list[Ingestd]
) -> None:
    """A persistent session with the in-flight window at 10 on both sides, ingestd killed with
    SIGKILL mid-intake and restarted four times. Each restart resumes the session: the queue and
    the unacked window come with the CONNACK. Before the fix, those were stored and never acked,
    so a round ended in a full window and a stall (the issue's 2526/6000)."""
    client_id = f"rounds-{transport}-{protocol}"
    broker = Mosquitto(
        tmp_path,
        listener_options="allow_anonymous true\nmax_inflight_messages 10\nlog_type all\n",
    )
    broker.start()
    mqtt = {
        "transport": transport,
        "protocol": protocol,
        "client_id": client_id,
        "max_inflight": 10,
    }
    messages = [m for m in workload(4000, bad_ratio=0) if m.topic.startswith("sensors/")]
    rounds = [messages[i::4] for i in range(4)]
    daemon = Ingestd(tmp_path, broker, influxdb1.influx_settings(), TOPICS, ROUTES, mqtt=mqtt)
    spawned.append(daemon)
    daemon.start()
    stored = 0
    try:
        for chunk in rounds:
            publish(chunk, "127.0.0.1", broker.port)  # queued by the broker, 10 at a time to us
            wait_until(
                lambda: daemon.metrics()["ingestd_messages_received_total"] >= 50, 30, "intake"
            )
            daemon.kill()  # mid-intake: a window in flight, the rest queued
            daemon.start()  # the same session: queue and window arrive with the CONNACK
            stored += len(chunk)
            wait_until(lambda n=stored: influxdb1.count() == n, 60, f"{stored} stored")
            wait_until(
                lambda: not unacked_on_last_connection(broker.log.read_text(), client_id),
                10,
                "every PUBLISH of this connection acked",
            )
        assert daemon.stop() == 0
    finally:
        broker.stop()
    assert influxdb1.count() == len(messages)
