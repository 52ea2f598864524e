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
Reconnecting is the source's job: a client is one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable

from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, PINGRESP, DISCONNECT = 9, 13, 14
SESSION_EXPIRY_S = 86_400

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


def _packet(first_byte: int, body: bytes) -> bytes:
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
        props = b"" if s.clean_session else b"\x11" + SESSION_EXPIRY_S.to_bytes(4, "big")
        variable += varint(len(props)) + props
    return _packet(0x10, variable + payload)


def _skip_varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            return value, i


class NativeMqttClient(asyncio.Protocol):
    """One connection: `async with client:` connects; `disconnected` resolves when it ends."""

    def __init__(self, settings: MqttSettings, on_publish: OnPublish, manual_ack: bool) -> None:
        self.settings = settings
        self.v5 = settings.protocol == "5"
        self._on_publish = on_publish
        self._manual_ack = manual_ack
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.disconnected: asyncio.Future[None] = self._loop.create_future()
        self._waiting: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._buffer = b""
        self._next_id = 0
        self._keepalive: asyncio.Task[None] | None = None
        self._last_sent = self._last_received = time.monotonic()
        self.paused = False

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
        code = body[1]
        if code != 0:
            self._close()
            raise MqttConnectionError(f"the broker refused the connection (code {code})")
        self._keepalive = self._loop.create_task(self._keep_alive())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(b"\xe0\x00")
        self._close()
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def subscribe(self, topics: list[tuple[str, int]]) -> None:
        packet_id = self._packet_id()
        body = packet_id.to_bytes(2, "big") + (b"\x00" if self.v5 else b"")
        for topic, qos in topics:
            body += string_field(topic.encode()) + bytes([qos])
        suback = self._expect(SUBACK, packet_id)
        self._send(_packet(0x82, body))
        async with asyncio.timeout(10):
            answer = await suback
        codes = answer[2:]
        if self.v5:
            length, start = _skip_varint(answer, 2)
            codes = answer[start + length :]
        refused = [t for (t, _), code in zip(topics, codes, strict=False) if code >= 0x80]
        if refused:
            raise MqttConnectionError(f"the broker refused the subscription to {refused}")

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = MqttConnectionError(str(exc) if exc else "the broker closed the connection")
        if not self.disconnected.done():
            self.disconnected.set_exception(error)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._waiting.clear()

    def data_received(self, data: bytes) -> None:
        self._last_received = time.monotonic()
        buf = self._buffer + data if self._buffer else data
        end = len(buf)
        i = 0
        acks: list[bytes] = []
        on_publish = self._on_publish
        auto_ack = not self._manual_ack
        v5 = self.v5
        while i + 2 <= end:
            first = buf[i]
            # remaining length: one byte for packets under 128 bytes, the common case
            length = buf[i + 1]
            j = i + 2
            if length & 0x80:
                length, shift = length & 0x7F, 7
                while True:
                    if j >= end:
                        self._buffer = buf[i:]
                        self._write_acks(acks)
                        return
                    byte = buf[j]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    j += 1
                    if not byte & 0x80:
                        break
            stop = j + length
            if stop > end:
                break
            kind = first >> 4
            if kind == PUBLISH:
                qos = (first >> 1) & 3
                topic_end = j + 2 + ((buf[j] << 8) | buf[j + 1])
                topic = buf[j + 2 : topic_end]
                packet_id = 0
                k = topic_end
                if qos:
                    packet_id = (buf[k] << 8) | buf[k + 1]
                    k += 2
                if v5:
                    props, k = _skip_varint(buf, k)
                    k += props
                on_publish(topic, buf[k:stop], qos, bool(first & 1), packet_id)
                if qos and auto_ack:
                    acks.append(self._ack_packet(packet_id, qos))
            else:
                self._control(kind, buf[j:stop], acks)
            i = stop
        self._buffer = buf[i:] if i < end else b""
        self._write_acks(acks)

    def _control(self, kind: int, body: bytes, acks: list[bytes]) -> None:
        if kind == PUBREL:
            acks.append(b"\x70\x02" + body[:2])  # PUBCOMP: QoS 2's last step
        elif kind in (CONNACK, SUBACK):
            key = (kind, 0 if kind == CONNACK else int.from_bytes(body[:2], "big"))
            waiter = self._waiting.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)
        elif kind == DISCONNECT and self.transport is not None:
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

    def ack(self, packet_id: int, qos: int) -> None:
        self._send(self._ack_packet(packet_id, qos))

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        self._write_acks([self._ack_packet(packet_id, qos) for packet_id, qos in acks])

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """QoS 0, best effort."""
        body = string_field(topic.encode()) + (b"\x00" if self.v5 else b"") + payload
        self._send(_packet(0x30, body))

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
        the broker's, so silence proves nothing and only our PINGREQs count."""
        keepalive = self.settings.keepalive_s
        while True:
            await asyncio.sleep(keepalive / 4)
            now = time.monotonic()
            if now - self._last_sent >= keepalive / 2:
                self._send(b"\xc0\x00")
            if not self.paused and now - self._last_received > 1.5 * keepalive:
                if self.transport is not None:
                    self.transport.abort()
                return
