"""MQTT in: connect, subscribe, hand every message inline to the pipeline, stop reading while
the buffer is full, reconnect with jittered backoff and resubscribe.

Two transports behind one seam (mqtt.transport): "native" (ingestd/mqttwire.py, an asyncio
protocol that parses MQTT itself) and "paho" (aiomqtt over paho-mqtt, below). Both deliver
(topic bytes, payload, qos, retain, packet id) to `MqttSource._deliver`, and a client of
either pauses reading while the buffer is full, so TCP pushes back on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ingestd.backoff import backoff_delay
from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqttwire import NativeMqttClient, OnPublish
from ingestd.records import RawMessage
from ingestd.telemetry import Telemetry

if TYPE_CHECKING:
    from ingestd.mqttpaho import _PausableClient

    MqttClient = NativeMqttClient | _PausableClient


def new_client(settings: MqttSettings, on_publish: OnPublish, manual_ack: bool) -> MqttClient:
    """One connection's client, of the configured transport (`async with` it to connect)."""
    if settings.transport == "paho":
        from ingestd.mqttpaho import new_paho_client

        return new_paho_client(settings, on_publish, manual_ack)
    return NativeMqttClient(settings, on_publish, manual_ack)


def connection_errors_of(settings: MqttSettings) -> tuple[type[Exception], ...]:
    """What connecting or a lost connection raises, with the configured transport."""
    errors: tuple[type[Exception], ...] = (MqttConnectionError, OSError, socket.gaierror)
    if settings.transport == "paho":
        from ingestd.mqttpaho import MqttError

        errors += (MqttError,)
    return errors


TOPIC_CACHE_SIZE = 50_000  # cleared when full, like the route cache


class MqttSource:
    def __init__(
        self,
        settings: MqttSettings,
        handle: Callable[[RawMessage], None],
        buffer_full: Callable[[], bool],
        wait_for_space: Callable[[], Any],
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self._handle = handle
        self._buffer_full = buffer_full
        self._wait_for_space = wait_for_space
        self.telemetry = telemetry
        self._stop = asyncio.Event()
        self._client: MqttClient | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._connection = 0  # counts connections: an ack is only valid on the one it came on
        self._intake_closed = False
        self._manual_ack = settings.ack == "after_write" and settings.qos > 0
        self.invalid_topic: Callable[[RawMessage], None] | None = None
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
            if text is not None:
                if len(self._topics) >= TOPIC_CACHE_SIZE:
                    self._topics.clear()
                self._topics[topic] = text
        if text is None:
            raw = RawMessage(
                topic.decode("utf-8", "replace"), payload, received_ns, retain, mid, qos,
                self._connection,
            )  # fmt: skip
            if self.invalid_topic is not None:
                self.invalid_topic(raw)
            return
        if mid:
            raw = RawMessage(text, payload, received_ns, retain, mid, qos, self._connection)
        else:
            raw = RawMessage(text, payload, received_ns, retain)
        self._handle(raw)
        if self._buffer_full():
            self._pause()

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
        connection = self._connection
        client.ack_many([(m.mid, m.qos) for m in messages if m.mid and m.connection == connection])

    def close_intake(self) -> None:
        """Stop reading for good but stay connected, so what is drained can still be acked."""
        self._intake_closed = True
        if self._client is not None:
            self._client.pause_reading()

    def _new_client(self) -> MqttClient:
        return new_client(self.settings, self._deliver, self._manual_ack)

    async def run(self) -> None:
        """Connect, subscribe and keep reading until `stop()`; reconnect on any failure."""
        attempt = 0
        s = self.settings
        connection_errors = connection_errors_of(s)
        while not self._stop.is_set():
            client = self._new_client()
            try:
                async with client:
                    self._connection += 1
                    self._client = client
                    if self._intake_closed:
                        client.pause_reading()
                    await client.subscribe([(topic, int(s.qos)) for topic in s.topics])
                    self.telemetry.mqtt_up(s.host, s.port, s.topics)
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
                        return
                    error = client.disconnected.exception()
                    raise MqttConnectionError(str(error) or "connection lost")
            except connection_errors as exc:
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

    def stop(self) -> None:
        self._stop.set()

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """Best effort, QoS 0 (dead-letter notifications); dropped while disconnected."""
        if self._client is not None:
            self._client.publish_nowait(topic, payload)
