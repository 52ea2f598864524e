"""Fakes of the service's seams (`sink.Sink`, `source.Source`), for unit tests and fault
injection: the service runs against them exactly as against MQTT and InfluxDB.

    service = Service(settings, sink=FakeSink, source=FakeSource.feeding(messages))
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ingestd.config import InfluxSettings, MqttSettings
from ingestd.errors import RetryableSinkError
from ingestd.records import RawMessage, Rejection, WriteProgress
from ingestd.source import SourceFactory, SourceHooks
from ingestd.telemetry import Telemetry


class FakeSink:
    """A database in memory. Lines holding `refuse_marker` are refused one by one, as the
    real sink's bisection would; `fail_writes` writes in a row raise RetryableSinkError."""

    def __init__(self, settings: InfluxSettings | None = None, refuse_marker: str = "BAD") -> None:
        self.settings = settings
        self.refuse_marker = refuse_marker
        self.stored: list[str] = []
        self.fail_writes = 0
        self.writes = 0
        self.is_open = False
        self.held_types: dict[tuple[str, str], str] = {}  # what SHOW FIELD KEYS would answer

    async def open(self) -> None:
        self.is_open = True

    async def close(self) -> None:
        self.is_open = False

    async def prepare(self) -> str:
        return "fake: ready"

    async def field_types(self) -> dict[tuple[str, str], str]:
        return dict(self.held_types)

    async def write(self, lines: list[str], resume: WriteProgress | None = None) -> list[Rejection]:
        self.writes += 1
        await asyncio.sleep(0)  # a real write yields to the loop
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise RetryableSinkError("fake: the database is down", None, resume)
        refused = [
            Rejection(i, "fake: refused")
            for i, line in enumerate(lines)
            if self.refuse_marker in line
        ]
        bad = {r.index for r in refused}
        self.stored.extend(line for i, line in enumerate(lines) if i not in bad)
        return refused


class FakeSource:
    """Delivers `messages` through the hooks, as fast as the buffer takes them (it waits for
    space when the buffer says it is full), then idles until `stop`. Records what is acked."""

    def __init__(
        self,
        settings: MqttSettings,
        hooks: SourceHooks,
        telemetry: Telemetry,
        messages: Iterable[RawMessage] = (),
    ) -> None:
        self.settings = settings
        self.hooks = hooks
        self.telemetry = telemetry
        self.messages = list(messages)
        self.acked: list[RawMessage] = []
        self.published: list[tuple[str, bytes]] = []
        self.delivered = 0
        self._unacked: dict[int, int] = {}
        self._intake_closed = False
        self._stop = asyncio.Event()

    @staticmethod
    def feeding(messages: Iterable[RawMessage]) -> SourceFactory:
        """A factory for `Service(source=...)` that delivers these messages."""
        script = list(messages)
        return lambda settings, hooks, telemetry: FakeSource(settings, hooks, telemetry, script)

    async def run(self) -> None:
        self.telemetry.mqtt_connected = True
        for message in self.messages:
            if self._intake_closed:
                break
            if message.mid:
                self._unacked[message.mid] = message.received_ns
            self.hooks.handle(message)
            self.delivered += 1
            if self.hooks.buffer_full():
                await self.hooks.wait_for_space()
        await self._stop.wait()
        self.telemetry.mqtt_connected = False

    def ack(self, messages: list[RawMessage]) -> None:
        for message in messages:
            if message.mid and self._unacked.pop(message.mid, None) is not None:
                self.acked.append(message)

    def oldest_unacked_ns(self) -> int | None:
        return min(self._unacked.values(), default=None)

    def close_intake(self) -> None:
        self._intake_closed = True

    def stop(self) -> None:
        self._stop.set()

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True

    async def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))
