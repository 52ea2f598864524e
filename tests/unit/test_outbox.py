"""The outbox of events and alerts: in order, each until the broker acked it, retried after a
failure, bounded (the oldest dropped and counted), and never blocking whoever puts."""

from __future__ import annotations

import asyncio

from ingestd.errors import MqttConnectionError
from ingestd.outbox import Outbox


async def test_publications_go_in_order_and_a_failure_is_retried_not_lost() -> None:
    outbox = Outbox()
    sent: list[str] = []
    failures = [MqttConnectionError("not connected")] * 2
    acked: list[str] = []

    async def publish(topic: str, payload: bytes) -> None:
        if failures:
            raise failures.pop()
        sent.append(payload.decode())

    for i in range(3):
        outbox.put("t", str(i).encode(), lambda i=i: acked.append(str(i)))  # type: ignore[misc]
    task = asyncio.create_task(outbox.run(publish, 0.001, 0.002))
    async with asyncio.timeout(5):
        while len(sent) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    task.cancel()
    assert sent == ["0", "1", "2"] and acked == sent
    assert (outbox.published, outbox.failures, outbox.dropped, outbox.pending) == (3, 2, 0, 0)


def test_a_full_outbox_drops_the_oldest_and_counts_it() -> None:
    outbox = Outbox(max_pending=2)
    for i in range(5):
        outbox.put("t", str(i).encode())
    assert outbox.pending == 2 and outbox.dropped == 3
