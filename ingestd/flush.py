"""The flush side: memory buffer -> database, and, while the database cannot keep up, -> disk spool.

Two tasks. `run` takes batches from the memory buffer and writes them; if a write fails and a
spool is configured, the batch is spooled (and so acknowledged) instead of waiting, and further
batches go straight to the spool until a write succeeds again. `replay_forever` writes spooled
batches back, oldest first, as fast as the database takes them, while new data keeps flowing
(a time-series database does not care in what order points arrive). Without a spool, or with a
full one under on_full = "block", a failing batch is retried in place with backoff: memory fills,
reading stops, and the broker holds the rest.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable

from ingestd.backoff import backoff_delay
from ingestd.buffer import Batch, MemoryBuffer, store_or_drop
from ingestd.config import Settings
from ingestd.errors import DropReason, RetryableSinkError
from ingestd.records import RawMessage, Rejection, WriteProgress
from ingestd.sink import Sink
from ingestd.spool import DiskSpool
from ingestd.telemetry import Telemetry

Reject = Callable[..., None]


class Flusher:
    def __init__(
        self,
        *,
        settings: Settings,
        buffer: MemoryBuffer,
        sink: Sink,
        spool: DiskSpool | None,
        telemetry: Telemetry,
        reject: Reject,
        ack: Callable[[list[RawMessage]], None],
        flush_dead_letters: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.buffer = buffer
        self.sink = sink
        self.spool = spool
        self.telemetry = telemetry
        self.reject = reject
        self.ack = ack
        self.flush_dead_letters = flush_dead_letters
        self._outage = False
        # since when the database has taken writes (wall clock ns; 0: since the start)
        self.writable_since_ns = 0
        self._spooled = asyncio.Event()
        # why the spool cannot be replayed now (an OSError), for /readyz; None when it can
        self.replay_error: str | None = None

    @property
    def outage(self) -> bool:
        """The last write failed: spool without trying, until one succeeds."""
        return self._outage

    @outage.setter
    def outage(self, value: bool) -> None:
        if self._outage and not value:
            self.writable_since_ns = time.time_ns()
        self._outage = value

    # -- settling ----------------------------------------------------------------------------

    def _dead_letter_refused(self, batch: Batch, rejected: list[Rejection]) -> bool:
        """Dead-letter the lines the database refused; False if a letter could not be written."""
        for rejection in rejected:
            self.reject(
                batch.origins[rejection.index],
                DropReason.REJECTED_BY_SINK,
                rejection.detail,
                line=batch.lines[rejection.index],
                settle=False,  # its batch settles it
            )
        return not rejected or self.flush_dead_letters()

    def _written(self, batch: Batch, rejected: list[Rejection], seconds: float) -> None:
        """Settle a written batch: ack its messages, but not those with a refused line whose
        dead letter could not be written (the broker redelivers them)."""
        letters_stored = self._dead_letter_refused(batch, rejected)
        self.telemetry.batch_written(len(batch), len(rejected), seconds)
        self.buffer.accept(batch)
        messages = batch.messages()
        if not letters_stored:
            unstored = {id(batch.origins[r.index]) for r in rejected}
            messages = [m for m in messages if id(m) not in unstored]
        self.ack(messages)

    def _drop(self, batch: Batch, reason: str, detail: str) -> None:
        for message in batch.messages():
            self.telemetry.message_dropped(reason, message, detail)

    def spool_batch(self, batch: Batch) -> bool:
        """Store a memory batch in the spool and settle it there; False if the spool cannot
        take it and the policy is to block (the caller keeps retrying it in place)."""
        spool = self.spool
        if spool is None:
            return False
        settled, dropped, error = store_or_drop(spool, batch, self.settings.spool.on_full)
        if error is not None:  # the disk is full before the cap is
            self.telemetry.spool_write_failed(error)
        for lost in dropped:
            detail = (
                "spool full: dropped the newest batch"
                if lost is batch
                else "spool.max_bytes reached: dropped the oldest batch"
            )
            self._drop(lost, DropReason.SPOOL_FULL, detail)
        if not settled:
            return False
        if not (dropped and dropped[-1] is batch):
            self.telemetry.points_spooled += len(batch)
            self._spooled.set()
        self.buffer.accept(batch)
        self.ack(batch.messages())
        return True

    # -- the one write-and-retry ------------------------------------------------------------

    async def write_with_retry(
        self, batch: Batch, label: str, settled_elsewhere: Callable[[], bool]
    ) -> list[Rejection] | None:
        """Write `batch` until the database takes it; returns the lines it refused. A retryable
        failure marks the outage, then asks `settled_elsewhere` (the flusher spools the batch;
        the replay finds it dropped from the spool) and returns None if so; otherwise waits the
        backoff and resumes where the write stopped (a bisection is not started again)."""
        b = self.settings.batch
        progress: WriteProgress | None = None
        attempt = 0
        while True:
            try:
                rejected = await self.sink.write(batch.lines, progress)
            except RetryableSinkError as exc:
                self.outage = True
                if settled_elsewhere():
                    return None
                progress = exc.progress
                delay = backoff_delay(attempt, b.retry_initial_s, b.retry_max_s, exc.retry_after_s)
                attempt += 1
                self.telemetry.batch_retried(len(batch), f"{label}{exc}", delay)
                await asyncio.sleep(delay)
                if settled_elsewhere():  # e.g. drop_oldest took it from the spool meanwhile
                    return None
                continue
            self.outage = False
            return rejected

    # -- memory -> database ------------------------------------------------------------------

    async def run(self) -> None:
        """Until intake is closed and the memory buffer is empty."""
        b = self.settings.batch
        while (batch := await self.buffer.next_batch(b.max_lines, b.flush_interval_s)) is not None:
            if self.outage and self.spool_batch(batch):
                continue
            started = time.perf_counter()
            try:
                rejected = await self.write_with_retry(batch, "", lambda: self.spool_batch(batch))
            except BaseException:
                self.buffer.keep(batch)
                raise
            if rejected is not None:
                self._written(batch, rejected, time.perf_counter() - started)

    # -- spool -> database -------------------------------------------------------------------

    async def replay_forever(self) -> None:
        """Spooled batches back to the database, oldest first, for as long as ingestd runs. A
        spool the disk will not read or write (EIO, ENOSPC on the cursor) is logged, retried
        with backoff and reported by /readyz; it never ends the task."""
        attempt = 0
        while True:
            try:
                await self._replay()
            except OSError as exc:
                self.replay_error = f"{type(exc).__name__}: {exc}"
                b = self.settings.batch
                delay = backoff_delay(attempt, b.retry_initial_s, b.retry_max_s)
                attempt += 1
                self.telemetry.spool_replay_failed(self.replay_error, delay)
                await asyncio.sleep(delay)

    async def _replay(self) -> None:
        spool = self.spool
        if spool is None:
            return
        max_age_ns = int(self.settings.spool.max_age_s * 1e9)
        while True:
            batch = spool.take(self.settings.batch.max_lines)
            self.replay_error = None
            if batch is None:
                self._spooled.clear()
                await self._spooled.wait()
                continue
            if time.time_ns() - batch.stored_ns > max_age_ns:
                spool.accept(batch)
                self._drop(batch, DropReason.SPOOL_EXPIRED, "older than spool.max_age_s")
                continue
            started = time.perf_counter()
            try:
                rejected = await self.write_with_retry(
                    batch,
                    "spool replay: ",
                    lambda: not spool.holds(batch),  # noqa: B023
                )
            except BaseException:
                spool.keep(batch)
                raise
            if rejected is None:  # drop_oldest took it while it waited: counted there
                continue
            if not self._dead_letter_refused(batch, rejected):
                # acked long ago: the spool is the only copy, so it keeps the batch, and the
                # replay retries it (rewriting its lines is idempotent) after a backoff
                spool.keep(batch)
                raise OSError(errno.EIO, "a dead letter of a spooled batch cannot be written")
            spool.accept(batch)
            self.telemetry.batch_written(len(batch), len(rejected), time.perf_counter() - started)
