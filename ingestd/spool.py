"""The disk spool: where batches go when the database cannot take them, durable across restarts.

Append-only segment files of records `MAGIC | length | crc32 | body`; the body is one batch:
its lines and the messages they came from (for dead-lettering a refused line after replay).
A cursor file says how far replay has got. Speaks the buffer's transactions: `take` the oldest
batch, then `accept` it (the cursor moves past it) or `keep` it (nothing moves).

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

import orjson

from ingestd.buffer import Batch
from ingestd.records import RawMessage

MAGIC = b"IGSP"
_HEADER = struct.Struct(">4sII")  # magic, body length, crc32 of the body
_MAX_BODY = 256 * 1024 * 1024


def encode_batch(batch: Batch, written_ns: int) -> bytes:
    messages: list[list[object]] = []
    counts: list[int] = []
    for origin in batch.origins:
        if counts and messages[-1][0] is origin:
            counts[-1] += 1
        else:
            messages.append([origin])
            counts.append(1)
    body = {
        "written_ns": written_ns,
        "lines": batch.lines,
        "messages": [
            [m[0].topic, base64.b64encode(m[0].payload).decode(), m[0].received_ns, n]  # type: ignore[attr-defined]
            for m, n in zip(messages, counts, strict=True)
        ],
    }
    return orjson.dumps(body)


def decode_batch(body: bytes) -> tuple[Batch, int]:
    data = orjson.loads(body)
    origins: list[RawMessage] = []
    for topic, payload, received_ns, count in data["messages"]:
        origin = RawMessage(topic, base64.b64decode(payload), received_ns)
        origins.extend([origin] * count)
    return Batch(list(data["lines"]), origins), int(data["written_ns"])


@dataclass
class SpoolStats:
    records_written: int = 0
    records_replayed: int = 0
    corrupt_records: int = 0
    corrupt_bytes: int = 0


class DiskSpool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int, fsync: bool) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.stats = SpoolStats()
        directory.mkdir(parents=True, exist_ok=True)
        self._cursor_path = directory / "cursor"
        self._read_segment, self._read_offset = self._load_cursor()
        self._taken: tuple[int, int] | None = None  # where the taken record ends
        segments = self._segments()
        self._write_segment = segments[-1] if segments else max(self._read_segment, 1)
        self._repair_tail()

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
        temporary.write_text(f"{self._read_segment} {self._read_offset}\n")
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
            self.stats.corrupt_bytes += len(data) - good_end
            with path.open("r+b") as f:
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
                self.stats.corrupt_bytes += following - offset
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

    @staticmethod
    def record_for(batch: Batch) -> bytes:
        """The bytes `append` stores for a batch: ask `has_room(len(record))` with them."""
        body = encode_batch(batch, time.time_ns())
        return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body

    def append(self, batch: Batch | bytes) -> int:
        """Store a batch (or its `record_for`) durably (see `fsync`); returns the bytes written."""
        record = batch if isinstance(batch, bytes) else self.record_for(batch)
        path = self._segment_path(self._write_segment)
        if path.exists() and path.stat().st_size + len(record) > self.segment_bytes:
            self._write_segment += 1
            path = self._segment_path(self._write_segment)
        with path.open("ab") as f:
            f.write(record)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self.stats.records_written += 1
        return len(record)

    # -- replay: the buffer's transactions ---------------------------------------------------

    def take(self) -> tuple[Batch, int] | None:
        """The oldest stored batch and when it was stored (ns), or None when empty."""
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
                    batch, written_ns = decode_batch(body)
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    self.stats.corrupt_records += 1  # a valid checksum over a body we cannot read
                    self._read_offset += end
                    self._save_cursor()
                    continue
                self._taken = (self._read_segment, self._read_offset + end)
                return batch, written_ns
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

    def accept(self) -> None:
        """The taken batch is settled: replay moves past it for good."""
        if self._taken is not None:
            self._read_segment, self._read_offset = self._taken
            self._taken = None
            self._save_cursor()
            self.stats.records_replayed += 1

    def keep(self) -> None:
        """The taken batch could not be written now: it stays first in line."""
        self._taken = None

    def drop_oldest(self) -> Batch | None:
        """Make room: the oldest batch, gone (the caller counts its points)."""
        taken = self.take()
        if taken is None:
            return None
        self.accept()
        self.stats.records_replayed -= 1
        return taken[0]
