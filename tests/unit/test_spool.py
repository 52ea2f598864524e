from __future__ import annotations

from pathlib import Path

import pytest

from ingestd.buffer import Batch, MemoryBuffer
from ingestd.records import RawMessage
from ingestd.spool import DiskSpool


def batch_of(tag: str, lines: int = 3) -> Batch:
    message = RawMessage(f"sensors/{tag}/t", f"payload-{tag}".encode(), 42)
    return Batch([f"m,d={tag} v={i} {i}" for i in range(lines)], [message] * lines)


def spool_at(path: Path, **kwargs: object) -> DiskSpool:
    options: dict[str, object] = {"max_bytes": 1 << 20, "segment_bytes": 400, "fsync": False}
    options.update(kwargs)
    return DiskSpool(path, **options)  # type: ignore[arg-type]


# -- one suite for both: take the oldest, keep puts it back, accept settles it -----------------


class MemoryAdapter:
    def __init__(self, _path: Path) -> None:
        self.buffer = MemoryBuffer(10_000)
        self.taken: Batch | None = None

    def add(self, batch: Batch) -> None:
        for message in batch.messages():
            self.buffer.put(
                [line for line, o in zip(batch.lines, batch.origins, strict=True) if o is message],
                message,
            )

    def take(self) -> Batch | None:
        if not self.buffer.waiting:
            return None
        self.taken = self.buffer.take(3)
        return self.taken

    def accept(self) -> None:
        assert self.taken is not None
        self.buffer.accept(self.taken)

    def keep(self) -> None:
        assert self.taken is not None
        self.buffer.keep(self.taken)


class SpoolAdapter:
    def __init__(self, path: Path) -> None:
        self.spool = spool_at(path)

    def add(self, batch: Batch) -> None:
        self.spool.append(batch)

    def take(self) -> Batch | None:
        taken = self.spool.take()
        return None if taken is None else taken[0]

    def accept(self) -> None:
        self.spool.accept()

    def keep(self) -> None:
        self.spool.keep()


@pytest.fixture(params=[MemoryAdapter, SpoolAdapter], ids=["memory", "spool"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MemoryAdapter | SpoolAdapter:
    return request.param(tmp_path)  # type: ignore[no-any-return]


def test_batches_come_out_oldest_first_and_keep_puts_one_back(
    store: MemoryAdapter | SpoolAdapter,
) -> None:
    for tag in ("a", "b", "c"):
        store.add(batch_of(tag))
    first = store.take()
    assert first is not None and first.lines[0].startswith("m,d=a")
    store.keep()
    again = store.take()
    assert again is not None and again.lines == first.lines
    assert [m.topic for m in again.messages()] == ["sensors/a/t"]
    store.accept()
    rest = []
    while (taken := store.take()) is not None:
        rest.append(taken.lines[0].split()[0])
        store.accept()
    assert rest == ["m,d=b", "m,d=c"]


# -- the spool alone: restarts, torn and corrupt records ----------------------------------------


def test_spooled_batches_survive_a_restart_and_replay_resumes_after_the_cursor(
    tmp_path: Path,
) -> None:
    spool = spool_at(tmp_path)
    for tag in ("a", "b", "c", "d"):
        spool.append(batch_of(tag))
    assert spool.take() is not None
    spool.accept()  # "a" is settled
    reopened = spool_at(tmp_path)
    seen = []
    while (taken := reopened.take()) is not None:
        seen.append(taken[0].lines[0].split()[0])
        assert taken[0].origins[0].payload.startswith(b"payload-")
        reopened.accept()
    assert seen == ["m,d=b", "m,d=c", "m,d=d"]
    assert list(tmp_path.glob("*.seg")) == [tmp_path / f"{reopened._write_segment:010d}.seg"]


def test_a_torn_tail_is_cut_counted_and_the_rest_replayed(tmp_path: Path) -> None:
    spool = spool_at(tmp_path, segment_bytes=1 << 20)
    spool.append(batch_of("a"))
    spool.append(batch_of("b"))
    segment = next(tmp_path.glob("*.seg"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # power lost in the middle of writing "b"
    reopened = spool_at(tmp_path, segment_bytes=1 << 20)
    assert reopened.stats.corrupt_records == 1
    taken = reopened.take()
    assert taken is not None and taken[0].lines[0].startswith("m,d=a")
    reopened.accept()
    reopened.append(batch_of("c"))  # appends after the cut stay readable
    taken = reopened.take()
    assert taken is not None and taken[0].lines[0].startswith("m,d=c")


def test_a_corrupt_record_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = spool_at(tmp_path, segment_bytes=1 << 20)
    for tag in ("a", "b", "c"):
        spool.append(batch_of(tag))
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    second = data.find(b"IGSP", 4)
    data[second + 20] ^= 0xFF  # a flipped bit inside "b"
    segment.write_bytes(bytes(data))
    reopened = spool_at(tmp_path, segment_bytes=1 << 20)
    seen = []
    while (taken := reopened.take()) is not None:
        seen.append(taken[0].lines[0].split()[0])
        reopened.accept()
    assert seen == ["m,d=a", "m,d=c"]
    assert reopened.stats.corrupt_records == 1


def test_size_accounting_and_drop_oldest(tmp_path: Path) -> None:
    spool = spool_at(tmp_path)
    written = spool.append(batch_of("a")) + spool.append(batch_of("b"))
    assert spool.size_bytes == written
    assert not spool.has_room(spool.max_bytes)
    dropped = spool.drop_oldest()
    assert dropped is not None and dropped.lines[0].startswith("m,d=a")
    taken = spool.take()
    assert taken is not None and taken[0].lines[0].startswith("m,d=b")


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


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_the_full_spool_policies(tmp_path: Path, policy: str) -> None:
    from ingestd.config import parse_settings
    from ingestd.flush import Flusher
    from ingestd.sink import InfluxSink
    from ingestd.telemetry import Telemetry

    settings = parse_settings(
        {"influx": {"api": "v1", "database": "d"}, "spool": {"on_full": policy}}
    )
    spool = spool_at(tmp_path / "spool", segment_bytes=1 << 20)
    spool.append(batch_of("old"))
    spool.max_bytes = spool.size_bytes + 100  # no room for a second batch beside the first
    buffer = MemoryBuffer(100)
    acked: list[RawMessage] = []
    telemetry = Telemetry()
    flusher = Flusher(
        settings=settings,
        buffer=buffer,
        sink=InfluxSink(settings.influx),
        spool=spool,
        telemetry=telemetry,
        reject=lambda *a, **k: None,
        ack=acked.extend,
        flush_dead_letters=lambda: None,
    )
    new = RawMessage("sensors/new/t", b"1", 1, mid=9, qos=1)
    buffer.put(["m,d=new v=1 1"] * 3, new)
    batch = buffer.take(10)
    settled = flusher.spool_batch(batch)
    remaining = []
    while (taken := spool.take()) is not None:
        remaining.append(taken[0].messages()[0].topic)
        spool.accept()
    if policy == "block":
        assert not settled and acked == [] and remaining == ["sensors/old/t"]
    elif policy == "drop_oldest":
        assert settled and acked == [new] and remaining == ["sensors/new/t"]
        assert telemetry.dropped == {"spool_full": 1}
    else:
        assert settled and acked == [new] and remaining == ["sensors/old/t"]
        assert telemetry.dropped == {"spool_full": 1}
