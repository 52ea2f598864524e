"""The native MQTT transport's parser: packets split anywhere across reads, long payloads,
MQTT 5 properties, acks on receipt or left to the caller, QoS 2's PUBREL answered."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqtt.native import NativeMqttClient
from ingestd.mqtt.packets import MqttProtocolError, connect_packet, subscription_groups, varint


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
    settings = MqttSettings(protocol=protocol)
    c = NativeMqttClient(settings, lambda *args: got.append(args), manual_ack, got.append)
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
    # level 5, no login, session expiry property (0x11) of one day, the Maximum Packet Size
    # (0x27) ingestd takes, so the broker never sends a larger one, and the Receive Maximum
    # (0x21): the broker's in-flight window is max_inflight, whatever its own default
    assert packet[2:12] == b"\x00\x04MQTT\x05\x00\x00\x1e"
    assert packet[12:26] == b"\x0d\x11\x00\x01\x51\x80\x27\x00\x02\x10\x00\x21\x00\x14"
    # the session expiry is configurable, and a clean session sends none
    hour = v5.model_copy(update={"session_expiry_s": 3600})
    assert connect_packet(hour, None)[12:18] == b"\x0d\x11\x00\x00\x0e\x10"
    clean = v5.model_copy(update={"clean_session": True, "max_inflight": 100})
    assert connect_packet(clean, None)[12:21] == b"\x08\x27\x00\x02\x10\x00\x21\x00\x64"


class ClosingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def connack(code: int = 0, properties: bytes = b"", v5: bool = True) -> bytes:
    body = b"\x00" + bytes([code]) + ((varint(len(properties)) + properties) if v5 else b"")
    return body


async def test_connack_server_keep_alive_and_maximum_packet_size_are_used() -> None:
    c, _ = await client("5")
    props = b"\x13\x00\x0a" + b"\x27\x00\x00\x01\x00" + b"\x26\x00\x01k\x00\x01v"  # + user prop
    c._read_connack(connack(0, props))
    assert (c.keepalive_s, c.max_packet_bytes) == (10, 256)


@pytest.mark.parametrize(
    ("protocol", "code", "words"),
    [("3.1.1", 5, "not authorized (0x05)"), ("5", 0x87, "not authorized (0x87)"),
     ("5", 0x86, "bad user name or password (0x86)"), ("3.1.1", 2, "client identifier rejected")],
)  # fmt: skip
async def test_a_refused_connection_names_the_reason_in_words(
    protocol: str, code: int, words: str
) -> None:
    c, _ = await client(protocol)
    with pytest.raises(MqttConnectionError, match=re.escape(words)):
        c._read_connack(connack(code, v5=protocol == "5"))


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x00\x05\x13\x00"])
async def test_a_truncated_connack_is_a_protocol_error_not_an_index_error(body: bytes) -> None:
    c, _ = await client("5")
    with pytest.raises(MqttProtocolError):
        c._read_connack(body)


async def test_a_server_disconnect_reason_code_is_kept_in_words() -> None:
    c, _ = await client("5")
    c.transport = ClosingTransport()
    c.data_received(b"\xe0\x01\x8b")  # DISCONNECT, server shutting down
    c.connection_lost(None)
    with pytest.raises(
        MqttConnectionError, match=r"disconnected us: server shutting down \(0x8b\)"
    ):
        c.disconnected.result()


async def test_our_own_hang_up_is_not_reported_as_an_error() -> None:
    c, _ = await client()
    c.transport = ClosingTransport()
    await c.__aexit__(None, None, None)
    c.connection_lost(None)
    assert c.disconnected.result() is None  # nothing for the loop to log as never retrieved


def test_subscriptions_are_split_to_fit_the_brokers_maximum_packet_size() -> None:
    topics = [(f"sensors/{'x' * 90}/{i}", 1) for i in range(4)]  # 97 bytes each on the wire
    groups = subscription_groups(topics, v5=True, max_packet_bytes=256)
    assert [len(g) for g in groups] == [2, 2]
    assert [t for g in groups for t in g] == topics
    assert subscription_groups(topics, v5=True, max_packet_bytes=None) == [topics]
    with pytest.raises(MqttConnectionError, match="does not fit"):
        subscription_groups([("a" * 300, 1)], v5=True, max_packet_bytes=256)


async def test_v5_subscribes_with_retain_handling_2_when_retained_are_skipped() -> None:
    c, _ = await client("5")
    task = asyncio.ensure_future(c.subscribe([("sensors/#", 1)]))
    await asyncio.sleep(0)
    sent = c.transport.written
    assert sent[-1] == 0x21  # QoS 1 | retain handling 2 << 4
    c.data_received(b"\x90\x04" + sent[2:4] + b"\x00\x87")  # SUBACK: not authorized
    assert await task == [0x87]


async def test_an_oversized_notification_is_not_sent() -> None:
    c, _ = await client("5")
    c.max_packet_bytes = 64
    assert c.publish_nowait("deadletters", b"x" * 10)
    assert not c.publish_nowait("deadletters", b"x" * 100)
