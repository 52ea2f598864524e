from __future__ import annotations

from pathlib import Path

import pytest

from ingestd.buffer import Batch
from ingestd.errors import IngestdError
from ingestd.records import RawMessage
from ingestd.spool import DiskSpool


def batch_of(tag: str, lines: int = 3) -> Batch:
    message = RawMessage(f"sensors/{tag}/t", f"payload-{tag}".encode(), 42)
    return Batch([f"m,d={tag} v={i} {i}" for i in range(lines)], [message] * lines)


def spool_at(path: Path, **kwargs: object) -> DiskSpool:
    options: dict[str, object] = {"max_bytes": 1 << 20, "segment_bytes": 400, "fsync": False}
    options.update(kwargs)
    return DiskSpool(path, **options)  # type: ignore[arg-type]


def replay_all(spool: DiskSpool) -> list[str]:
    """Take and accept everything, in order: each batch's first series (bounded by the spool)."""
    seen = []
    while (taken := spool.take()) is not None:
        seen.append(taken.lines[0].split()[0])
        spool.accept(taken)
    return seen


# The behaviour both buffers share is tested once, against both, in test_buffer.py.
# -- the spool alone: the cursor, torn and corrupt records, the open transaction ------------------


def test_spooled_batches_survive_a_restart_and_replay_resumes_after_the_cursor(
    tmp_path: Path,
) -> None:
    spool = spool_at(tmp_path)
    for tag in ("a", "b", "c", "d"):
        assert spool.store(batch_of(tag))
    taken = spool.take()
    assert taken is not None
    spool.accept(taken)  # "a" is settled
    spool.close()  # the process ends, and its lock with it
    reopened = spool_at(tmp_path)
    seen = []
    while (taken := reopened.take()) is not None:
        seen.append(taken.lines[0].split()[0])
        assert taken.origins[0].payload.startswith(b"payload-")
        reopened.accept(taken)
    assert seen == ["m,d=b", "m,d=c", "m,d=d"]
    assert list(tmp_path.glob("*.seg")) == [tmp_path / f"{reopened._write_segment:010d}.seg"]


