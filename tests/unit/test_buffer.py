from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingestd.buffer import Batch, Buffer, BufferClosed, MemoryBuffer, store_or_drop
from ingestd.records import RawMessage
from ingestd.spool import DiskSpool

MSG = RawMessage("t", b"p", 1)

# -- one suite for every Buffer: the memory buffer and the disk spool ---------------------------
# (in the manner of Telegraf's BufferSuiteTest: ordering, keep and retry, settling refused lines,
# the full policies, restart)

LINES_PER_BATCH = 3


def batch_of(tag: str, messages: int = 1) -> Batch:
    """LINES_PER_BATCH lines from `messages` messages (whose lines are contiguous)."""
    batch = Batch()
    for i in range(LINES_PER_BATCH):
        n = i * messages // LINES_PER_BATCH
        if not batch.origins or batch.origins[-1].topic != f"sensors/{tag}/{n}":
            origin = RawMessage(f"sensors/{tag}/{n}", f"payload-{tag}-{n}".encode(), 42 + n)
        batch.lines.append(f"m,d={tag} v={i} {i}")
        batch.origins.append(origin)
    return batch


@dataclass
class Kind:
    """How to make one kind of buffer with room for `batches` batches, and how to reopen it
    as a restart would; `durable` says whether what it held survives that."""

    make: Callable[[Path, int], Buffer]
    reopen: Callable[[Path, int], Buffer]
    durable: bool


def _spool(path: Path, batches: int) -> DiskSpool:
    probe = DiskSpool(path / "probe", 1 << 20, 1 << 20, fsync=False)
    probe.store(batch_of("x"))  # the record size of one batch, as `store` counts it
    room = probe.size_bytes * batches
    return DiskSpool(path / "spool", room, 1 << 20, fsync=False)


KINDS = {
    "memory": Kind(
        lambda _p, n: MemoryBuffer(LINES_PER_BATCH * n),
        lambda _p, n: MemoryBuffer(LINES_PER_BATCH * n),  # a restart loses memory
        durable=False,
    ),
    "spool": Kind(_spool, _spool, durable=True),
}


