"""The composition root, driven through the fakes shipped in ingestd.devtools.fakes."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ingestd.config import Settings, parse_settings
from ingestd.devtools.fakes import FakeSink, FakeSource
from ingestd.logs import configure_logging
from ingestd.records import RawMessage
from ingestd.service import Service, run_service

MESSAGES = [
    RawMessage(
        f"sensors/dev-{i}/temperature", f'{{"v": {i}}}'.encode(), 10**18 + i, mid=i + 1, qos=1
    )
    for i in range(50)
]


def settings_in(tmp_path: Path) -> Settings:
    return parse_settings(
        {
            "influx": {"api": "v2", "bucket": "b"},
            "mqtt": {"topics": ["sensors/#"], "qos": 1},
            "batch": {"max_lines": 10, "flush_interval_s": 0.01},
            "deadletter": {"path": str(tmp_path / "dl.jsonl")},
            "state": {"path": str(tmp_path / "state")},
            "spool": {"path": str(tmp_path / "spool"), "fsync": False},
            "self_metrics": {"interval_s": 0.01},
            "events": {"enabled": True},
            "http": {"enabled": False},
            "routes": [{"topic": "sensors/{device}/{measurement}"}],
        }
    )


def service_in(tmp_path: Path) -> Service:
    return Service(settings_in(tmp_path), sink=FakeSink, source=FakeSource.feeding(MESSAGES))


async def run_until_stored(service: Service, lines: int) -> None:
    """Run the service until its fake sink holds `lines` lines, then stop it in order."""
    running = asyncio.create_task(service.run())
    async with asyncio.timeout(10):
        while len(service.sink.stored) < lines:  # type: ignore[attr-defined]  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    service.request_stop()
    await asyncio.wait_for(running, 10)


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The service's log as JSON objects, as `ingestd --config` writes it."""
    saved = structlog.get_config()
    stream = io.StringIO()
    configure_logging("json", "info")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    structlog.configure(**saved)


async def test_the_service_writes_and_acks_every_message_through_the_fakes(
    tmp_path: Path,
) -> None:
    service = service_in(tmp_path)
    await run_until_stored(service, len(MESSAGES))
    assert not service.failed
    assert sorted(service.source.acked) == sorted(MESSAGES)  # type: ignore[attr-defined]


# Each task and what it runs: every one of them is supervised (the test below checks that this
# list is all the service starts).
TASKS: dict[str, Callable[[Service], tuple[object, str]]] = {
    "ingest": lambda s: (s.source, "run"),
    "flush": lambda s: (s.flusher, "run"),
    "spool-replay": lambda s: (s.flusher, "replay_forever"),
    "deadletter-flush": lambda s: (s.dead_letters, "flush_every"),
    "self-metrics": lambda s: (s.self_metrics, "run"),
    "ack-watchdog": lambda s: (s, "_watch_acks"),
    "state-save": lambda s: (s, "_save_learned_state"),
    "outbox": lambda s: (s.outbox, "run"),
}


def kill(service: Service, name: str, how: str) -> None:
    """Make task `name` die once the service is running: of an error, or by returning."""
    owner, attribute = TASKS[name](service)
    original = getattr(owner, attribute)

    async def dies(*args: object) -> None:
        await asyncio.sleep(0.05)  # let the others start
        if how == "error":
            raise RuntimeError(f"injected failure of {name}")
        if name == "flush":  # returning early must not lose what the flusher would have drained
            await original(*args)

    setattr(owner, attribute, dies)


@pytest.mark.parametrize("name", list(TASKS))
async def test_any_task_that_dies_stops_the_service_with_its_traceback_and_fails_it(
    tmp_path: Path, name: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    service = service_in(tmp_path)
    kill(service, name, "error")
    await asyncio.wait_for(service.run(), 20)
    assert set(service.tasks) == set(TASKS)
    assert service.failed
    failed = [line for line in log_lines() if line["event"] == "task_failed"]
    assert [line["task"] for line in failed] == [name]
    assert "Traceback" in failed[0]["exception"]
    assert f"RuntimeError: injected failure of {name}" in failed[0]["exception"]
    assert any(line["event"] == "ingestd_stopped" for line in log_lines())


@pytest.mark.parametrize("name", ["ingest", "ack-watchdog", "deadletter-flush"])
async def test_a_task_that_returns_before_shutdown_fails_the_service_too(
    tmp_path: Path, name: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    service = service_in(tmp_path)
    kill(service, name, "return")
    await asyncio.wait_for(service.run(), 20)
    assert service.failed
    reasons = [line["reason"] for line in log_lines() if line["event"] == "ingestd_cannot_continue"]
    assert reasons == [f"task {name} ended before shutdown"]


def test_a_dead_task_makes_the_daemon_exit_non_zero(tmp_path: Path) -> None:
    """Through the one run path the CLI and `ingestd local` use."""

    def with_a_dying_flusher(settings: Settings) -> Service:
        service = Service(settings, sink=FakeSink, source=FakeSource.feeding(MESSAGES))
        kill(service, "spool-replay", "error")
        return service

    saved = structlog.get_config()
    try:
        assert run_service(settings_in(tmp_path), with_a_dying_flusher) is True
    finally:
        structlog.configure(**saved)


@pytest.mark.parametrize(
    ("mqtt", "warned"),
    [
        ({"host": "broker.lan", "username": "u", "password_env": "HOME"}, True),
        ({"host": "broker.lan", "username": "u", "password_env": "HOME", "tls": True}, False),
        ({"host": "127.0.0.1", "username": "u", "password_env": "HOME"}, False),
        ({"host": "broker.lan"}, False),  # no password to leak
    ],
)
async def test_a_password_over_plaintext_mqtt_is_warned_about_at_startup(
    tmp_path: Path,
    mqtt: dict[str, Any],
    warned: bool,
    log_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    """Issue 12: a password sent in the clear to another host drew no word."""
    base = settings_in(tmp_path)
    settings = base.model_copy(update={"mqtt": base.mqtt.model_copy(update=mqtt)})
    service = Service(settings, sink=FakeSink, source=FakeSource.feeding([]))
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(service.started.wait(), 10)
    service.request_stop()
    await asyncio.wait_for(running, 10)
    events = [line["event"] for line in log_lines()]
    assert ("mqtt_password_in_plaintext" in events) == warned


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (ENOSPC on write)")
async def test_a_dead_letter_that_cannot_be_written_is_not_acked(tmp_path: Path) -> None:
    """Before, a message was acked once its dead letter was handed to the file, whether or not
    the write succeeded: with the disk full the letter was lost, and so was the message, since
    the broker had let it go. Now only messages whose letters reached the OS are acked, both
    those the pipeline refuses and those whose line the database refuses."""
    good = [
        RawMessage(f"sensors/d{i}/t", b'{"v": 1}', 10**18 + i, mid=i + 1, qos=1) for i in range(3)
    ]
    unparsable = RawMessage("sensors/d9/t", b"{not json", 10**18 + 9, mid=10, qos=1)
    refused = RawMessage("sensors/BAD/t", b'{"v": 2}', 10**18 + 8, mid=11, qos=1)
    messages = [good[0], unparsable, good[1], refused, good[2]]
    settings = settings_in(tmp_path)
    full = settings.model_copy(
        update={"deadletter": settings.deadletter.model_copy(update={"path": Path("/dev/full")})}
    )
    service = Service(full, sink=FakeSink, source=FakeSource.feeding(messages))
    await run_until_stored(service, len(good))
    assert sorted(m.mid for m in service.source.acked) == [1, 2, 3]  # type: ignore[attr-defined]