def test_a_torn_tail_is_cut_counted_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = spool_at(tmp_path, segment_bytes=1 << 20)
    spool.store(batch_of("a"))
    spool.store(batch_of("b"))
    segment = next(tmp_path.glob("*.seg"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # power lost in the middle of writing "b"
    spool.close()  # the process ends, and its lock with it
    reopened = spool_at(tmp_path, segment_bytes=1 << 20)
    assert reopened.stats.corrupt_records == 1
    taken = reopened.take()
    assert taken is not None and taken.lines[0].startswith("m,d=a")
    reopened.accept(taken)
    reopened.store(batch_of("c"))  # appends after the cut stay readable
    taken = reopened.take()
    assert taken is not None and taken.lines[0].startswith("m,d=c")


def test_a_corrupt_record_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = spool_at(tmp_path, segment_bytes=1 << 20)
    for tag in ("a", "b", "c"):
        spool.store(batch_of(tag))
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    second = data.find(b"IGSP", 4)
    data[second + 20] ^= 0xFF  # a flipped bit inside "b"
    segment.write_bytes(bytes(data))
    spool.close()  # the process ends, and its lock with it
    reopened = spool_at(tmp_path, segment_bytes=1 << 20)
    assert replay_all(reopened) == ["m,d=a", "m,d=c"]
    assert reopened.stats.corrupt_records == 1


def test_size_accounting_counts_what_replay_has_not_passed(tmp_path: Path) -> None:
    spool = spool_at(tmp_path)
    spool.store(batch_of("a"))
    one = spool.size_bytes
    spool.store(batch_of("b"))
    assert spool.size_bytes == 2 * one
    taken = spool.take()
    assert taken is not None
    spool.accept(taken)
    assert spool.size_bytes == one


def test_drop_oldest_voids_the_open_transaction_so_settling_it_drops_nothing_else(
    tmp_path: Path,
) -> None:
    """The replay holds the oldest batch open while it waits out a failed write; when a full
    spool drops that batch meanwhile, the replay must see it gone, and its accept must not
    move the cursor past the next batch."""
    spool = spool_at(tmp_path)
    for tag in ("a", "b"):
        spool.store(batch_of(tag))
    open_batch = spool.take()
    assert open_batch is not None and spool.holds(open_batch)
    dropped = spool.drop_oldest()
    assert dropped is not None and dropped.lines == open_batch.lines
    assert not spool.holds(open_batch)
    spool.accept(open_batch)
    left = spool.take()
    assert left is not None and left.lines[0].startswith("m,d=b")


def test_a_stored_batch_remembers_when_it_was_stored(tmp_path: Path) -> None:
    import time

    before = time.time_ns()
    spool = spool_at(tmp_path)
    spool.store(batch_of("a"))
    spool.close()
    taken = spool_at(tmp_path).take()
    assert taken is not None and before <= taken.stored_ns <= time.time_ns()


async def test_a_database_slower_than_ingest_overflows_to_the_spool_not_to_the_broker(
    tmp_path: Path,
) -> None:
    import asyncio

    from ingestd.config import parse_settings
    from ingestd.service import Service

    from .fakedb import fake_database

    async with fake_database() as db:
        db.delay_s = 0.2
        settings = parse_settings(
            {
                "influx": {"url": db.url, "api": "v2", "bucket": "b"},
                "mqtt": {"topics": ["#"], "qos": 0},
                "batch": {"max_lines": 100, "buffer_max_lines": 300, "flush_interval_s": 0.05},
                "deadletter": {"path": str(tmp_path / "dl.jsonl")},
                "spool": {"path": str(tmp_path / "spool"), "fsync": False},
                "routes": [{"topic": "s/{device}/{measurement}"}],
            }
        )
        service = Service(settings)
        flush = asyncio.create_task(service.flusher.run())
        replay = asyncio.create_task(service.flusher.replay_forever())
        paused = 0
        for i in range(3000):  # far faster than 100 lines per 0.2 s
            service.pipeline.handle(
                RawMessage(f"s/d{i % 7}/t", f'{{"v": {i}, "ts": {i + 1}}}'.encode(), 1)
            )
            paused += service._buffer_full()
        assert paused == 0  # reading never had to stop
        assert service.telemetry.points_spooled > 0
        deadline = asyncio.get_running_loop().time() + 30
        while len(db.stored) < 3000 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        service.buffer.close_intake()
        await asyncio.wait_for(flush, 10)
        replay.cancel()
        await service.sink.close()
        service.dead_letters.close()
    assert len(db.stored) == 3000


def test_a_crafted_record_with_a_valid_checksum_cannot_make_replay_allocate(tmp_path: Path) -> None:
    """Issue 12: a record claiming 10**12 lines for one message made replay build a list of a
    trillion origins (MemoryError: the replay task died). Now it is a corrupt record, skipped."""
    import struct
    import zlib

    import orjson

    spool = spool_at(tmp_path, segment_bytes=1 << 20)
    spool.store(batch_of("a"))
    body = orjson.dumps({"written_ns": 1, "lines": ["m v=1 1"], "messages": [["t", "", 1, 10**12]]})
    with next(tmp_path.glob("*.seg")).open("ab") as segment:
        segment.write(struct.pack(">4sII", b"IGSP", len(body), zlib.crc32(body)) + body)
    spool.store(batch_of("c"))
    spool.close()  # the process ends, and its lock with it
    reopened = spool_at(tmp_path, segment_bytes=1 << 20)
    assert replay_all(reopened) == ["m,d=a", "m,d=c"]
    assert reopened.stats.corrupt_records == 1


def test_a_spool_in_use_by_another_ingestd_is_refused_until_it_closes(tmp_path: Path) -> None:
    """Before, two ingestd on one spool.path replayed and deleted each other's batches."""
    first = spool_at(tmp_path)
    with pytest.raises(IngestdError, match="in use by another ingestd"):
        spool_at(tmp_path)
    first.close()
    spool_at(tmp_path).close()
