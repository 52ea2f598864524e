"""The seam between the source and the wire: the `MqttClient` Protocol both transports
implement, the one place that picks a transport, and the one list of what a lost or refused
connection raises (library exceptions become ingestd's MqttConnectionError where they can).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from ingestd.config import MqttSettings
from ingestd.errors import MqttConnectionError
from ingestd.mqtt.native import NativeMqttClient
from ingestd.mqtt.oversized import OversizedPublish
from ingestd.mqtt.packets import OnPublish


class MqttClient(Protocol):
    """One connection to the broker, of either transport: `async with` it to connect."""

    paused: bool

    @property
    def disconnected(self) -> asyncio.Future[None]:
        """Resolves when the connection ends (with the reason as its exception)."""

    @property
    def keepalive_s(self) -> int:
        """The keepalive in force: the broker's Server Keep Alive where it sent one (MQTT 5)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:
        """The broker's SUBACK code per filter, in order."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """(packet id, qos) pairs: PUBACK for QoS 1, PUBREC for QoS 2."""

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """QoS 0, best effort; False if it was not sent."""

    async def publish(self, topic: str, payload: bytes, timeout_s: float = 10) -> None:
        """QoS 1, not retained, until the broker acked it; MqttConnectionError otherwise."""


def new_client(
    settings: MqttSettings,
    on_publish: OnPublish,
    manual_ack: bool,
    on_oversized: Callable[[OversizedPublish], None],
) -> MqttClient:
    """One connection's client, of the configured transport (`async with` it to connect).
    `on_oversized`: a PUBLISH larger than mqtt.max_packet_bytes that the native client read
    past; paho reads every message whole, and the pipeline refuses a payload too large."""
    if settings.transport == "paho":
        from ingestd.mqtt.paho import new_paho_client

        return new_paho_client(settings, on_publish, manual_ack)
    return NativeMqttClient(settings, on_publish, manual_ack, on_oversized)


def connection_errors_of(settings: MqttSettings) -> tuple[type[Exception], ...]:
    """What connecting or a lost connection raises, with the configured transport."""
    errors: tuple[type[Exception], ...] = (MqttConnectionError, OSError, socket.gaierror)
    if settings.transport == "paho":
        from ingestd.mqtt.paho import MqttError

        errors += (MqttError,)
    return errors
