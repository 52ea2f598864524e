"""A stall cannot hide: when stored messages wait for their ack longer than mqtt.ack_overdue_s
while the database takes writes, ingestd logs an error, counts it and turns /readyz false.

This is the watchdog that would have shown the CONNACK race (messages stored, never acked) in
production. The race itself is fixed, so the acks are withheld here at the flusher's ack seam:
fault injection, against a real Mosquitto and a real InfluxDB."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ingestd.config import Settings
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import ROUTES, TOPICS, publish, workload
from ingestd.records import RawMessage
from ingestd.service import Service
from ingestd.source import MqttSource

pytestmark = pytest.mark.integration


def settings_for(tmp_path: Path, broker: Mosquitto, db: InfluxDB1) -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"port": broker.port, "topics": TOPICS, "client_id": "watchdog", "qos": 1},
            "influx": {**db.influx_settings(), "timeout_s": 1.0},
            "batch": {"flush_interval_s": 0.2},
            "deadletter": {"path": str(tmp_path / "dl.jsonl")},
            "spool": {"enabled": False},
            "http": {"port": 0},
            "self_metrics": {"interval_s": 0},
            "routes": ROUTES,
        }
    )


async def wait_for(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("withheld", [True, False])
async def test_acks_withheld_turn_readyz_false_and_log_an_error_within_the_bound(
    withheld: bool, tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    settings = settings_for(tmp_path, mosquitto, influxdb1)
    bound_s = settings.ack_overdue_s
    assert bound_s == pytest.approx(2 * (0.2 + 1.0))  # the documented default
    service = Service(settings)
    if withheld:
        service.flusher.ack = lambda _messages: None  # stored, never acked: the stall
    stored_at: list[float] = []
    written = service.flusher._written

    def note_written(*args: Any) -> None:
        written(*args)
        stored_at.append(time.time())

    service.flusher._written = note_written  # type: ignore[method-assign,assignment]
    with capture_logs() as logs:
        run = asyncio.create_task(service.run())
        assert await wait_for(lambda: service.telemetry.mqtt_connected, 10)
        messages = workload(10, bad_ratio=0)
        await asyncio.to_thread(publish, messages, "127.0.0.1", mosquitto.port)
        assert await wait_for(lambda: service.telemetry.points_written == 10, 10)
        overdue = await wait_for(lambda: service.telemetry.ack_stalls > 0, bound_s + 3)
        ready, why = service._ready()
        service.request_stop()
        await asyncio.wait_for(run, 30)
    stalls = [e for e in logs if e["event"] == "mqtt_acks_overdue"]
    if withheld:
        assert overdue and not ready and "ack" in why
        assert len(stalls) == 1 and stalls[0]["log_level"] == "error"
        assert stalls[0]["oldest_waited_s"] > bound_s  # never before the bound
    else:  # acked as usual: no false alarm over the same time
        assert not overdue and ready and stalls == []
    assert stored_at  # the batch was written, so the database was taking writes


def test_a_database_outage_is_not_a_stall(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Messages wait for their ack while the database is down, and for a while after it is
    back; the bound counts from when it became writable again."""
    settings = settings_for(tmp_path, mosquitto, InfluxDB1(tmp_path))
    service = Service(settings)
    now = time.time_ns()
    assert isinstance(service.source, MqttSource)
    service.source._unacked[1] = now - 60 * 10**9  # waited 60 s, through an outage
    service.flusher.outage = True
    service.check_acks(now)
    assert service.acks_overdue_since_ns is None
    service.flusher.outage = False  # writable again, from now
    service.check_acks(time.time_ns())
    assert service.acks_overdue_since_ns is None
    service.check_acks(time.time_ns() + int((settings.ack_overdue_s + 1) * 1e9))
    assert service.acks_overdue_since_ns is not None
    assert service._ready() == (False, "mqtt not connected")
    service.telemetry.mqtt_connected = True
    assert not service._ready()[0]
    del service.source._unacked[1]
    service.check_acks(time.time_ns())
    assert service.acks_overdue_since_ns is None


def test_acks_clear_what_the_watchdog_waits_for() -> None:
    from ingestd.config import MqttSettings
    from ingestd.source import MqttSource, SourceHooks
    from ingestd.telemetry import Telemetry

    handled: list[RawMessage] = []

    async def never() -> None:
        return None

    hooks = SourceHooks(
        handled.append,
        lambda: False,
        never,
        handled.append,
        lambda _why: None,
        lambda *_oversized: None,
    )
    source = MqttSource(MqttSettings(), hooks, Telemetry())
    source._connection = 1
    for mid in (5, 6):
        source._deliver(b"sensors/d/t", b"1", 1, False, mid)
    oldest = source.oldest_unacked_ns()
    assert oldest == handled[0].received_ns

    acked: list[tuple[int, int]] = []

    class Client:
        def ack_many(self, acks: list[tuple[int, int]]) -> None:
            acked.extend(acks)

    source._client = Client()  # type: ignore[assignment]
    source.ack(handled[:1])
    assert source.oldest_unacked_ns() == handled[1].received_ns
    source.ack(handled[1:])
    assert source.oldest_unacked_ns() is None and acked == [(5, 1), (6, 1)]
