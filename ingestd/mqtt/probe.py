"""`ingestd check --connect`: how many unacked QoS 1 messages the broker sends ingestd at once.

Why: with acks after storage, ingestd commits a write as soon as `mqtt.max_inflight` messages
wait for their ack. If the broker's in-flight window is smaller (Mosquitto's
max_inflight_messages), the broker stops sending before ingestd writes, and every batch waits
out `batch.flush_interval_s`: a throughput cap nobody sees. On MQTT 5 ingestd sends
max_inflight as Receive Maximum, and this measures whether the broker honours it.

How: a subscriber that never acks, on a clean session with a topic of its own; a publisher
sends it more QoS 1 messages than any window; the number that arrive before the stream stops
is the window. Both sessions end with the probe, and the broker discards what they held.
"""

from __future__ import annotations

import asyncio
import os
import time

from ingestd.config import MqttSettings
from ingestd.mqtt.native import NativeMqttClient

SETTLE_S = 0.5  # no message for this long: the broker waits for acks
TIMEOUT_S = 10.0


async def inflight_window(settings: MqttSettings) -> tuple[int, int]:
    """(messages that arrived unacked, messages sent): equal means no window below that."""
    tag = f"{settings.client_id}-window-{os.getpid()}"
    topic = f"ingestd/check/{tag}"
    arrived = 0
    last_arrival = time.monotonic()

    def on_publish(name: bytes, _payload: bytes, qos: int, _retain: bool, _mid: int) -> None:
        nonlocal arrived, last_arrival
        if qos and name == topic.encode():
            arrived += 1
            last_arrival = time.monotonic()

    quiet = {"clean_session": True, "topics": [topic], "qos": 1}
    receiver = NativeMqttClient(
        settings.model_copy(update={**quiet, "client_id": tag}),
        on_publish,
        True,  # manual ack, and never acked
        lambda _oversized: None,
    )
    sender = NativeMqttClient(
        settings.model_copy(update={**quiet, "client_id": f"{tag}-load"}),
        lambda *_message: None,
        False,
        lambda _oversized: None,
    )
    sent = min(max(4 * settings.max_inflight, 200), 60_000)
    async with receiver:
        await receiver.subscribe([(topic, 1)])
        async with sender:
            for _ in range(sent):
                sender.publish_qos1_nowait(topic, b"window probe")
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                await asyncio.sleep(SETTLE_S / 5)
                if arrived and time.monotonic() - last_arrival > SETTLE_S:
                    break
    return arrived, sent
