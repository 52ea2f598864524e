"""The disk spool: where batches go when the database cannot take them, durable across restarts.

Append-only segment files of records `MAGIC | length | crc32 | body`; the body is one batch:
its lines and the messages they came from (for dead-lettering a refused line after replay).
A cursor file says how far replay has got. Speaks the buffer's transactions (`buffer.Buffer`):
`take` the oldest batch, then `accept` it (the cursor moves past it) or `keep` it (nothing moves).

Power loss mid-write leaves a torn record at the tail; bit rot leaves a bad checksum. Either is
detected, counted and skipped (the reader resynchronises on the next MAGIC), never a crash.
Writes are grouped per batch, never per message; `fsync` trades SD-card wear for durability
against power loss (without it, a batch survives a crash of ingestd, not of the machine).
"""

from __future__ import annotations

import base64
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from ingestd.buffer import Batch
from ingestd.errors import IngestdError
from ingestd.privatefiles import lock_exclusive, open_private
from ingestd.records import RawMessage

MAGIC = b"IGSP"
_HEADER = struct.Struct(">4sII")  # magic, body length, crc32 of the body
_MAX_BODY = 256 * 1024 * 1024


def encode_batch(batch: Batch, written_ns: int) -> bytes:
    body = {
        "written_ns": written_ns,
        "lines": batch.lines,
        "messages": [
            [m.topic, base64.b64encode(m.payload).decode(), m.received_ns, len(lines)]
            for m, lines in batch.groups()
        ],
    }
    return orjson.dumps(body)


def decode_batch(body: bytes) -> Batch:
    """A stored batch; ValueError when the body does not describe one. The line counts are
    checked against the lines before anything is allocated for them: a crafted record with a
    valid checksum could otherwise ask for a list of 10**12 origins (a MemoryError that killed
    the replay task)."""
    data = orjson.loads(body)
    lines = list(data["lines"])
    counts = [message[3] for message in data["messages"]]
    if not all(isinstance(n, int) and n > 0 for n in counts) or sum(counts) != len(lines):
        raise ValueError("the messages' line counts do not add up to the batch's lines")
    origins: list[RawMessage] = []
    for topic, payload, received_ns, count in data["messages"]:
        origin = RawMessage(topic, base64.b64decode(payload), received_ns)
        origins.extend([origin] * count)
    return Batch(lines, origins, int(data["written_ns"]))


@dataclass
class SpoolStats:
    records_replayed: int = 0
    corrupt_records: int = 0


