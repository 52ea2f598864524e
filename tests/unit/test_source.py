from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.config import MqttSettings
from ingestd.records import RawMessage
from ingestd.source import MqttSource, SourceHooks
from ingestd.telemetry import Telemetry


def source_into(
    handled: list[RawMessage], invalid: list[RawMessage], ack: str = "after_write"
) -> MqttSource:
    async def never() -> None:
        await asyncio.sleep(0)

    settings = MqttSettings(ack=ack)
    hooks = SourceHooks(
        handled.append,
        lambda: False,
        never,
        invalid.append,
        lambda _why: None,
        lambda *_oversized: None,
    )
    return MqttSource(settings, hooks, Telemetry())


@settings(max_examples=200)
@given(
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5), st.binary(max_size=100)
)
def test_any_topic_bytes_are_handled_or_dead_lettered_as_invalid_topic(
    topics: list[bytes], payload: bytes
) -> None:
    handled: list[RawMessage] = []
    invalid: list[RawMessage] = []
    source = source_into(handled, invalid)
    for topic in topics * 2:  # the second time through the topic cache
        source._deliver(topic, payload, 0, False, 0)
    good = []
    for topic in topics * 2:
        with contextlib.suppress(UnicodeDecodeError):
            good.append(topic.decode("utf-8"))
    assert [m.topic for m in handled] == good
    assert len(invalid) == 2 * len(topics) - len(good)
    assert all(m.payload == payload for m in handled + invalid)


def test_qos1_messages_carry_what_acking_them_takes() -> None:
    handled: list[RawMessage] = []
    source_into(handled, [])._deliver(b"sensors/d/t", b"1", 1, False, 7)
    assert (handled[0].mid, handled[0].qos) == (7, 1)


def test_acked_on_receipt_messages_carry_nothing_to_ack() -> None:
    handled: list[RawMessage] = []
    source_into(handled, [], ack="on_receipt")._deliver(b"sensors/d/t", b"1", 1, True, 7)
    assert (handled[0].mid, handled[0].retain) == (0, True)
