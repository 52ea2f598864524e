from __future__ import annotations

import asyncio

import paho.mqtt.client as paho
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.config import MqttSettings
from ingestd.records import RawMessage
from ingestd.source import MqttSource
from ingestd.telemetry import Telemetry


def source_into(handled: list[RawMessage], invalid: list[RawMessage]) -> MqttSource:
    async def never() -> None:
        await asyncio.sleep(0)

    source = MqttSource(MqttSettings(), handled.append, lambda: False, never, Telemetry())
    source.invalid_topic = invalid.append
    return source


def paho_message(topic: bytes, payload: bytes, qos: int = 0) -> paho.MQTTMessage:
    message = paho.MQTTMessage(mid=7, topic=topic)
    message.payload = payload
    message.qos = qos
    return message


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=40), st.binary(max_size=100))
def test_any_topic_bytes_are_handled_or_dead_lettered_as_invalid_topic(
    topic: bytes, payload: bytes
) -> None:
    handled: list[RawMessage] = []
    invalid: list[RawMessage] = []
    source_into(handled, invalid)._on_message(paho_message(topic, payload))
    try:
        text = topic.decode("utf-8")
    except UnicodeDecodeError:
        assert handled == [] and len(invalid) == 1 and invalid[0].payload == payload
    else:
        assert invalid == [] and handled[0].topic == text and handled[0].payload == payload


def test_qos1_messages_carry_what_acking_them_takes() -> None:
    handled: list[RawMessage] = []
    source = source_into(handled, [])
    source._on_message(paho_message(b"sensors/d/t", b"1", qos=1))
    assert (handled[0].mid, handled[0].qos) == (7, 1)
