"""A minimal MQTT 3.1.1 publisher on a raw asyncio transport, for the fleet simulator.

paho spends ~18 µs of CPU per message in pure-Python packet handling; a load generator built on
it would eat the core ingestd is being measured on. Here a PUBLISH is a few bytes concatenated
(the topic's length prefix is cached) and a whole batch goes out in one `write`. Only what a
publisher needs: CONNECT (clean session, optional login), PUBLISH at QoS 0 or 1, PUBACK,
PINGREQ, DISCONNECT. No TLS, no reconnect: the simulator reports and stops if the broker goes.
"""

from __future__ import annotations

import asyncio
import contextlib

from ingestd.mqtt.packets import string_field, varint

_CONNACK, _PUBACK, _PINGRESP = 2, 4, 13
MAX_PACKET_ID = 65_535


def connect_packet(
    client_id: str, username: str | None, password: str | None, keepalive_s: int
) -> bytes:
    flags = 0x02  # clean session: a simulator keeps nothing between runs
    payload = string_field(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += string_field(username.encode())
        if password is not None:
            flags |= 0x40
            payload += string_field(password.encode())
    variable = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive_s.to_bytes(2, "big")
    body = variable + payload
    return b"\x10" + varint(len(body)) + body


class TopicCache:
    """Topic -> its length-prefixed bytes, the part of a PUBLISH that repeats."""

    def __init__(self) -> None:
        self._prefixed: dict[bytes, bytes] = {}

    def _prefix(self, topic: bytes) -> bytes:
        prefixed = self._prefixed.get(topic)
        if prefixed is None:
            prefixed = self._prefixed[topic] = len(topic).to_bytes(2, "big") + topic
        return prefixed

    def publish(self, topic: bytes, payload: bytes) -> bytes:
        """A whole QoS 0 PUBLISH."""
        prefixed = self._prefix(topic)
        return b"\x30" + varint(len(prefixed) + len(payload)) + prefixed + payload

    def publish_head(self, topic: bytes, payload: bytes) -> bytes:
        """A QoS 1 PUBLISH up to its packet id: head + id (2 bytes) + payload is the packet."""
        prefixed = self._prefix(topic)
        return b"\x32" + varint(len(prefixed) + 2 + len(payload)) + prefixed


class ConnectionLost(Exception):
    pass


class MqttPublisher(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._acked_event = asyncio.Event()
        self.inflight: set[int] = set()
        self.acked = 0
        self._next_id = 0
        self.lost: Exception | None = None
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 60,
        timeout_s: float = 10.0,
    ) -> MqttPublisher:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, protocol = await loop.create_connection(cls, host, port)
            assert protocol.transport is not None
            protocol.transport.write(connect_packet(client_id, username, password, keepalive_s))
            code = await protocol._connack
        if code != 0:
            protocol.transport.close()
            raise ConnectionRefusedError(f"the broker refused the connection (CONNACK {code})")
        protocol._pinger = asyncio.create_task(protocol._ping_every(keepalive_s / 2))
        return protocol

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            length, shift, i = 0, 0, 1
            while True:
                if i >= len(buffer):
                    return
                byte = buffer[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            if len(buffer) < i + length:
                return
            kind, body = buffer[0] >> 4, bytes(buffer[i : i + length])
            del buffer[: i + length]
            if kind == _PUBACK:
                self.inflight.discard(int.from_bytes(body[:2], "big"))
                self.acked += 1
                self._acked_event.set()
            elif kind == _CONNACK and not self._connack.done():
                self._connack.set_result(body[1])

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = ConnectionLost(str(exc) if exc else "the broker closed the connection")
        if not self._connack.done():
            self._connack.set_exception(self.lost)
        self._writable.set()
        self._acked_event.set()
        if self._pinger is not None:
            self._pinger.cancel()

    # -- publishing --------------------------------------------------------------------------

    def next_packet_id(self) -> int:
        while True:
            self._next_id = self._next_id % MAX_PACKET_ID + 1
            if self._next_id not in self.inflight:
                self.inflight.add(self._next_id)
                return self._next_id

    def write(self, data: bytes) -> None:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Until the socket buffer has room: the broker's TCP window paces us."""
        await self._writable.wait()
        if self.lost is not None:
            raise self.lost

    async def wait_inflight_at_most(self, limit: int) -> None:
        while len(self.inflight) > limit:
            if self.lost is not None:
                raise self.lost
            self._acked_event.clear()
            await self._acked_event.wait()

    async def _ping_every(self, interval_s: float) -> None:
        while self.lost is None:
            await asyncio.sleep(interval_s)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"\xc0\x00")

    async def disconnect(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\xe0\x00")
            self.transport.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            if self._pinger is not None:
                await self._pinger
