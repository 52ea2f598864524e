"""What ingestd publishes and must get through: device events and alerts, at QoS 1 (and alerts
to a webhook: a second outbox, whose "topic" is the URL).

They are decided inline on the read path, which must never wait for the broker, so they go
into a bounded queue here, and one supervised task ("outbox") publishes them in order, each
until the broker acks it (PUBACK). A publication that fails (disconnected, refused, no ack in
time) is counted and retried after a backoff, never dropped for that; the queue holds
`max_pending` of them, and past that the oldest is dropped and counted (a broker away for
hours must not grow memory without bound). Nothing here blocks ingest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ingestd.backoff import backoff_delay
from ingestd.errors import DeliveryError
from ingestd.logs import get_logger

Publish = Callable[[str, bytes], Awaitable[None]]
Item = tuple[str, bytes, Callable[[], None] | None]


class Outbox:
    def __init__(self, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self._pending: deque[Item] = deque()
        self._waiting = asyncio.Event()
        self.published = 0
        self.failures = 0  # attempts that failed (each is retried)
        self.dropped = 0  # the oldest, past max_pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(
        self, topic: str, payload: bytes, on_published: Callable[[], None] | None = None
    ) -> None:
        """Queue a publication (inline, never blocks); `on_published` runs once the broker
        acked it."""
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
            get_logger().error("outbox_full", dropped_total=self.dropped, topic=topic)
        self._pending.append((topic, payload, on_published))
        self._waiting.set()

    async def run(self, publish: Publish, retry_min_s: float, retry_max_s: float) -> None:
        """Publish in order, forever (the service's "outbox" task)."""
        attempt = 0
        while True:
            if not self._pending:
                self._waiting.clear()
                await self._waiting.wait()
                continue
            item = self._pending[0]
            topic, payload, on_published = item
            try:
                await publish(topic, payload)
            except DeliveryError as exc:  # MqttConnectionError is one
                self.failures += 1
                delay = backoff_delay(attempt, retry_min_s, retry_max_s)
                attempt += 1
                get_logger().warning(
                    "publish_retried", topic=topic, error=str(exc)[:200], retry_in_s=delay
                )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if self._pending and self._pending[0] is item:  # not dropped meanwhile
                self._pending.popleft()
            self.published += 1
            if on_published is not None:
                on_published()
