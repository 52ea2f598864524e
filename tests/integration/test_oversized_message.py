"""One message larger than mqtt.max_packet_bytes, from a broker that does not enforce a packet
size (Mosquitto without `max_packet_size`, MQTT 3.1.1 where the client cannot announce its own
limit): before, the native client hung up on it as a protocol error, the broker redelivered it
on the next connection, and nothing behind it was ever read again (issue 12). Now it is read
past without being buffered, dead-lettered as its first bytes with its size and SHA-256, and
acked, and what follows it is stored."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ingestd.deadletter import read_dead_letters
from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until
from ingestd.devtools.workload import Expected, publish

pytestmark = pytest.mark.integration

LIMIT = 32_768


@pytest.mark.parametrize("transport", ["native", "paho"])
def test_an_oversized_message_is_dead_lettered_and_acked_not_redelivered_forever(
    transport: str, mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    big = b'{"v": 1.5, "pad": "' + b"x" * (3 * LIMIT) + b'"}'
    before = Expected("sensors/dev-a/t", b'{"v": 1.0, "ts": 1700000000}', "value")
    oversized = Expected("sensors/dev-b/t", big, "value")
    after = [
        Expected(f"sensors/dev-{i}/t", b'{"v": 2.0, "ts": 1700000001}', "value") for i in range(3)
    ]
    ingestd = ingestd_factory(
        mosquitto,
        influxdb1.influx_settings(),
        mqtt={"max_packet_bytes": LIMIT},
        limits={"max_payload_bytes": LIMIT - 1024},
    )
    publish([before, oversized, *after], "127.0.0.1", mosquitto.port, qos=1)
    wait_until(lambda: ingestd.metrics().get("ingestd_points_written_total") == 4, 30, "4 stored")
    wait_until(
        lambda: ingestd.deadletters.exists() and ingestd.deadletters.stat().st_size, 10, "a letter"
    )
    metrics = ingestd.metrics()
    assert metrics.get("ingestd_mqtt_protocol_errors_total", 0) == 0
    assert metrics['ingestd_messages_dropped_total{reason="payload_too_large"}'] == 1
    assert ingestd.stop() == 0
    [letter] = read_dead_letters(ingestd.deadletters)
    assert letter.reason == "payload_too_large"
    assert letter.topic == "sensors/dev-b/t"
    assert letter.payload_bytes == len(big)
    assert letter.payload_sha256 == hashlib.sha256(big).hexdigest()
    assert big.startswith(letter.payload) and 0 < len(letter.payload) <= 4096
    assert influxdb1.count() == 4
    # acked: the same session resumed gets nothing redelivered before the next message
    ingestd.start()
    publish([Expected("sensors/dev-c/t", b'{"v": 3.0}', "value")], "127.0.0.1", mosquitto.port)
    wait_until(lambda: ingestd.metrics().get("ingestd_points_written_total") == 1, 30, "stored")
    assert ingestd.metrics()["ingestd_messages_received_total"] == 1
    assert ingestd.stop() == 0