@pytest.fixture(params=list(KINDS), ids=list(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    return KINDS[request.param]


def drain(buffer: Buffer) -> list[str]:
    """Take and accept until empty: the tag of each batch, in order (bounded)."""
    tags: list[str] = []
    for _ in range(100):
        batch = buffer.take(LINES_PER_BATCH)
        if batch is None:
            return tags
        tags.append(batch.lines[0].split()[0].removeprefix("m,d="))
        buffer.accept(batch)
    raise AssertionError("the buffer never ran empty")


def test_batches_come_out_oldest_first_with_their_messages(kind: Kind, tmp_path: Path) -> None:
    buffer = kind.make(tmp_path, 10)
    for tag in ("a", "b", "c"):
        assert buffer.store(batch_of(tag, messages=2))
    first = buffer.take(LINES_PER_BATCH)
    assert first is not None
    assert first.lines == batch_of("a", messages=2).lines
    assert [m.payload for m in first.messages()] == [b"payload-a-0", b"payload-a-1"]
    buffer.accept(first)
    assert drain(buffer) == ["b", "c"]
    assert buffer.take(LINES_PER_BATCH) is None


def test_keep_puts_the_batch_back_first_in_line_until_it_is_accepted(
    kind: Kind, tmp_path: Path
) -> None:
    buffer = kind.make(tmp_path, 10)
    for tag in ("a", "b"):
        buffer.store(batch_of(tag))
    for _ in range(3):  # a write that keeps failing: the same batch, every time
        taken = buffer.take(LINES_PER_BATCH)
        assert taken is not None and taken.lines == batch_of("a").lines
        assert taken.origins[0].payload == b"payload-a-0"
        buffer.keep(taken)
    assert drain(buffer) == ["a", "b"]


def test_a_batch_settled_with_refused_lines_is_gone_and_each_line_names_its_message(
    kind: Kind, tmp_path: Path
) -> None:
    """The flusher dead-letters a refused line by its index: line i must come from origins[i]."""
    buffer = kind.make(tmp_path, 10)
    buffer.store(batch_of("a", messages=3))
    taken = buffer.take(LINES_PER_BATCH)
    assert taken is not None
    assert [o.topic for o in taken.origins] == [f"sensors/a/{i}" for i in range(3)]
    buffer.accept(taken)  # two lines written, one dead-lettered: settled all the same
    assert buffer.take(LINES_PER_BATCH) is None


def test_a_full_buffer_refuses_a_whole_batch_and_holds_none_of_it(
    kind: Kind, tmp_path: Path
) -> None:
    buffer = kind.make(tmp_path, 2)
    assert buffer.store(batch_of("a")) and buffer.store(batch_of("b"))
    assert not buffer.store(batch_of("c"))
    assert drain(buffer) == ["a", "b"]
    assert buffer.store(batch_of("c"))  # settling made room


FULL_POLICIES = {  # policy: (settled, dropped, left)
    "block": (False, [], ["a", "b"]),
    "drop_oldest": (True, ["a"], ["b", "c"]),
    "drop_newest": (True, ["c"], ["a", "b"]),
}


@pytest.mark.parametrize("on_full", list(FULL_POLICIES))
def test_the_full_policies(kind: Kind, tmp_path: Path, on_full: str) -> None:
    settled, dropped, left = FULL_POLICIES[on_full]
    buffer = kind.make(tmp_path, 2)
    buffer.store(batch_of("a"))
    buffer.store(batch_of("b"))
    outcome = store_or_drop(buffer, batch_of("c"), on_full)  # type: ignore[arg-type]
    assert outcome.settled is settled
    assert [b.lines[0].split()[0].removeprefix("m,d=") for b in outcome.dropped] == dropped
    assert outcome.error is None
    assert drain(buffer) == left


def test_what_is_held_after_a_restart(kind: Kind, tmp_path: Path) -> None:
    buffer = kind.make(tmp_path, 10)
    for tag in ("a", "b", "c"):
        buffer.store(batch_of(tag))
    first = buffer.take(LINES_PER_BATCH)
    assert first is not None
    buffer.accept(first)
    second = buffer.take(LINES_PER_BATCH)
    assert second is not None  # open, never settled: the process dies here
    if isinstance(buffer, DiskSpool):
        buffer.close()  # and its lock with it
    reopened = kind.reopen(tmp_path, 10)
    assert drain(reopened) == (["b", "c"] if kind.durable else [])


def test_a_store_that_fails_outright_is_not_retried_by_making_room() -> None:
    class DiskFull(MemoryBuffer):
        def store(self, batch: Batch) -> bool:
            raise OSError(28, "No space left on device")

    buffer = DiskFull(30)
    buffer.put(["m v=1 1"], MSG)
    outcome = store_or_drop(buffer, batch_of("new"), "drop_oldest")
    assert outcome.error is not None and "No space" in outcome.error
    assert outcome.settled and [b.lines for b in outcome.dropped] == [batch_of("new").lines]
    assert buffer.waiting == 1  # nothing old was dropped for room that would not help


# -- the memory buffer alone: the hot path's intake, batching and backpressure ----------------


def filled(count: int, max_lines: int = 100) -> MemoryBuffer:
    buffer = MemoryBuffer(max_lines)
    for i in range(count):
        buffer.put([f"l{i}"], RawMessage("t", b"p", i))
    return buffer


def taken(buffer: MemoryBuffer, max_lines: int) -> Batch:
    batch = buffer.take(max_lines)
    assert batch is not None
    return batch


def test_take_then_keep_puts_lines_back_in_front_in_order() -> None:
    buffer = filled(5)
    batch = taken(buffer, 3)
    assert batch.lines == ["l0", "l1", "l2"]
    buffer.keep(batch)
    assert taken(buffer, 5).lines == ["l0", "l1", "l2", "l3", "l4"]


def test_taken_lines_count_against_capacity_until_accepted() -> None:
    buffer = filled(10, max_lines=10)
    assert buffer.full
    batch = taken(buffer, 10)
    assert buffer.full and buffer.waiting == 0
    buffer.accept(batch)
    assert buffer.fill == 0 and not buffer.full


async def test_space_is_signalled_only_below_the_resume_mark() -> None:
    buffer = filled(10, max_lines=10)
    waiter = asyncio.create_task(buffer.wait_for_space())
    await asyncio.sleep(0)
    buffer.accept(taken(buffer, 3))  # 7 left, resume mark is 5
    await asyncio.sleep(0)
    assert not waiter.done()
    buffer.accept(taken(buffer, 2))
    await asyncio.wait_for(waiter, 1)


async def test_next_batch_returns_a_full_batch_without_waiting_for_the_interval() -> None:
    buffer = filled(10)
    batch = await asyncio.wait_for(buffer.next_batch(10, wait_s=60), 1)
    assert batch is not None and len(batch) == 10


async def test_next_batch_returns_a_partial_batch_after_the_interval() -> None:
    buffer = filled(3)
    batch = await asyncio.wait_for(buffer.next_batch(10, wait_s=0.05), 2)
    assert batch is not None and len(batch) == 3


async def test_next_batch_wakes_when_a_batch_fills_up() -> None:
    buffer = MemoryBuffer(100)
    task = asyncio.create_task(buffer.next_batch(4, wait_s=60))
    await asyncio.sleep(0)
    for i in range(4):
        buffer.put([f"l{i}"], RawMessage("t", b"p", i))
    batch = await asyncio.wait_for(task, 1)
    assert batch is not None and len(batch) == 4


async def test_closed_empty_buffer_ends_the_flusher() -> None:
    buffer = filled(2)
    buffer.close_intake()
    assert (await buffer.next_batch(10, 60)) is not None
    assert (await buffer.next_batch(10, 60)) is None
    with pytest.raises(BufferClosed):
        buffer.put(["x"], MSG)


def test_a_message_after_intake_closed_is_dead_lettered_not_raised() -> None:
    from ingestd.config import LimitSettings, parse_settings
    from ingestd.pipeline import Pipeline
    from ingestd.records import DeadLetter
    from ingestd.routes import compile_routes
    from ingestd.telemetry import Telemetry

    letters: list[DeadLetter] = []
    buffer = MemoryBuffer(10)
    routes = compile_routes(parse_settings({"influx": {"api": "v1", "database": "d"}}))
    pipeline = Pipeline(routes, buffer, Telemetry(), letters.append, LimitSettings())
    buffer.close_intake()
    pipeline.handle(RawMessage("sensors/d/t", b"1.5", 1))
    assert [letter.reason for letter in letters] == ["unwritten_at_shutdown"]


def test_take_never_splits_a_message_across_batches() -> None:
    buffer = MemoryBuffer(100)
    first, second = RawMessage("a", b"", 1), RawMessage("b", b"", 2)
    buffer.put(["a0", "a1", "a2"], first)
    buffer.put(["b0", "b1"], second)
    batch = taken(buffer, 2)
    assert batch.lines == ["a0", "a1", "a2"] and batch.messages() == [first]


async def test_a_full_ack_window_makes_a_batch_ready_at_once() -> None:
    buffer = MemoryBuffer(1000, ack_window=3)
    for i in range(3):
        buffer.put([f"l{i}"], RawMessage("t", b"", i, mid=i + 1, qos=1))
    batch = await asyncio.wait_for(buffer.next_batch(500, wait_s=60), 1)
    assert batch is not None and len(batch) == 3


async def test_large_messages_fill_the_buffer_by_bytes_before_lines() -> None:
    """Issue 12: the bound counted lines only, so 20k lines of 64 KiB messages could hold over
    a gigabyte. Now the payload bytes held count too: full (reading pauses, the spool takes
    over) at max_bytes, a batch ready at once, and space again below the resume mark."""
    buffer = MemoryBuffer(20_000, max_bytes=1_000_000)
    big = [RawMessage(f"s/{i}/t", b"x" * 60_000, i) for i in range(17)]
    for message in big[:16]:
        buffer.put(["m v=1"], message)
    assert not buffer.full and buffer.bytes == 960_000
    buffer.put(["m v=1"], big[16])
    assert buffer.full  # 17 lines, 1,020,000 bytes
    batch = await asyncio.wait_for(buffer.next_batch(5000, wait_s=60), 1)  # no waiting
    assert batch is not None and len(batch) == 17
    waiter = asyncio.create_task(buffer.wait_for_space())
    buffer.accept(batch)
    await asyncio.wait_for(waiter, 1)
    assert buffer.bytes == 0 and not buffer.full
