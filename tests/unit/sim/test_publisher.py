"""MQTT packet encoding of the simulator's publisher, checked against the 3.1.1 wire format."""

from __future__ import annotations

import pytest

from ingestd.mqtt.packets import varint
from ingestd.sim.publisher import TopicCache, connect_packet


def decode_varint(data: bytes) -> tuple[int, int]:
    value, shift, i = 0, 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            return value, i


@pytest.mark.parametrize(
    ("n", "size"), [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_152, 4)]
)
def test_remaining_length_round_trips(n: int, size: int) -> None:
    encoded = varint(n)
    assert len(encoded) == size and decode_varint(encoded) == (n, size)


@pytest.mark.parametrize("payload_size", [0, 100, 130, 20_000])
def test_publish_packets_frame_topic_id_and_payload(payload_size: int) -> None:
    cache, topic, payload = TopicCache(), b"sensors/d/t", bytes(range(256)) * 80
    payload = payload[:payload_size]
    qos0 = cache.publish(topic, payload)
    length, used = decode_varint(qos0[1:])
    assert qos0[0] == 0x30 and len(qos0) == 1 + used + length
    assert qos0[1 + used :] == b"\x00\x0b" + topic + payload
    packet = cache.publish_head(topic, payload) + (513).to_bytes(2, "big") + payload
    length, used = decode_varint(packet[1:])
    assert packet[0] == 0x32 and len(packet) == 1 + used + length
    assert packet[1 + used :] == b"\x00\x0b" + topic + b"\x02\x01" + payload


def test_connect_carries_the_login() -> None:
    packet = connect_packet("sim", "user", "pw", 60)
    length, used = decode_varint(packet[1:])
    body = packet[1 + used :]
    assert packet[0] == 0x10 and len(body) == length
    assert body[:10] == b"\x00\x04MQTT\x04\xc2\x00\x3c"
    assert body[10:] == b"\x00\x03sim\x00\x04user\x00\x02pw"
