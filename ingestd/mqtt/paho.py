"""The "paho" MQTT transport (mqtt.transport = "paho"): aiomqtt over paho-mqtt, imported only
when selected.

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
import select
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqtt.packets import OnPublish, subscription_groups
from ingestd.mqtt.reasons import reason_words

MqttError = aiomqtt.MqttError


class _PausableClient(aiomqtt.Client):
    """aiomqtt.Client whose socket reader can be paused, and whose messages skip the queue."""

    def __init__(
        self,
        *args: Any,
        on_message: Callable[[paho.MQTTMessage], None],
        manual_ack: bool,
        no_retained_at_subscribe: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.v5 = self._client.protocol == paho.MQTTv5
        self._no_retained_at_subscribe = no_retained_at_subscribe
        self.max_packet_bytes: int | None = None  # the broker's Maximum Packet Size (MQTT 5)
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

    @property
    def keepalive_s(self) -> int:
        return int(self._client.keepalive)  # paho applies the Server Keep Alive itself

    async def __aenter__(self) -> _PausableClient:
        try:
            await super().__aenter__()
        except aiomqtt.MqttCodeError as exc:
            code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
            if isinstance(code, int) and code:
                words = reason_words(code, self.v5, connack=True)
                raise MqttConnectionError(f"the broker refused the connection: {words}") from exc
            raise
        return self

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any = None,
    ) -> None:
        size = getattr(properties, "MaximumPacketSize", None)
        if isinstance(size, int) and size > 0:
            self.max_packet_bytes = size
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any = None,
    ) -> None:
        """As aiomqtt's, with the reason in words: the broker's DISCONNECT, or our keepalive."""
        connected = self._connected.done() and self._connected.exception() is None
        code = getattr(reason_code, "value", reason_code)
        if self._disconnected.done() or not connected or not code:
            super()._on_disconnect(client, userdata, flags, reason_code, properties)
            return
        if getattr(flags, "is_disconnect_packet_from_server", False):
            reason = f"the broker disconnected us: {reason_words(code, v5=True)}"
        elif code == 0x8D:
            reason = (
                f"keepalive timeout: no answer from the broker (keepalive {self.keepalive_s} s)"
            )
        else:
            reason = f"connection lost: {reason_code}"
        self._disconnected.set_exception(MqttConnectionError(reason))

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:  # type: ignore[override]
        """The broker's SUBACK code for each filter, in order (0x80 and up: refused)."""
        codes: list[int] = []
        for group in subscription_groups(topics, self.v5, self.max_packet_bytes):
            request: list[tuple[str, Any]] = list(group)
            if self.v5:
                retain_handling = 2 if self._no_retained_at_subscribe else 0
                request = [
                    (topic, SubscribeOptions(qos=qos, retainHandling=retain_handling))
                    for topic, qos in group
                ]
            granted = await super().subscribe(request, timeout=10)
            codes += [code.value if isinstance(code, ReasonCode) else int(code) for code in granted]
        return codes

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        size = 2 + len(topic.encode()) + len(payload) + (1 if self.v5 else 0) + 5
        if self.max_packet_bytes is not None and size > self.max_packet_bytes:
            return False
        info = self._client.publish(topic, payload, qos=0)
        return info.rc == paho.MQTT_ERR_SUCCESS

    async def publish(  # type: ignore[override]
        self, topic: str, payload: bytes, timeout_s: float = 10
    ) -> None:
        """QoS 1, not retained; returns once the broker acked it (see NativeMqttClient)."""
        try:
            await super().publish(topic, payload, qos=1, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise MqttConnectionError(str(exc)) from exc

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        for mid, qos in acks:
            self._client.ack(mid, qos)


def new_paho_client(s: MqttSettings, on_publish: OnPublish, manual_ack: bool) -> _PausableClient:
    def on_message(message: paho.MQTTMessage) -> None:
        on_publish(
            message._topic, bytes(message.payload), message.qos, bool(message.retain), message.mid
        )

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
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.MaximumPacketSize = s.max_packet_bytes  # the broker sends nothing larger
        if not s.clean_session:
            props.SessionExpiryInterval = s.session_expiry_s
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
        on_message=on_message,
        manual_ack=manual_ack,
        no_retained_at_subscribe=v5 and s.retained == "skip",
        **kwargs,
    )
