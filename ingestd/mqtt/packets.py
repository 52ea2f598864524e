"""The MQTT packet codec, one for everything that speaks MQTT here: the native client reads and
writes with it, and the simulator's publisher encodes with it. Pure functions over bytes; every
reader checks its lengths and raises MqttProtocolError rather than IndexError.
"""

from __future__ import annotations

from collections.abc import Callable

from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, PINGRESP, DISCONNECT = 9, 13, 14

# topic, payload, qos, retain, packet id (0 at QoS 0)
OnPublish = Callable[[bytes, bytes, int, bool, int], None]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def string_field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def encode_packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(s: MqttSettings, password: str | None) -> bytes:
    v5 = s.protocol == "5"
    flags = 0x02 if s.clean_session else 0x00
    payload = string_field(s.client_id.encode())
    if s.username is not None:
        flags |= 0x80
        payload += string_field(s.username.encode())
        if password is not None:
            flags |= 0x40
            payload += string_field(password.encode())
    variable = b"\x00\x04MQTT" + bytes([5 if v5 else 4, flags]) + s.keepalive_s.to_bytes(2, "big")
    if v5:
        props = b"" if s.clean_session else b"\x11" + s.session_expiry_s.to_bytes(4, "big")
        props += b"\x27" + s.max_packet_bytes.to_bytes(4, "big")  # Maximum Packet Size
        # Receive Maximum: the broker sends at most this many unacked QoS 1/2 messages, the
        # window ingestd's acks after storage are sized for, whatever the broker's own default
        # (section 3.1.2.11.3). No Topic Alias Maximum: 0, the broker sends no aliases.
        props += b"\x21" + s.max_inflight.to_bytes(2, "big")
        variable += varint(len(props)) + props
    return encode_packet(0x10, variable + payload)


class MqttProtocolError(MqttConnectionError):
    """The broker sent a packet that breaks the MQTT specification."""


# MQTT 5 property identifiers (section 2.2.2.2) by the size of their value
_PROPERTY_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_PROPERTY_TWO = {0x13, 0x21, 0x22, 0x23}
_PROPERTY_FOUR = {0x02, 0x11, 0x18, 0x27}
_PROPERTY_STRING = {0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F}  # and binary data
SERVER_KEEP_ALIVE, MAXIMUM_PACKET_SIZE, REASON_STRING, USER_PROPERTY = 0x13, 0x27, 0x1F, 0x26


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    """A variable byte integer at `i` (at most 4 bytes) and where it ends."""
    value = 0
    for n in range(4):
        if i + n >= len(buf):
            raise MqttProtocolError("truncated variable byte integer")
        byte = buf[i + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            return value, i + n + 1
    raise MqttProtocolError("variable byte integer longer than 4 bytes")


def read_properties(buf: bytes, i: int) -> tuple[dict[int, int | bytes], int]:
    """MQTT 5 properties at `i`: {identifier: value} (user properties dropped) and where they end."""
    length, i = read_varint(buf, i)
    end = i + length
    if end > len(buf):
        raise MqttProtocolError("properties run past the packet")
    found: dict[int, int | bytes] = {}
    while i < end:
        ident, i = read_varint(buf, i)
        if ident in _PROPERTY_BYTE or ident in _PROPERTY_TWO or ident in _PROPERTY_FOUR:
            size = 1 if ident in _PROPERTY_BYTE else 2 if ident in _PROPERTY_TWO else 4
            if i + size > end:
                raise MqttProtocolError(f"property 0x{ident:02x} runs past its packet")
            found[ident] = int.from_bytes(buf[i : i + size], "big")
            i += size
        elif ident == 0x0B:  # subscription identifier
            found[ident], i = read_varint(buf, i)
        elif ident in _PROPERTY_STRING or ident == USER_PROPERTY:
            for _ in range(2 if ident == USER_PROPERTY else 1):
                if i + 2 > end or i + 2 + int.from_bytes(buf[i : i + 2], "big") > end:
                    raise MqttProtocolError(f"property 0x{ident:02x} runs past its packet")
                size = int.from_bytes(buf[i : i + 2], "big")
                if ident != USER_PROPERTY:
                    found[ident] = bytes(buf[i + 2 : i + 2 + size])
                i += 2 + size
        else:
            raise MqttProtocolError(f"unknown property 0x{ident:02x}")
    if i != end:
        raise MqttProtocolError("properties run past their length")
    return found, end


def with_reason_string(words: str, properties: dict[int, int | bytes]) -> str:
    text = properties.get(REASON_STRING)
    if isinstance(text, bytes) and text:
        return f"{words}: {text[:200].decode('utf-8', 'replace')}"
    return words


def subscription_groups(
    topics: list[tuple[str, int]], v5: bool, max_packet_bytes: int | None
) -> list[list[tuple[str, int]]]:
    """The subscriptions split into SUBSCRIBE packets that each fit the broker's Maximum Packet
    Size (MQTT 5); one packet when there is no limit."""
    if max_packet_bytes is None:
        return [topics]
    overhead = 1 + 4 + 2 + (1 if v5 else 0)  # type, remaining length (at most), id, properties
    groups: list[list[tuple[str, int]]] = []
    size = overhead
    for topic, qos in topics:
        entry = 2 + len(topic.encode()) + 1
        if overhead + entry > max_packet_bytes:
            raise MqttConnectionError(
                f"the subscription to {topic!r} does not fit the broker's maximum packet size "
                f"({max_packet_bytes} bytes)"
            )
        if not groups or size + entry > max_packet_bytes:
            groups.append([])
            size = overhead
        groups[-1].append((topic, qos))
        size += entry
    return groups