class DiskSpool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int, fsync: bool) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.stats = SpoolStats()
        directory.mkdir(parents=True, exist_ok=True)
        # one ingestd per spool: two would replay (and delete) each other's batches
        self._lock: IO[bytes] | None = open_private(directory / "lock", "ab")
        if not lock_exclusive(self._lock):
            self._lock.close()
            raise IngestdError(f"{directory} is in use by another ingestd (spool.path)")
        self._cursor_path = directory / "cursor"
        self._read_segment, self._read_offset = self._load_cursor()
        # the open transaction: the batch, and the segment and offset where its record ends
        self._taken: tuple[Batch, int, int] | None = None
        segments = self._segments()
        self._write_segment = segments[-1] if segments else max(self._read_segment, 1)
        self._repair_tail()

    def close(self) -> None:
        """Release the spool for another process (the service's last step)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- files ------------------------------------------------------------------------------

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"{number:010d}.seg"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())

    def _load_cursor(self) -> tuple[int, int]:
        try:
            segment, offset = self._cursor_path.read_text().split()
            return int(segment), int(offset)
        except (OSError, ValueError):
            segments = self._segments()
            return (segments[0] if segments else 1), 0

    def _save_cursor(self) -> None:
        temporary = self._cursor_path.with_suffix(".tmp")
        with open_private(temporary, "wb") as f:
            f.write(f"{self._read_segment} {self._read_offset}\n".encode())
        os.replace(temporary, self._cursor_path)

    def _repair_tail(self) -> None:
        """Cut a torn record off the end of the segment we append to, so appends stay readable."""
        path = self._segment_path(self._write_segment)
        if not path.exists():
            return
        data = path.read_bytes()
        good_end, _ = self._scan(data, 0, count=False)
        if good_end < len(data):
            self.stats.corrupt_records += 1
            with open_private(path, "r+b") as f:
                f.truncate(good_end)

    def _scan(
        self, data: bytes, offset: int, count: bool = True, limit: int | None = None
    ) -> tuple[int, list[tuple[int, int, bytes]]]:
        """Valid records from `offset`: (start, end, body), at most `limit` of them. Returns
        where the valid data ends."""
        records: list[tuple[int, int, bytes]] = []
        end = offset
        while offset + _HEADER.size <= len(data) and (limit is None or len(records) < limit):
            magic, length, crc = _HEADER.unpack_from(data, offset)
            body_start = offset + _HEADER.size
            if magic == MAGIC and length <= _MAX_BODY and body_start + length <= len(data):
                body = data[body_start : body_start + length]
                if zlib.crc32(body) == crc:
                    records.append((offset, body_start + length, body))
                    offset = end = body_start + length
                    continue
            # corrupt or torn: resynchronise on the next MAGIC
            following = data.find(MAGIC, offset + 1)
            if following == -1:
                break
            if count:
                self.stats.corrupt_records += 1
            offset = following
        return end, records

    # -- intake -----------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        total = 0
        for number in self._segments():
            size = self._segment_path(number).stat().st_size
            total += size - (self._read_offset if number == self._read_segment else 0)
        return total

    def has_room(self, extra: int) -> bool:
        return self.size_bytes + extra <= self.max_bytes

    def store(self, batch: Batch) -> bool:
        """Store a batch durably (see `fsync`), if it fits under `max_bytes`. An OSError (the disk
        is full before the cap is) leaves nothing readable behind: a torn tail is cut at start."""
        body = encode_batch(batch, time.time_ns())
        record = _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body
        if not self.has_room(len(record)):
            return False
        path = self._segment_path(self._write_segment)
        if path.exists() and path.stat().st_size + len(record) > self.segment_bytes:
            self._write_segment += 1
            path = self._segment_path(self._write_segment)
        with open_private(path, "ab") as f:
            f.write(record)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        return True

    # -- replay: the buffer's transactions ---------------------------------------------------

    def take(self, max_lines: int = 0) -> Batch | None:
        """The oldest stored batch, whole (it was at most a memory batch when stored, so
        `max_lines` does not split it), with `stored_ns`; None when empty. Taking again before
        settling returns the same batch: one transaction at a time."""
        while True:
            path = self._segment_path(self._read_segment)
            data = b""
            if path.exists():
                with path.open("rb") as f:
                    f.seek(self._read_offset)
                    data = f.read()
            _, records = self._scan(data, 0, limit=1)
            if records:
                start, end, body = records[0]
                if start > 0:  # corrupt bytes before it, counted by _scan: move past them once
                    self._read_offset += start
                    end -= start
                    self._save_cursor()
                try:
                    batch = decode_batch(body)
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, IndexError):
                    self.stats.corrupt_records += 1  # a valid checksum over a body we cannot read
                    self._read_offset += end
                    self._save_cursor()
                    continue
                self._taken = (batch, self._read_segment, self._read_offset + end)
                return batch
            if data:  # nothing valid in the rest of this segment: it was all corrupt
                self._read_offset += len(data)
                self._save_cursor()
            if self._read_segment >= self._write_segment:
                return None
            # this segment is done: drop it and move on
            path.unlink(missing_ok=True)
            self._read_segment += 1
            self._read_offset = 0
            self._save_cursor()

    def holds(self, batch: Batch) -> bool:
        """`batch` is the open transaction: not settled, and not dropped by `drop_oldest`."""
        return self._taken is not None and self._taken[0] is batch

    def accept(self, batch: Batch) -> None:
        """The taken batch is settled: replay moves past it for good. A batch that is no longer
        held (`drop_oldest` took it) has nothing left to settle."""
        if self._taken is not None and self._taken[0] is batch:
            _, self._read_segment, self._read_offset = self._taken
            self._taken = None
            self._save_cursor()
            self.stats.records_replayed += 1

    def keep(self, batch: Batch) -> None:
        """The taken batch could not be written now: it stays first in line."""
        if self._taken is not None and self._taken[0] is batch:
            self._taken = None

    def drop_oldest(self) -> Batch | None:
        """Make room: the oldest batch, gone (the caller counts its points). If it is the open
        transaction, that transaction is void: `holds` says so, and settling it does nothing."""
        batch = self.take()
        if batch is None:
            return None
        self.accept(batch)
        self.stats.records_replayed -= 1
        return batch
