"""The native MQTT transport's parser: packets split anywhere across reads, long payloads,
MQTT 5 properties, acks on receipt or left to the caller, QoS 2's PUBREL answered."""

from __future__ import annotations

from typing import Any

import pytest

from ingestd.config import MqttSettings
from ingestd.mqttwire import NativeMqttClient, connect_packet, varint


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def publish(topic: bytes, payload: bytes, qos: int, packet_id: int = 0, v5: bool = False) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    if v5:
        props = b"\x01\x01" + b"\x23\x00\x07"  # payload format indicator, topic alias
        body += varint(len(props)) + props
    return bytes([0x30 | qos << 1]) + varint(len(body + payload)) + body + payload


async def client(protocol: str = "3.1.1", manual_ack: bool = False) -> tuple[Any, list[Any]]:
    got: list[Any] = []
    settings = MqttSettings(protocol=protocol)  # type: ignore[arg-type]
    c = NativeMqttClient(settings, lambda *args: got.append(args), manual_ack)
    c.connection_made(FakeTransport())  # type: ignore[arg-type]
    return c, got


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_packets_split_at_every_byte_are_parsed_whole(protocol: str) -> None:
    c, got = await client(protocol)
    v5 = protocol == "5"
    stream = (
        publish(b"sensors/a/t", b'{"v": 1}', 0, v5=v5)
        + publish(b"sensors/b/t", b"x" * 300, 1, 7, v5=v5)  # 2-byte remaining length
        + publish(b"s/\xff", b"2", 2, 9, v5=v5)  # a topic that is not UTF-8 is still delivered
        + b"\xd0\x00"  # PINGRESP
    )
    for i in range(len(stream)):
        c.data_received(stream[i : i + 1])
    assert got == [
        (b"sensors/a/t", b'{"v": 1}', 0, False, 0),
        (b"sensors/b/t", b"x" * 300, 1, False, 7),
        (b"s/\xff", b"2", 2, False, 9),
    ]
    # on receipt: PUBACK for QoS 1, PUBREC for QoS 2
    assert c.transport.written == b"\x40\x02\x00\x07" + b"\x50\x02\x00\x09"


async def test_manual_acks_wait_for_the_caller_and_pubrel_gets_pubcomp() -> None:
    c, got = await client(manual_ack=True)
    c.data_received(publish(b"t", b"1", 1, 5) + publish(b"t", b"2", 2, 6) + b"\x31\x04\x00\x01tx")
    assert [g[4] for g in got] == [5, 6, 0] and got[2][3] is True  # retained, QoS 0
    assert c.transport.written == b""
    c.ack_many([(5, 1), (6, 2)])
    c.data_received(b"\x62\x02\x00\x06")  # PUBREL
    assert c.transport.written == b"\x40\x02\x00\x05\x50\x02\x00\x06\x70\x02\x00\x06"


async def test_pausing_stops_the_transport_reading() -> None:
    c, _ = await client()
    c.pause_reading()
    assert not c.transport.reading and c.paused
    c.resume_reading()
    assert c.transport.reading and not c.paused


def test_connect_packets_for_both_protocols() -> None:
    s = MqttSettings(client_id="ing", username="u", clean_session=False, keepalive_s=30)
    assert connect_packet(s, "p") == (
        b"\x10\x15\x00\x04MQTT\x04\xc0\x00\x1e\x00\x03ing\x00\x01u\x00\x01p"
    )
    v5 = MqttSettings(client_id="ing", protocol="5", clean_session=False, keepalive_s=30)
    packet = connect_packet(v5, None)
    # level 5, no login, session expiry property (0x11) of one day
    assert packet[2:12] == b"\x00\x04MQTT\x05\x00\x00\x1e"
    assert packet[12:18] == b"\x05\x11\x00\x01\x51\x80"
