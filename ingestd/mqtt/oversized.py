"""Reading past a PUBLISH larger than mqtt.max_packet_bytes, without buffering it.

Why: a broker that enforces no packet size (Mosquitto without `max_packet_size`, or any broker
on MQTT 3.1.1, where a client cannot announce its limit) delivers whatever a publisher sent.
Hanging up on such a message is no answer: the broker redelivers it on the next connection, at
QoS 1 forever, and nothing behind it is ever read. So the native client reads past it as it
arrives: it keeps the topic, the packet id and the first `HEAD_BYTES` of the payload, hashes the
rest, and hands the result on to be dead-lettered and acked like any other refused message.
Memory stays at about 70 KiB (a topic is at most 65,535 bytes) whatever the declared size, and
the work is linear in the bytes the broker sends.
"""

from __future__ import annotations

import hashlib

from ingestd.mqtt.packets import MqttProtocolError

HEAD_BYTES = 4096  # of the payload, kept for the dead letter (deadletter.TRUNCATED_PREFIX_BYTES)


class OversizedPublish:
    """One oversized PUBLISH being read. `feed` it the bytes after its fixed header until `done`;
    then `topic`, `packet_id`, `head`, `size` (of the payload) and `sha256` describe it."""

    def __init__(self, first_byte: int, length: int, v5: bool) -> None:
        self.qos = (first_byte >> 1) & 3
        self.retain = bool(first_byte & 1)
        if self.qos == 3:
            raise MqttProtocolError("PUBLISH with QoS 3")
        self._v5 = v5
        self._length = length
        self._offset = 0  # bytes of the packet's body read so far
        self._header = bytearray()  # topic, packet id, properties length: what fixes where the
        self._payload_at: int | None = None  # payload starts (at most 65,543 bytes)
        self.topic = b""
        self.packet_id = 0
        self.head = bytearray()
        self._hash = hashlib.sha256()

    @property
    def done(self) -> bool:
        return self._offset == self._length

    @property
    def size(self) -> int:
        """The payload's size in bytes (known once the header is read)."""
        assert self._payload_at is not None
        return self._length - self._payload_at

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def feed(self, data: bytes | memoryview) -> int:
        """Read what of `data` belongs to this packet; how many bytes that was."""
        view = memoryview(data)[: self._length - self._offset]
        pos = 0
        while self._payload_at is None and pos < len(view):
            want = self._header_wanted()
            take = view[pos : pos + want - len(self._header)]
            self._header += take
            pos += len(take)
            self._offset += len(take)
            if len(self._header) == want:
                self._parse_header()
        if self._payload_at is not None and pos < len(view):
            start = max(pos, self._payload_at - self._offset + pos)  # past the properties
            payload = view[start:]
            self._hash.update(payload)
            if len(self.head) < HEAD_BYTES:
                self.head += payload[: HEAD_BYTES - len(self.head)]
            self._offset += len(view) - pos
            pos = len(view)
        if self._payload_at is None and self.done:
            raise MqttProtocolError("PUBLISH header runs past its packet")
        return pos

    def _header_wanted(self) -> int:
        """How many header bytes decide the next part: the topic length, then the topic and the
        packet id, then (MQTT 5) the properties length one byte at a time."""
        header = self._header
        if len(header) < 2:
            return 2
        topic_end = 2 + ((header[0] << 8) | header[1])
        fixed = topic_end + (2 if self.qos else 0)
        if not self._v5 or len(header) < fixed:
            return fixed
        return len(header) + 1  # another byte of the properties length

    def _parse_header(self) -> None:
        header = self._header
        topic_end = 2 + ((header[0] << 8) | header[1])
        fixed = topic_end + (2 if self.qos else 0)
        if len(header) == fixed:
            self.topic = bytes(header[2:topic_end])
            if self.qos:
                self.packet_id = (header[topic_end] << 8) | header[topic_end + 1]
                if not self.packet_id:
                    raise MqttProtocolError("PUBLISH at QoS > 0 with packet id 0")
            if not self._v5:
                self._payload_at = fixed
        if self._v5 and len(header) > fixed:
            last = header[-1]
            if not last & 0x80:  # the properties length is complete
                length = 0
                for n, byte in enumerate(header[fixed:]):
                    length |= (byte & 0x7F) << (7 * n)
                self._payload_at = len(header) + length
            elif len(header) - fixed == 4:
                raise MqttProtocolError("PUBLISH properties length longer than 4 bytes")
        if self._payload_at is not None and self._payload_at > self._length:
            raise MqttProtocolError("PUBLISH header runs past its packet")
