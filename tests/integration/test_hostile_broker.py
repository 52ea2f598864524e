"""A broker with a bug (or a man in the middle) on loopback, against ingestd as users run it:
a malformed packet costs one reconnect and one count, never the ingest task (issue 12 item 1;
before, ingestd acked a QoS 3 PUBLISH and buffered whatever length the broker declared)."""

from __future__ import annotations

from typing import Any

import pytest

from ingestd.devtools.servers import InfluxDB1, wait_until
from ingestd.mqtt.packets import varint

from .scripted_broker import ScriptedBroker

pytestmark = pytest.mark.integration

READINGS = [(f"sensors/dev-{i}/t", b'{"v": 1.5, "ts": 1700000000}') for i in range(3)]
HOSTILE = {
    "qos 3": b"\x36\x06\x00\x01a\x00\x01x",
    "5-byte remaining length": b"\x30\xff\xff\xff\xff\x7f",
    "a declared 200 MB SUBACK": b"\x90" + varint(200_000_000) + b"x" * 1000,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_malformed_packet_is_a_counted_reconnect_not_a_dead_task(
    name: str, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    broker = ScriptedBroker(READINGS, hostile=HOSTILE[name])
    broker.start()
    try:
        ingestd = ingestd_factory(broker, influxdb1.influx_settings())
        wait_until(lambda: broker.received.connects >= 2, 30, "a reconnect")
        wait_until(
            lambda: ingestd.metrics().get("ingestd_mqtt_protocol_errors_total") == 1, 10, "counted"
        )
        wait_until(lambda: ingestd.metrics().get("ingestd_mqtt_connected") == 1, 30, "up again")
        assert ingestd.proc.poll() is None  # still running
        assert ingestd.metrics()["ingestd_points_written_total"] == 3
        assert ingestd.stop() == 0
    finally:
        broker.stop()


def test_a_huge_publish_that_never_arrives_ends_at_the_keepalive_not_in_memory(
    influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    """A PUBLISH over mqtt.max_packet_bytes is read past as it arrives (a dead letter once
    whole). One declared at 200 MB of which 1 KB comes holds nothing in memory, and does not
    count as the broker being alive: the keepalive ends the connection (before reading past
    such messages, this was a protocol error; see test_oversized_message.py)."""
    broker = ScriptedBroker(READINGS, hostile=b"\x30" + varint(200_000_000) + b"x" * 1000)
    broker.start()
    try:
        ingestd = ingestd_factory(broker, influxdb1.influx_settings(), mqtt={"keepalive_s": 5})
        wait_until(lambda: broker.received.connects >= 2, 30, "a reconnect after 1.5 keepalives")
        wait_until(lambda: ingestd.metrics().get("ingestd_mqtt_connected") == 1, 30, "up again")
        metrics = ingestd.metrics()
        assert metrics.get("ingestd_mqtt_protocol_errors_total", 0) == 0
        assert metrics["ingestd_points_written_total"] == 3
        assert ingestd.peak_rss_mb() < 150
        assert ingestd.stop() == 0
    finally:
        broker.stop()
