"""MQTT in: connect, subscribe, hand every message inline to the pipeline, stop reading while
the buffer is full, reconnect with jittered backoff and resubscribe.

Two transports behind one seam (mqtt.transport), the `MqttClient` Protocol: "native"
(ingestd/mqtt/native.py, an asyncio protocol that parses MQTT itself) and "paho" (aiomqtt over
paho-mqtt, ingestd/mqtt/paho.py). Both deliver (topic bytes, payload, qos, retain, packet id) to
`MqttSource._deliver`, and a client of either pauses reading while the buffer is full, so TCP
pushes back on the broker.

Every delivery is tagged with the connection it arrived on, from that connection's first byte:
a broker resuming a persistent session sends its queue in the same read as the CONNACK, and a
message tagged with the previous connection would never be acked, holding a slot of the
broker's in-flight window for the life of the connection (a silent stall once the window is
full). The packet ids still waiting for their ack are kept, so a stall of any other cause
shows too: `oldest_unacked_ns` feeds the service's ack watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ingestd.backoff import backoff_delay
from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqtt.client import MqttClient, connection_errors_of, new_client
from ingestd.mqtt.oversized import OversizedPublish
from ingestd.mqtt.packets import MqttProtocolError
from ingestd.mqtt.reasons import reason_words, refused
from ingestd.records import RawMessage
from ingestd.telemetry import Telemetry
from ingestd.topics import BROKER_STATS, CACHED_TOPIC_MAX_BYTES

TOPIC_CACHE_SIZE = 50_000  # cleared when full, like the route cache
CLOSE_LINGER_S = 0.1  # between the last acks and the disconnect, at shutdown (see run)


@dataclass(frozen=True, slots=True)
class SourceHooks:
    """What a source calls on the service. All run inline on the read path."""

    handle: Callable[[RawMessage], None]  # one message, into the pipeline
    buffer_full: Callable[[], bool]  # asked after each message: stop reading?
    wait_for_space: Callable[[], Awaitable[None]]  # resume reading when this returns
    invalid_topic: Callable[[RawMessage], None]  # a topic that is not UTF-8: dead-letter it
    # ingestd cannot do what it is configured to (a refused subscription): stop, exit non-zero
    on_fatal: Callable[[str], None]
    # a message larger than mqtt.max_packet_bytes, read past (its first bytes as the payload),
    # with its size and SHA-256: dead-letter it
    oversized: Callable[[RawMessage, int, str], None]


class Source(Protocol):
    """The service's face of MQTT in (MqttSource; devtools.fakes.FakeSource in tests)."""

    async def run(self) -> None:
        """Deliver messages through the hooks until `stop`."""
        ...

    def ack(self, messages: list[RawMessage]) -> None:
        """These messages are stored (or dead-lettered): acknowledge those that wait for it."""
        ...

    def oldest_unacked_ns(self) -> int | None: ...

    def close_intake(self) -> None:
        """Stop reading, stay connected so what is drained can still be acked."""
        ...

    def stop(self) -> None: ...

    def publish_nowait(self, topic: str, payload: bytes) -> bool: ...

    async def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1 until the broker acked it; MqttConnectionError if not (the caller retries)."""
        ...


SourceFactory = Callable[[MqttSettings, SourceHooks, Telemetry], Source]


class MqttSource:
    def __init__(self, settings: MqttSettings, hooks: SourceHooks, telemetry: Telemetry) -> None:
        self.settings = settings
        self._handle = hooks.handle
        self._buffer_full = hooks.buffer_full
        self._wait_for_space = hooks.wait_for_space
        self._invalid_topic = hooks.invalid_topic
        self._oversized = hooks.oversized
        self.telemetry = telemetry
        self._stop = asyncio.Event()
        self._client: MqttClient | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._connection = 0  # counts connections: an ack is only valid on the one it came on
        # packet id -> received_ns, for messages of this connection still waiting for their ack
        self._unacked: dict[int, int] = {}
        self._on_fatal = hooks.on_fatal
        self._intake_closed = False
        self._manual_ack = settings.ack == "after_write" and settings.qos > 0
        # topic bytes -> str: decoded once, and every buffered message of a topic shares one str
        self._topics: dict[bytes, str] = {}

    def _deliver(self, topic: bytes, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        received_ns = time.time_ns()
        if not (self._manual_ack and qos):
            mid = 0  # acked on receipt (by the transport), or QoS 0: nothing to ack
        text = self._topics.get(topic)
        if text is None:
            try:
                text = topic.decode()
            except UnicodeDecodeError:
                text = None
            if text in BROKER_STATS:  # uncached: these stay off the hot path's cache hit
                self.telemetry.broker_stat(text, payload)
                return
            if text is not None and len(topic) <= CACHED_TOPIC_MAX_BYTES:
                if len(self._topics) >= TOPIC_CACHE_SIZE:
                    self._topics.clear()
                self._topics[topic] = text
        if text is None:
            raw = RawMessage(
                topic.decode("utf-8", "replace"), payload, received_ns, retain, mid, qos,
                self._connection,
            )  # fmt: skip
            self._invalid_topic(raw)
            return
        if mid:
            self._unacked[mid] = received_ns
            raw = RawMessage(text, payload, received_ns, retain, mid, qos, self._connection)
        else:
            raw = RawMessage(text, payload, received_ns, retain)
        self._handle(raw)
        if self._buffer_full():
            self._pause()

    def _deliver_oversized(self, message: OversizedPublish) -> None:
        """A message the native client read past: dead-lettered by its first bytes, then acked."""
        mid = message.packet_id if self._manual_ack and message.qos else 0
        received_ns = time.time_ns()
        if mid:
            self._unacked[mid] = received_ns
        raw = RawMessage(
            message.topic.decode("utf-8", "replace"), bytes(message.head), received_ns,
            message.retain, mid, message.qos, self._connection,
        )  # fmt: skip
        self._oversized(raw, message.size, message.sha256)

    def _pause(self) -> None:
        client = self._client
        if client is None or client.paused:
            return
        client.pause_reading()
        self.telemetry.reading_paused(True)
        self._resume_task = asyncio.get_running_loop().create_task(self._resume_when_space(client))

    async def _resume_when_space(self, client: MqttClient) -> None:
        await self._wait_for_space()
        if not self._intake_closed:
            client.resume_reading()
            self.telemetry.reading_paused(False)

    def ack(self, messages: list[RawMessage]) -> None:
        """Acknowledge stored messages to the broker, once each, on the connection they came on.
        Messages from an earlier connection are not acked: the broker redelivers them."""
        client = self._client
        if client is None:
            return
        connection, unacked = self._connection, self._unacked
        acks = []
        for m in messages:
            if m.mid and m.connection == connection:
                acks.append((m.mid, m.qos))
                unacked.pop(m.mid, None)
        if acks:
            client.ack_many(acks)

    def oldest_unacked_ns(self) -> int | None:
        """When the oldest message of this connection still waiting for its ack arrived."""
        return min(self._unacked.values(), default=None)

    def close_intake(self) -> None:
        """Stop reading for good but stay connected, so what is drained can still be acked."""
        self._intake_closed = True
        if self._client is not None:
            self._client.pause_reading()

    def _new_client(self) -> MqttClient:
        return new_client(self.settings, self._deliver, self._manual_ack, self._deliver_oversized)

    async def run(self) -> None:
        """Connect, subscribe and keep reading until `stop()`; reconnect on any failure."""
        attempt = 0
        s = self.settings
        connection_errors = connection_errors_of(s)
        while not self._stop.is_set():
            # before connecting: what arrives with the CONNACK belongs to this connection
            self._connection += 1
            self._unacked.clear()
            client = self._new_client()
            self._client = client
            try:
                async with client:
                    if self._intake_closed:
                        client.pause_reading()
                    await self._subscribe(client)
                    attempt = 0
                    if self._buffer_full():
                        self._pause()
                    stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
                    waiters: list[asyncio.Future[Any]] = [stop, client.disconnected]
                    try:
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stop.cancel()
                    if self._stop.is_set():
                        # The acks of the drain were just written. Closing a socket that still
                        # holds unread PUBLISHes (reading is paused) sends a TCP RST, and the
                        # broker's kernel then discards what its process had not read yet: the
                        # last PUBACKs, so the broker redelivers messages already stored (seen
                        # with aedes and paho: 2 of 3 redelivered). A PUBACK has no reply to
                        # wait for, so give the broker a moment to read them.
                        await asyncio.sleep(CLOSE_LINGER_S)
                        return
                    error = client.disconnected.exception()
                    if isinstance(error, MqttConnectionError):
                        raise error
                    raise MqttConnectionError(str(error) or "connection lost")
            except connection_errors as exc:
                if isinstance(exc, MqttProtocolError):
                    self.telemetry.mqtt_protocol_errors += 1
                delay = backoff_delay(attempt, s.reconnect_min_s, s.reconnect_max_s)
                attempt += 1
                self.telemetry.mqtt_down(str(exc) or type(exc).__name__, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
            finally:
                if client.disconnected.done() and not client.disconnected.cancelled():
                    client.disconnected.exception()  # retrieved: the loop logs it as unhandled otherwise
                self._client = None
                if self._resume_task is not None:
                    self._resume_task.cancel()
                    self._resume_task = None
                self.telemetry.mqtt_connected = False

    async def _subscribe(self, client: MqttClient) -> None:
        """Subscribe to mqtt.topics. A refusal is never retried by reconnecting: each short
        connection would deliver the granted subscriptions' messages again, unacked, and they
        would be stored again. It is an error naming the filter; with on_subscription_refused =
        "exit", the service drains, acks and exits non-zero."""
        s = self.settings
        wanted = [(topic, int(s.qos)) for topic in s.topics]
        codes = await client.subscribe(wanted)
        v5 = s.protocol == "5"
        refusals = [
            (topic, reason_words(code, v5))
            for (topic, _), code in zip(wanted, codes, strict=True)
            if refused(code)
        ]
        granted = [
            topic for (topic, _), code in zip(wanted, codes, strict=True) if not refused(code)
        ]
        self.telemetry.mqtt_up(s.host, s.port, granted, client.keepalive_s)
        for topic, reason in refusals:
            self.telemetry.subscription_refused(topic, reason)
        if refusals and s.on_subscription_refused == "exit":
            self._on_fatal(
                "the broker refused the subscription to "
                + ", ".join(f"{topic!r} ({reason})" for topic, reason in refusals)
            )
        if s.broker_stats:
            codes = await client.subscribe([(topic, 0) for topic in BROKER_STATS])
            if any(refused(code) for code in codes):
                self.telemetry.broker_stats_refused(reason_words(max(codes), v5))

    def stop(self) -> None:
        self._stop.set()

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """Best effort, QoS 0 (dead-letter notifications); not sent while disconnected."""
        return self._client is not None and self._client.publish_nowait(topic, payload)

    async def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, not retained, on the current connection, until the broker acked it (events
        and alerts, through the outbox, which retries): MqttConnectionError while
        disconnected."""
        client = self._client
        if client is None or not self.telemetry.mqtt_connected:
            raise MqttConnectionError("not connected")
        await client.publish(topic, payload)
