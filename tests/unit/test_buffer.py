from __future__ import annotations

import asyncio

import pytest

from ingestd.buffer import BufferClosed, MemoryBuffer
from ingestd.records import RawMessage

MSG = RawMessage("t", b"p", 1)


def filled(count: int, max_lines: int = 100) -> MemoryBuffer:
    buffer = MemoryBuffer(max_lines)
    for i in range(count):
        buffer.put([f"l{i}"], RawMessage("t", b"p", i))
    return buffer


def test_take_then_keep_puts_lines_back_in_front_in_order() -> None:
    buffer = filled(5)
    batch = buffer.take(3)
    assert batch.lines == ["l0", "l1", "l2"]
    buffer.keep(batch)
    assert buffer.take(5).lines == ["l0", "l1", "l2", "l3", "l4"]


def test_taken_lines_count_against_capacity_until_accepted() -> None:
    buffer = filled(10, max_lines=10)
    assert buffer.full
    batch = buffer.take(10)
    assert buffer.full and buffer.waiting == 0
    buffer.accept(batch)
    assert buffer.fill == 0 and not buffer.full


async def test_space_is_signalled_only_below_the_resume_mark() -> None:
    buffer = filled(10, max_lines=10)
    waiter = asyncio.create_task(buffer.wait_for_space())
    await asyncio.sleep(0)
    buffer.accept(buffer.take(3))  # 7 left, resume mark is 5
    await asyncio.sleep(0)
    assert not waiter.done()
    buffer.accept(buffer.take(2))
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
    batch = buffer.take(2)
    assert batch.lines == ["a0", "a1", "a2"] and batch.messages() == [first]


async def test_a_full_ack_window_makes_a_batch_ready_at_once() -> None:
    buffer = MemoryBuffer(1000, ack_window=3)
    for i in range(3):
        buffer.put([f"l{i}"], RawMessage("t", b"", i, mid=i + 1, qos=1))
    batch = await asyncio.wait_for(buffer.next_batch(500, wait_s=60), 1)
    assert batch is not None and len(batch) == 3
