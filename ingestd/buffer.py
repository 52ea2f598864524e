"""The one backpressure point: a bounded buffer of encoded lines, spoken to in transactions.

Like Telegraf's output buffer: `take` a batch, then `accept` it (settled: written or dead-lettered)
or `keep` it (put back in front, retried later). Taken lines count against the capacity until
settled, so memory is bounded by `max_lines` whatever the sink does. Every line remembers the
message it came from, so a line the database rejects is dead-lettered with its original payload.

Two buffers speak this `Buffer` protocol: `MemoryBuffer` here and `spool.DiskSpool`, which holds
batches on disk across restarts. `store_or_drop` is the one full policy over either.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from ingestd.records import RawMessage


@dataclass(slots=True)
class Batch:
    lines: list[str] = field(default_factory=list)
    origins: list[RawMessage] = field(default_factory=list)
    stored_ns: int = 0  # when a durable buffer stored it (wall clock); 0: never stored
    payload_bytes: int = 0  # the memory buffer's byte count of it, released when it is settled

    def __len__(self) -> int:
        return len(self.lines)

    def groups(self) -> list[tuple[RawMessage, list[str]]]:
        """Each message once, in order, with its lines."""
        out: list[tuple[RawMessage, list[str]]] = []
        for line, origin in zip(self.lines, self.origins, strict=True):
            if out and out[-1][0] is origin:
                out[-1][1].append(line)
            else:
                out.append((origin, [line]))
        return out

    def messages(self) -> list[RawMessage]:
        """Each message once, in order (a message's lines are contiguous)."""
        out: list[RawMessage] = []
        for origin in self.origins:
            if not out or out[-1] is not origin:
                out.append(origin)
        return out


class BufferClosed(Exception):
    """Intake is closed: the service is shutting down."""


class Buffer(Protocol):
    """A bounded store of batches, spoken to in transactions: `take` a batch, then settle it with
    `accept` (written or dead-lettered: gone for good) or `keep` (first in line again).
    One transaction is open at a time per consumer, as the flusher and the spool replay use it."""

    def store(self, batch: Batch) -> bool:
        """Hold all of `batch`, or none of it (False: no room)."""
        ...

    def take(self, max_lines: int) -> Batch | None:
        """The oldest lines, about `max_lines` of them (a message, or a stored batch, is never
        split), or None when nothing waits."""
        ...

    def accept(self, batch: Batch) -> None: ...

    def keep(self, batch: Batch) -> None: ...

    def drop_oldest(self) -> Batch | None:
        """Make room: the oldest unit (message or stored batch), gone; the caller counts it."""
        ...


OnFull = Literal["block", "drop_oldest", "drop_newest"]


class Stored(NamedTuple):
    settled: bool  # False: `batch` is not held (no room, and the policy leaves it with the caller)
    dropped: list[Batch]  # what went to make room, and `batch` itself if it was dropped
    error: str | None  # why storing failed outright (OSError: a disk full before its cap)


def store_or_drop(buffer: Buffer, batch: Batch, on_full: OnFull) -> Stored:
    """Store `batch`, applying the full policy: `block` leaves it with the caller, `drop_oldest`
    drops the oldest until it fits, `drop_newest` drops `batch` itself. Who drops, counts.
    A store that fails with OSError is not retried: making room would not help."""
    dropped: list[Batch] = []
    error: str | None = None
    while True:
        try:
            if buffer.store(batch):
                return Stored(True, dropped, None)
        except OSError as exc:
            error = str(exc)
            break
        oldest = buffer.drop_oldest() if on_full == "drop_oldest" else None
        if oldest is None:
            break
        dropped.append(oldest)
    if on_full == "block":
        return Stored(False, dropped, error)
    return Stored(True, [*dropped, batch], error)


class MemoryBuffer:
    """Bounded FIFO of lines. `put` never blocks (it is called inline from the MQTT read path);
    instead the source checks `full` after each message and stops reading until `wait_for_space`."""

    def __init__(
        self,
        max_lines: int,
        resume_ratio: float = 0.5,
        ack_window: int = 0,
        max_bytes: int = 1 << 62,
    ) -> None:
        self.max_lines = max_lines
        # a bound in bytes too: the payloads held (each buffered message keeps its payload, and
        # its lines are made from it), so 20k lines of large messages cannot reach gigabytes
        self.max_bytes = max_bytes
        self.bytes = 0
        self._resume_bytes = int(max_bytes * resume_ratio)
        # With acks after storage the broker stops sending once `ack_window` messages await their
        # ack, so that many waiting messages make a batch ready at once (0: no such trigger).
        self.ack_window = ack_window
        self._unacked_waiting = 0
        self._resume_at = int(max_lines * resume_ratio)
        self._lines: deque[str] = deque()
        self._origins: deque[RawMessage] = deque()
        self._in_flight = 0
        self._closed = False
        self._batch_size = max_lines
        self._ready = asyncio.Event()  # a full batch is waiting, or intake closed
        self._nonempty = asyncio.Event()  # a line is waiting, or intake closed
        self._space = asyncio.Event()  # fill is at or below the resume mark
        self._space.set()

    # -- intake side -------------------------------------------------------------------------

    def put(self, lines: list[str], origin: RawMessage) -> None:
        if self._closed:
            raise BufferClosed
        self._lines.extend(lines)
        self._origins.extend([origin] * len(lines))
        self.bytes += len(origin.payload)
        self._nonempty.set()
        if origin.mid:
            self._unacked_waiting += 1
            if self._unacked_waiting >= self.ack_window > 0:
                self._ready.set()
        waiting = len(self._lines)
        if waiting >= self._batch_size:
            self._ready.set()
        # `full`, inline: this runs once per message
        if waiting + self._in_flight >= self.max_lines or self.bytes >= self.max_bytes:
            self._space.clear()
            self._ready.set()  # full by bytes before a batch's lines: write what there is

    def store(self, batch: Batch) -> bool:
        """A whole batch, if it fits beside what is held (the protocol's intake; `put` is the
        per-message one, which never refuses)."""
        if self._closed:
            raise BufferClosed
        if self.fill + len(batch) > self.max_lines or (
            self.bytes and self.bytes + _payload_bytes(batch) > self.max_bytes
        ):
            return False
        for message, lines in batch.groups():
            self.put(lines, message)
        return True

    @property
    def full(self) -> bool:
        return self.fill >= self.max_lines or self.bytes >= self.max_bytes

    @property
    def fill(self) -> int:
        """Lines held, waiting or in flight."""
        return len(self._lines) + self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._lines)

    async def wait_for_space(self) -> None:
        await self._space.wait()

    def close_intake(self) -> None:
        self._closed = True
        self._ready.set()
        self._nonempty.set()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- flush side --------------------------------------------------------------------------

    async def next_batch(self, max_lines: int, wait_s: float) -> Batch | None:
        """A batch once `max_lines` are waiting, or `wait_s` after a line arrived to an empty buffer.
        None once intake is closed and nothing is left."""
        self._batch_size = max_lines
        while not self._lines:
            if self._closed:
                return None
            self._nonempty.clear()
            await self._nonempty.wait()
        if (
            len(self._lines) < max_lines
            and not self._closed
            and not (self._unacked_waiting >= self.ack_window > 0)
            and not self.full
        ):
            self._ready.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
            except TimeoutError:
                pass
        return self.take(max_lines)

    def take(self, max_lines: int) -> Batch | None:
        """Up to `max_lines` lines, never splitting a message: once a batch is settled, every
        message in it is settled, so it can be acknowledged."""
        lines, origins = self._lines, self._origins
        if not lines:
            return None
        count = min(max_lines, len(lines))
        while count < len(lines) and origins[count] is origins[count - 1]:
            count += 1
        batch = Batch(
            [lines.popleft() for _ in range(count)], [origins.popleft() for _ in range(count)]
        )
        unacked = held = 0
        for message in batch.messages():  # one pass for both counts: this runs per message
            held += len(message.payload)
            if message.mid:
                unacked += 1
        batch.payload_bytes = held
        self._unacked_waiting -= unacked
        self._in_flight += count
        return batch

    def accept(self, batch: Batch) -> None:
        """The batch is settled: every line written or dead-lettered."""
        self.bytes -= batch.payload_bytes
        self._release(len(batch))

    def keep(self, batch: Batch) -> None:
        """The batch could not be written now: put it back in front, in order."""
        self._lines.extendleft(reversed(batch.lines))
        self._origins.extendleft(reversed(batch.origins))
        self._unacked_waiting += sum(1 for m in batch.messages() if m.mid)
        self._in_flight -= len(batch)

    def drop_oldest(self) -> Batch | None:
        batch = self.take(1)  # one message: take never splits one
        if batch is not None:
            self.accept(batch)
        return batch

    def drain(self) -> Batch:
        """Everything still waiting, for the shutdown count."""
        return self.take(len(self._lines)) or Batch()

    def _release(self, count: int) -> None:
        self._in_flight -= count
        if self.fill <= self._resume_at and self.bytes <= self._resume_bytes:
            self._space.set()


def _payload_bytes(batch: Batch) -> int:
    return sum(len(message.payload) for message in batch.messages())
