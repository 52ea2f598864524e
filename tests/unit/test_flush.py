"""The flusher and the spool replay: one write-and-retry, and what a full spool does to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ingestd.buffer import Batch, MemoryBuffer
from ingestd.config import Settings, parse_settings
from ingestd.flush import Flusher
from ingestd.records import RawMessage
from ingestd.sink import InfluxSink
from ingestd.spool import DiskSpool
from ingestd.telemetry import Telemetry

from .fakedb import fake_database


def batch_of(tag: str, lines: int = 4) -> Batch:
    message = RawMessage(f"sensors/{tag}/t", tag.encode(), 1)
    return Batch([f"m,d={tag} v={i} {i + 1}" for i in range(lines)], [message] * lines)


def flusher_for(
    settings: Settings,
    buffer: MemoryBuffer,
    spool: DiskSpool,
    telemetry: Telemetry,
    acked: list[RawMessage],
) -> Flusher:
    return Flusher(
        settings=settings,
        buffer=buffer,
        sink=InfluxSink(settings.influx),
        spool=spool,
        telemetry=telemetry,
        reject=lambda *a, **k: None,
        ack=acked.extend,
        flush_dead_letters=lambda: True,
    )


async def test_a_batch_dropped_while_its_replay_waits_is_not_written_nor_its_progress_reused(
    tmp_path: Path,
) -> None:
    """The replay's write of "a" stops half-way through a bisection (the first half written,
    then 503). While it waits out the backoff, a full spool with on_full = "drop_oldest" drops
    "a". The replay must move on to "b" and write all of it: resuming "a"'s progress on "b"
    would skip b's first half, which the broker already has an ack for."""
    async with fake_database() as db:
        db.script = [(400, {}), (204, {}), (503, {})]  # whole "a" refused, half ok, then down
        settings = parse_settings(
            {
                "influx": {"url": db.url, "api": "v2", "bucket": "b"},
                "batch": {"retry_initial_s": 0.4, "retry_max_s": 0.4},
                "spool": {"path": str(tmp_path), "fsync": False, "on_full": "drop_oldest"},
            }
        )
        spool = DiskSpool(tmp_path, 1 << 20, 1 << 20, fsync=False)
        spool.store(batch_of("a"))
        spool.store(batch_of("b"))
        spool.max_bytes = spool.size_bytes  # room for exactly these two
        buffer = MemoryBuffer(100)
        telemetry = Telemetry()
        acked: list[RawMessage] = []
        flusher = flusher_for(settings, buffer, spool, telemetry, acked)
        replay = asyncio.create_task(flusher.replay_forever())
        try:
            async with asyncio.timeout(5):
                while len(db.requests) < 3:  # noqa: ASYNC110 - bounded by the timeout
                    await asyncio.sleep(0.01)
            assert flusher.outage
            c = batch_of("c")
            buffer.store(c)
            taken = buffer.take(100)
            assert taken is not None and flusher.spool_batch(taken)  # drops "a" to make room
            async with asyncio.timeout(5):
                while len(db.stored) < 8:  # noqa: ASYNC110 - bounded by the timeout
                    await asyncio.sleep(0.01)
        finally:
            replay.cancel()
            await flusher.sink.close()
    assert telemetry.dropped == {"spool_full": 1}
    assert sorted(db.stored) == sorted(batch_of("b").lines + batch_of("c").lines)
    assert not flusher.outage


async def test_the_flusher_spools_a_batch_the_database_will_not_take_and_acks_it(
    tmp_path: Path,
) -> None:
    async with fake_database() as db:
        db.script = [(503, {})]
        settings = parse_settings(
            {
                "influx": {"url": db.url, "api": "v2", "bucket": "b"},
                "batch": {"max_lines": 10, "flush_interval_s": 0.01},
                "spool": {"path": str(tmp_path), "fsync": False},
            }
        )
        spool = DiskSpool(tmp_path, 1 << 20, 1 << 20, fsync=False)
        buffer = MemoryBuffer(100)
        acked: list[RawMessage] = []
        flusher = flusher_for(settings, buffer, spool, Telemetry(), acked)
        a = batch_of("a")
        buffer.store(a)
        buffer.close_intake()
        async with asyncio.timeout(5):
            await flusher.run()
        await flusher.sink.close()
    assert acked == a.messages() and db.stored == []
    spooled = spool.take()
    assert spooled is not None and spooled.lines == a.lines


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_the_full_spool_policies_settle_or_keep_the_batch_and_count_drops(
    tmp_path: Path, policy: str
) -> None:
    settings = parse_settings(
        {"influx": {"api": "v1", "database": "d"}, "spool": {"on_full": policy}}
    )
    spool = DiskSpool(tmp_path / "spool", 1 << 20, 1 << 20, fsync=False)
    spool.store(batch_of("old", 3))
    spool.max_bytes = spool.size_bytes + 100  # no room for a second batch beside the first
    buffer = MemoryBuffer(100)
    acked: list[RawMessage] = []
    telemetry = Telemetry()
    flusher = flusher_for(settings, buffer, spool, telemetry, acked)
    new = RawMessage("sensors/new/t", b"1", 1, mid=9, qos=1)
    buffer.put(["m,d=new v=1 1"] * 3, new)
    batch = buffer.take(10)
    assert batch is not None
    settled = flusher.spool_batch(batch)
    remaining = []
    while (taken := spool.take()) is not None:
        remaining.append(taken.messages()[0].topic)
        spool.accept(taken)
    if policy == "block":
        assert not settled and acked == [] and remaining == ["sensors/old/t"]
    elif policy == "drop_oldest":
        assert settled and acked == [new] and remaining == ["sensors/new/t"]
        assert telemetry.dropped == {"spool_full": 1}
    else:
        assert settled and acked == [new] and remaining == ["sensors/old/t"]
        assert telemetry.dropped == {"spool_full": 1}


