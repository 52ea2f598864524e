"""MQTT in: connect, subscribe, hand every message inline to the pipeline, stop reading while
the buffer is full, reconnect with jittered backoff and resubscribe.

Two transports behind one seam (mqtt.transport): "native" (ingestd/mqttwire.py, an asyncio
protocol that parses MQTT itself) and "paho" (aiomqtt over paho-mqtt, below). Both deliver
(topic bytes, payload, qos, retain, packet id) to `MqttSource._deliver`.

Why not `async for message in client.messages`: aiomqtt 2.x puts every message into an asyncio
queue that is unbounded by default (and silently discards when bounded: "Message queue is full.
Discarding message."), and its iterator creates a task per message. Here paho's `on_message`
calls the pipeline directly, and the socket reader that aiomqtt registers is ours, so it can be
removed while the buffer is full: TCP then pushes back to the broker, and memory stays bounded.
This subclasses two private hooks of aiomqtt (`_on_socket_open`, `_disconnected`); the version is
pinned below 2.6 in pyproject.toml for that reason. Manual acks are aiomqtt issue #345.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingestd.backoff import backoff_delay
from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqttwire import SESSION_EXPIRY_S, NativeMqttClient
from ingestd.records import RawMessage
from ingestd.telemetry import Telemetry


class _PausableClient(aiomqtt.Client):
    """aiomqtt.Client whose socket reader can be paused, and whose messages skip the queue."""

    def __init__(
        self,
        *args: Any,
        on_message: Callable[[paho.MQTTMessage], None],
        manual_ack: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if manual_ack:
            # paho acks QoS 1 when on_message returns unless told otherwise; we ack after storage
            self._client.manual_ack_set(True)
        self._client.on_message = lambda _client, _userdata, message: on_message(message)
        self._reader: tuple[int, Callable[[], None]] | None = None
        self._liveness: asyncio.Task[None] | None = None
        self.paused = False

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        def read() -> None:
            try:
                while True:
                    client.loop_read()
                    # paho leaves decoded TLS bytes behind (paho.mqtt.python#131)
                    pending = getattr(client._sock, "pending", None)
                    if self.paused or pending is None or pending() <= 0:
                        break
            except Exception as exc:  # the connection is broken: let the reconnect loop see it
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            self._reader = (sock.fileno(), read)
            if not self.paused:
                self._loop.add_reader(sock.fileno(), read)
            self._misc_task = self._loop.create_task(self._misc_loop())

        # paho calls this from the executor thread aiomqtt connects on
        self._loop.call_soon_threadsafe(register)

    def pause_reading(self) -> None:
        if not self.paused:
            self.paused = True
            if self._reader is not None:
                self._loop.remove_reader(self._reader[0])
            self._liveness = self._loop.create_task(self._alive_while_paused())

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if self._liveness is not None:
                self._liveness.cancel()
                self._liveness = None
            if self._reader is not None and self._client.socket() is not None:
                self._loop.add_reader(*self._reader)

    async def _alive_while_paused(self) -> None:
        """Keep paho from declaring the broker dead while we are not reading.

        paho closes the connection when no byte has been read for about two keepalives after a
        PINGREQ. While paused, the PINGRESP waits unread behind the PUBLISHes the broker keeps
        sending, so paho would hang up and every full buffer would become a disconnect loop.
        Bytes waiting in the socket prove the broker is alive: while there are some, tell paho so
        (its private `_last_bytes_received`; paho-mqtt is pinned below 3 for this). With nothing
        waiting, paho's own keepalive decides, as usual.
        """
        paho_client = self._client
        interval = max(1.0, paho_client.keepalive / 3)
        while self.paused:
            await asyncio.sleep(interval)
            sock = paho_client.socket()
            if sock is None:
                return
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
            if readable:
                with paho_client._msgtime_mutex:
                    paho_client._last_bytes_received = time.monotonic()

    @property
    def disconnected(self) -> asyncio.Future[None]:
        return self._disconnected

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=0)

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        for mid, qos in acks:
            self._client.ack(mid, qos)


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
        self._client: _PausableClient | NativeMqttClient | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self._connection = 0  # counts connections: an ack is only valid on the one it came on
        self._intake_closed = False
        self._manual_ack = settings.ack == "after_write" and settings.qos > 0
        self.invalid_topic: Callable[[RawMessage], None] | None = None

    def _on_message(self, message: paho.MQTTMessage) -> None:
        self._deliver(
            message._topic, bytes(message.payload), message.qos, bool(message.retain), message.mid
        )

    def _deliver(self, topic: bytes, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        received_ns = time.time_ns()
        if not (self._manual_ack and qos):
            mid = 0  # acked on receipt (by the transport), or QoS 0: nothing to ack
        try:
            text = topic.decode()
        except UnicodeDecodeError:
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

    async def _resume_when_space(self, client: _PausableClient | NativeMqttClient) -> None:
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

    def _new_client(self) -> _PausableClient | NativeMqttClient:
        s = self.settings
        if s.transport == "native":
            return NativeMqttClient(s, self._deliver, self._manual_ack)
        tls = None
        if s.tls_enabled:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        v5 = s.protocol == "5"
        kwargs: dict[str, Any] = {}
        if v5:
            kwargs["clean_start"] = s.clean_session
            if not s.clean_session:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = SESSION_EXPIRY_S
                kwargs["properties"] = props
        else:
            kwargs["clean_session"] = s.clean_session
        return _PausableClient(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password(),
            identifier=s.client_id,
            keepalive=s.keepalive_s,
            tls_params=tls,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            on_message=self._on_message,
            manual_ack=self._manual_ack,
            **kwargs,
        )

    async def run(self) -> None:
        """Connect, subscribe and keep reading until `stop()`; reconnect on any failure."""
        attempt = 0
        s = self.settings
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
            except (aiomqtt.MqttError, MqttConnectionError, OSError, socket.gaierror) as exc:
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
