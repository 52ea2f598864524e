"""MQTT in on a raw asyncio protocol: the "native" transport (mqtt.transport = "native").

Why: profiling ingestd under load put a third of its CPU in paho's receive path (about 18 µs a
message of pure-Python packet handling, callbacks and locks). Here one `data_received` call
parses every PUBLISH in the bytes the socket delivered, in one loop, and hands each to the
pipeline inline; acknowledgements are collected and written once per call.

What it supports, because ingestd needs it: MQTT 3.1.1 and 5, TLS and mutual TLS (asyncio's SSL
transport), username and password, persistent sessions (v5: session expiry), subscriptions at
QoS 0, 1 and 2, acknowledgement after storage for QoS 1 (PUBACK) and QoS 2 (PUBREC once stored,
PUBCOMP on the broker's PUBREL), keepalive, and pausing reads with `transport.pause_reading()`
(TCP then pushes back on the broker; PINGREQs still go out, so the broker keeps the session).
From an MQTT 5 CONNACK it uses the Server Keep Alive [MQTT-3.2.2-21] and the Maximum Packet
Size (subscriptions are split to fit; an oversized notification is not sent), and it subscribes
with Retain Handling 2 when retained messages are to be skipped, so the broker sends none.
A PUBLISH over mqtt.max_packet_bytes is read past without buffering (mqtt/oversized.py).
Reconnecting is the source's job: a client is one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from types import TracebackType

from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqtt.oversized import OversizedPublish
from ingestd.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    MAXIMUM_PACKET_SIZE,
    PUBACK,
    PUBLISH,
    PUBREL,
    SERVER_KEEP_ALIVE,
    SUBACK,
    MqttProtocolError,
    OnPublish,
    connect_packet,
    encode_packet,
    read_properties,
    read_varint,
    string_field,
    subscription_groups,
    with_reason_string,
)
from ingestd.mqtt.reasons import reason_words


def _long_length(buf: bytes, j: int, first: int) -> tuple[int, int] | None:
    """The rest of a remaining length whose first byte was `first`, from `j`: (length, end),
    None while it is still arriving, MqttProtocolError past 4 bytes (the spec's limit)."""
    length, shift = first & 0x7F, 7
    while j < len(buf):
        if shift > 21:
            raise MqttProtocolError("remaining length longer than 4 bytes")
        byte = buf[j]
        length |= (byte & 0x7F) << shift
        shift += 7
        j += 1
        if not byte & 0x80:
            return length, j
    return None


class NativeMqttClient(asyncio.Protocol):
    """One connection: `async with client:` connects; `disconnected` resolves when it ends."""

    def __init__(
        self,
        settings: MqttSettings,
        on_publish: OnPublish,
        manual_ack: bool,
        on_oversized: Callable[[OversizedPublish], None],
    ) -> None:
        self.settings = settings
        self.v5 = settings.protocol == "5"
        self._on_publish = on_publish
        self._on_oversized = on_oversized
        self._oversized: OversizedPublish | None = None  # a PUBLISH being read past
        self._manual_ack = manual_ack
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.disconnected: asyncio.Future[None] = self._loop.create_future()
        self._waiting: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._buffer = b""
        # what a packet from the broker may weigh (mqtt.max_packet_bytes; also sent as Maximum
        # Packet Size in an MQTT 5 CONNECT, so a v5 broker never sends more)
        self.max_incoming_bytes = settings.max_packet_bytes
        self.protocol_error: str | None = None
        self._next_id = 0
        self._keepalive: asyncio.Task[None] | None = None
        self._last_sent = self._last_received = time.monotonic()
        self.paused = False
        # what the broker said in its CONNACK (MQTT 5 may override our keepalive, and limit size)
        self.keepalive_s = settings.keepalive_s
        self.max_packet_bytes: int | None = None
        self.session_present = False
        # MQTT 5: Retain Handling 2, no retained messages at subscribe (section 3.8.3.1)
        self._no_retained_at_subscribe = self.v5 and settings.retained == "skip"
        self._close_reason: str | None = None  # why the connection ended, when we know better
        self._closing = False  # we hung up on purpose: the end is not an error

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> NativeMqttClient:
        s = self.settings
        context = None
        if s.tls_enabled:
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if s.cert_file and s.key_file:
                context.load_cert_chain(str(s.cert_file), str(s.key_file))
        try:
            async with asyncio.timeout(10):
                await self._loop.create_connection(lambda: self, s.host, s.port, ssl=context)
                connack = self._expect(CONNACK, 0)
                self._send(connect_packet(s, s.password()))
                body = await connack
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self._close()
            raise MqttConnectionError(f"cannot connect to {s.host}:{s.port}: {exc}") from exc
        try:
            self._read_connack(body)
        except MqttConnectionError:
            self._close()
            raise
        if self.keepalive_s:  # 0: the broker turned keepalive off
            self._keepalive = self._loop.create_task(self._keep_alive())
        return self

    def _read_connack(self, body: bytes) -> None:
        if len(body) < 2:
            raise MqttProtocolError(f"CONNACK of {len(body)} bytes")
        self.session_present = bool(body[0] & 1)
        code = body[1]
        properties: dict[int, int | bytes] = {}
        if self.v5 and len(body) > 2:
            properties, _ = read_properties(body, 2)
        if code != 0:
            words = reason_words(code, self.v5, connack=True)
            raise MqttConnectionError(
                "the broker refused the connection: " + with_reason_string(words, properties)
            )
        keepalive = properties.get(SERVER_KEEP_ALIVE)
        if isinstance(keepalive, int):
            self.keepalive_s = keepalive
        max_packet = properties.get(MAXIMUM_PACKET_SIZE)
        if isinstance(max_packet, int) and max_packet > 0:
            self.max_packet_bytes = max_packet

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._send(b"\xe0\x00")
        self._close()
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:
        """Subscribe; the broker's SUBACK code for each filter, in order (0x80 and up: refused)."""
        codes: list[int] = []
        options = 2 << 4 if self._no_retained_at_subscribe else 0
        for group in subscription_groups(topics, self.v5, self.max_packet_bytes):
            packet_id = self._packet_id()
            body = packet_id.to_bytes(2, "big") + (b"\x00" if self.v5 else b"")
            for topic, qos in group:
                body += string_field(topic.encode()) + bytes([qos | options])
            suback = self._expect(SUBACK, packet_id)
            self._send(encode_packet(0x82, body))
            async with asyncio.timeout(10):
                answer = await suback
            start = 2
            if self.v5:
                _, start = read_properties(answer, 2)
            granted = list(answer[start:])
            if len(granted) != len(group):
                raise MqttProtocolError(
                    f"SUBACK has {len(granted)} codes for {len(group)} subscriptions"
                )
            codes += granted
        return codes

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._close_reason or (str(exc) if exc else "the broker closed the connection")
        kind = MqttProtocolError if self.protocol_error else MqttConnectionError
        error = kind(reason)
        if not self.disconnected.done():
            if self._closing:
                self.disconnected.set_result(None)
            else:
                self.disconnected.set_exception(error)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._waiting.clear()

    def data_received(self, data: bytes) -> None:
        """Every whole packet in what the socket read, parsed in one loop and checked: lengths,
        QoS, packet ids, topic and property lengths. A packet that breaks the spec, or a control
        packet larger than mqtt.max_packet_bytes, closes the connection as a protocol error
        before more of it is buffered; the source counts it and reconnects with backoff. A
        PUBLISH larger than that is read past without buffering (mqtt/oversized.py) and handed
        on to be dead-lettered and acked: hanging up would only make the broker redeliver it.
        Liveness is a valid packet, not any byte."""
        while data:
            data = self._read_packets(data) if self._oversized is None else self._read_past(data)

    def _read_past(self, data: bytes) -> bytes:
        """Feed the oversized PUBLISH being read; what follows it."""
        oversized = self._oversized
        assert oversized is not None
        try:
            used = oversized.feed(data)
        except MqttProtocolError as exc:
            return self._protocol_error(str(exc), [])
        if not oversized.done:
            return b""
        self._oversized = None
        self._last_received = time.monotonic()
        self._on_oversized(oversized)
        if oversized.qos and not self._manual_ack:
            self._write_acks([self._ack_packet(oversized.packet_id, oversized.qos)])
        return data[used:]

    def _read_packets(self, data: bytes) -> bytes:
        """Whole packets, as many as `data` holds; the bytes after an oversized PUBLISH's fixed
        header when one begins (b"" otherwise: a partial packet waits in the buffer)."""
        buf = self._buffer + data if self._buffer else data
        acks: list[bytes] = []
        try:  # free in 3.11 unless raised: every check below raises MqttProtocolError
            i, end, rest = self._read_loop(buf, acks)
        except MqttProtocolError as exc:
            return self._protocol_error(str(exc), acks)
        if i:  # at least one whole, valid packet: the broker is alive (a stray byte is not)
            self._last_received = time.monotonic()
        self._buffer = buf[i:] if i < end else b""
        self._write_acks(acks)
        return rest

    def _read_loop(self, buf: bytes, acks: list[bytes]) -> tuple[int, int, bytes]:
        """`_read_packets`' loop: where the whole packets end, where the buffered bytes end, and
        what follows an oversized PUBLISH's fixed header."""
        end = len(buf)
        i = 0
        on_publish, auto_ack = self._on_publish, not self._manual_ack
        v5, limit = self.v5, self.max_incoming_bytes
        while i + 2 <= end:
            first = buf[i]
            # remaining length: one byte for packets under 128 bytes, the common case
            length = buf[i + 1]
            j = i + 2
            if length & 0x80:  # a longer remaining length: the rare path, out of the loop
                found = _long_length(buf, j, length)
                if found is None:
                    break  # the length itself is still arriving
                length, j = found
            kind = first >> 4
            if length > limit:
                if kind != PUBLISH:
                    raise MqttProtocolError(f"a packet of {length:,} bytes > mqtt.max_packet_bytes")
                self._oversized = OversizedPublish(first, length, v5)
                return i, i, buf[j:]  # nothing of it is buffered
            stop = j + length
            if stop > end:
                break
            if kind == PUBLISH:
                qos = (first >> 1) & 3
                if qos == 3 or length < 2:
                    raise MqttProtocolError(f"PUBLISH with QoS {qos} or no topic")
                # an empty topic (a topic alias, which ingestd never allows) is delivered as it
                # is and dead-lettered as unknown_topic: a check here would cost every message
                topic_end = j + 2 + ((buf[j] << 8) | buf[j + 1])
                k = topic_end + 2 if qos else topic_end
                if k > stop:
                    raise MqttProtocolError("PUBLISH topic runs past its packet")
                packet_id = 0
                if qos:
                    packet_id = (buf[topic_end] << 8) | buf[topic_end + 1]
                    if not packet_id:
                        raise MqttProtocolError("PUBLISH at QoS > 0 with packet id 0")
                if v5:
                    props, k = read_varint(buf, k)
                    k += props
                    if k > stop:
                        raise MqttProtocolError("PUBLISH properties run past it")
                on_publish(buf[j + 2 : topic_end], buf[k:stop], qos, bool(first & 1), packet_id)
                if qos and auto_ack:
                    acks.append(self._ack_packet(packet_id, qos))
            else:
                self._control(kind, buf[j:stop], acks)
            i = stop
        return i, end, b""

    def _protocol_error(self, detail: str, acks: list[bytes]) -> bytes:
        """Send the acks of the valid packets before it, then hang up: the source counts a
        protocol_error and reconnects with backoff. Nothing more of the stream is buffered."""
        self._write_acks(acks)
        self._buffer = b""
        self._oversized = None
        self.protocol_error = detail
        self._close_reason = f"protocol error from the broker: {detail}"
        if self.transport is not None:
            self.transport.abort()
        return b""  # nothing more of the stream is read

    def _control(self, kind: int, body: bytes, acks: list[bytes]) -> None:
        if kind == PUBREL:
            acks.append(b"\x70\x02" + body[:2])  # PUBCOMP: QoS 2's last step
        elif kind in (CONNACK, SUBACK, PUBACK):
            key = (kind, 0 if kind == CONNACK else int.from_bytes(body[:2], "big"))
            waiter = self._waiting.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
        elif kind == DISCONNECT and self.transport is not None:
            self._close_reason = "the broker disconnected us"
            if self.v5 and body:
                properties: dict[int, int | bytes] = {}
                with contextlib.suppress(MqttProtocolError):
                    properties, _ = read_properties(body, 1) if len(body) > 1 else ({}, 1)
                words = with_reason_string(reason_words(body[0], v5=True), properties)
                self._close_reason = f"the broker disconnected us: {words}"
            self.transport.close()

    def pause_writing(self) -> None:  # acks are small; the socket buffer absorbs them
        pass

    def resume_writing(self) -> None:
        pass

    # -- flow control, acks, publishing -------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self._last_received = time.monotonic()
            if not self.transport.is_closing():
                self.transport.resume_reading()

    @staticmethod
    def _ack_packet(packet_id: int, qos: int) -> bytes:
        # QoS 1: PUBACK; QoS 2: PUBREC (the broker answers PUBREL, we PUBCOMP)
        return (b"\x40\x02" if qos == 1 else b"\x50\x02") + packet_id.to_bytes(2, "big")

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        self._write_acks([self._ack_packet(packet_id, qos) for packet_id, qos in acks])

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """QoS 0, best effort. False if not sent: larger than the broker takes (MQTT 5), or not
        connected; a broker disconnects a client that exceeds its Maximum Packet Size."""
        body = string_field(topic.encode()) + (b"\x00" if self.v5 else b"") + payload
        packet = encode_packet(0x30, body)
        if self.max_packet_bytes is not None and len(packet) > self.max_packet_bytes:
            return False
        if self.transport is None or self.transport.is_closing():
            return False
        self._send(packet)
        return True

    async def publish(self, topic: str, payload: bytes, timeout_s: float = 10) -> None:
        """QoS 1, not retained; returns once the broker acked it (PUBACK). MqttConnectionError
        if it cannot be sent (larger than the broker takes, not connected), is refused (an
        MQTT 5 failure reason code) or is not acked in time: the caller keeps it and retries."""
        packet_id = self._packet_id()
        body = string_field(topic.encode()) + packet_id.to_bytes(2, "big")
        packet = encode_packet(0x32, body + (b"\x00" if self.v5 else b"") + payload)
        if self.max_packet_bytes is not None and len(packet) > self.max_packet_bytes:
            raise MqttConnectionError(f"{len(packet)} bytes > the broker's Maximum Packet Size")
        if self.transport is None or self.transport.is_closing():
            raise MqttConnectionError("not connected")
        acked = self._expect(PUBACK, packet_id)
        self._send(packet)
        try:
            async with asyncio.timeout(timeout_s):
                answer = await acked
        except TimeoutError as exc:
            raise MqttConnectionError(f"no PUBACK within {timeout_s} s") from exc
        finally:
            self._waiting.pop((PUBACK, packet_id), None)
        if self.v5 and len(answer) > 2 and answer[2] >= 0x80:
            raise MqttConnectionError(f"refused: {reason_words(answer[2], v5=True)}")

    def publish_qos1_nowait(self, topic: str, payload: bytes) -> None:
        """QoS 1 without waiting for or tracking its PUBACK (which is ignored): the load of
        `ingestd check --connect`'s window probe, nothing that must arrive."""
        packet_id = self._packet_id().to_bytes(2, "big")
        body = string_field(topic.encode()) + packet_id + (b"\x00" if self.v5 else b"") + payload
        self._send(encode_packet(0x32, body))

    def _write_acks(self, acks: list[bytes]) -> None:
        if acks:
            self._send(b"".join(acks))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self._last_sent = time.monotonic()

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65_535 + 1
        return self._next_id

    def _expect(self, kind: int, packet_id: int) -> asyncio.Future[bytes]:
        waiter: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[(kind, packet_id)] = waiter
        return waiter

    async def _keep_alive(self) -> None:
        """PINGREQ when we have been quiet for half the keepalive; hang up when the broker has
        been silent for 1.5 keepalives while we were reading. While paused, unread bytes are
        the broker's, so silence proves nothing and only our PINGREQs count. The keepalive is
        the broker's Server Keep Alive where it sent one (MQTT 5)."""
        keepalive = self.keepalive_s
        while True:
            await asyncio.sleep(keepalive / 4)
            now = time.monotonic()
            if now - self._last_sent >= keepalive / 2:
                self._send(b"\xc0\x00")
            silent_s = now - self._last_received
            if not self.paused and silent_s > 1.5 * keepalive:
                self._close_reason = (
                    f"keepalive timeout: nothing from the broker for {silent_s:.0f} s "
                    f"(keepalive {keepalive} s)"
                )
                if self.transport is not None:
                    self.transport.abort()
                return
