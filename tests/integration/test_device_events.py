"""Device events against a real Mosquitto (issue 14 item 3): a device's first sighting publishes
ingestd/events/device_new once, with its route, tags and first fields, and a restart does not
announce it again; the events are published at QoS 1 through the outbox, which waits out a
broker that is away."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until
from ingestd.devtools.workload import ROUTES, TOPICS, Expected, publish

from .listener import Listener

pytestmark = pytest.mark.integration


@pytest.fixture
def listener(mosquitto: Mosquitto) -> Iterator[Listener]:
    events = Listener(mosquitto.port, ["ingestd/events/#"])
    yield events
    events.close()


def reading(device: str, value: float) -> Expected:
    return Expected(f"sensors/{device}/temperature", f'{{"v": {value}}}'.encode(), "value")


def test_each_device_is_announced_once_across_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1, listener: Listener
) -> None:
    daemon = Ingestd(
        tmp_path, mosquitto, influxdb1.influx_settings(), TOPICS, ROUTES, events={"enabled": True}
    )
    daemon.start()
    try:
        first = [reading(d, v) for v in (20.0, 21.0) for d in ("dev-a", "dev-b", "dev-c")]
        publish(first, "127.0.0.1", mosquitto.port)
        wait_until(lambda: len(listener.got) >= 3, 20, "3 device_new events")
        assert daemon.stop() == 0  # saves the announced devices
        daemon.start()
        publish([reading("dev-a", 22.0), reading("dev-d", 19.0)], "127.0.0.1", mosquitto.port)
        wait_until(lambda: len(listener.got) >= 4, 20, "a fourth event")
        daemon.wait_settled(2, timeout_s=20)
        time.sleep(1.0)  # anything else would have arrived by now
        metrics = daemon.metrics()
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
    assert sorted(e["device"] for e in listener.got) == ["dev-a", "dev-b", "dev-c", "dev-d"]
    event = next(e for e in listener.got if e["device"] == "dev-a")
    assert event["topic"] == "ingestd/events/device_new" and event["event"] == "device_new"
    assert event["route"] == "sensors/{device}/{measurement}"
    assert event["tags"] == {"device": "dev-a"} and event["fields"] == {"value": 20.0}
    assert event["measurement"] == "temperature"
    assert metrics["ingestd_events_published_total"] == 1  # this run: dev-d only
    assert metrics["ingestd_events_pending"] == 0


def test_events_wait_out_a_broker_that_refuses_them_and_never_block_ingest(
    tmp_path: Path, influxdb1: InfluxDB1, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker whose ACL refuses ingestd's events (MQTT 5 answers a PUBACK with 0x87): the
    readings are stored all the same, and the event is counted as failing and retried."""
    acl = tmp_path / "acl"
    acl.write_text("user ingestd\ntopic read sensors/#\n")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "ingestd", "pw"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "pub", "pw"], check=True)
    acl.write_text(acl.read_text() + "user pub\ntopic write sensors/#\n")
    broker = Mosquitto(
        tmp_path,
        listener_options=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n",
    )
    broker.start()
    try:
        daemon = Ingestd(
            tmp_path, broker, influxdb1.influx_settings(), ["sensors/#"], ROUTES[:1],
            mqtt={"protocol": "5", "username": "ingestd", "password_env": "INGESTD_TEST_PW"},
            events={"enabled": True, "retry_min_s": 0.2, "retry_max_s": 0.5},
        )  # fmt: skip
        monkeypatch.setenv("INGESTD_TEST_PW", "pw")
        daemon.start()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="pub")
        client.username_pw_set("pub", "pw")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for i in range(5):
            client.publish("sensors/dev-x/t", f'{{"v": {i}}}'.encode(), qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        wait_until(
            lambda: daemon.metrics().get("ingestd_events_publish_failures_total", 0) >= 2,
            20,
            "the refused event retried",
        )
        metrics = daemon.wait_settled(5, timeout_s=20)
        assert metrics["ingestd_points_written_total"] == 5  # ingest went on
        assert (
            metrics["ingestd_events_pending"] == 1
            and metrics["ingestd_events_published_total"] == 0
        )
        assert daemon.stop() == 0
    finally:
        broker.stop()