async def replay_until(flusher: Flusher, done: Callable[[], bool]) -> list[str]:
    """Run the spool replay until `done()` (5 s at most); the replay errors it showed meanwhile.
    The replay task must still be running at the end: an error never ends it."""
    errors_seen: list[str] = []
    replay = asyncio.create_task(flusher.replay_forever())
    try:
        async with asyncio.timeout(5):
            while not done():
                if flusher.replay_error:
                    errors_seen.append(flusher.replay_error)
                await asyncio.sleep(0.005)
        assert not replay.done()
    finally:
        replay.cancel()
        await flusher.sink.close()
    return errors_seen


def replay_set_up(url: str, spool_path: Path) -> tuple[Settings, DiskSpool]:
    """Settings with fast retries for a database at `url`, and the spool the replay reads."""
    settings = parse_settings(
        {
            "influx": {"url": url, "api": "v2", "bucket": "b"},
            "batch": {"retry_initial_s": 0.05, "retry_max_s": 0.05},
            "spool": {"path": str(spool_path), "fsync": False},
        }
    )
    return settings, DiskSpool(spool_path, 1 << 20, 1 << 20, fsync=False)


async def test_a_spool_the_disk_will_not_read_is_retried_not_the_end_of_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: an OSError from the spool (EIO, ENOSPC on the cursor) ended the replay task.
    Now it is logged, retried with backoff, and shown by replay_error (/readyz) meanwhile."""
    async with fake_database() as db:
        settings, spool = replay_set_up(db.url, tmp_path)
        spool.store(batch_of("a"))
        failures = [OSError(5, "Input/output error")] * 2
        real_take = spool.take

        def flaky_take(max_lines: int = 0) -> Batch | None:
            if failures:
                raise failures.pop()
            return real_take(max_lines)

        monkeypatch.setattr(spool, "take", flaky_take)
        flusher = flusher_for(settings, MemoryBuffer(100), spool, Telemetry(), [])
        errors_seen = await replay_until(flusher, lambda: len(db.stored) >= 4)
    assert errors_seen and "Input/output error" in errors_seen[0]
    assert flusher.replay_error is None
    assert sorted(db.stored) == sorted(batch_of("a").lines)


async def test_a_spooled_batch_whose_dead_letter_cannot_be_written_stays_in_the_spool(
    tmp_path: Path,
) -> None:
    """A spooled batch was acked when it was spooled: the spool is its only copy. Before, a
    line the database refused was dead-lettered and the batch deleted from the spool whether
    or not the letter was written (disk full: both lost). Now the batch stays, the replay
    reports the error (/readyz) and retries it after a backoff, until the letter is written."""
    async with fake_database() as db:
        settings, spool = replay_set_up(db.url, tmp_path)
        batch = batch_of("a")
        batch.lines[1] = "m,d=BAD v=1 2"
        spool.store(batch)
        disk_full = [True, True]
        letters: list[object] = []
        flusher = Flusher(
            settings=settings,
            buffer=MemoryBuffer(100),
            sink=InfluxSink(settings.influx),
            spool=spool,
            telemetry=Telemetry(),
            reject=lambda *a, **k: letters.append(a),
            ack=lambda _messages: None,
            flush_dead_letters=lambda: not (disk_full and disk_full.pop()),
        )
        errors_seen = await replay_until(flusher, lambda: not (spool.size_bytes or disk_full))
    assert errors_seen and "dead letter" in errors_seen[0]
    assert len(letters) == 3  # refused on each of three tries, and written on the third
