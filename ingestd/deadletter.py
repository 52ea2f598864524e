"""The dead-letter store: a JSON-lines file (and optionally an MQTT topic) of everything not written.

One line per message: original topic, payload (UTF-8 text, or base64 when it is not), reason,
detail, receive time and dead-letter time; for lines the database refused, the line too. Writes go
through a buffered file flushed every second and at shutdown: no fsync per message. At `max_bytes`
the file is rotated once to `<path>.1`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from ingestd.errors import IngestdError
from ingestd.privatefiles import lock_exclusive, open_private
from ingestd.records import DeadLetter

TRUNCATED_PREFIX_BYTES = 4096


def to_json(letter: DeadLetter, limit: int | None = None) -> bytes:
    """One JSON line. With `limit`, a payload, topic or refused line longer than it is kept
    as its first bytes, with the payload's size and SHA-256: one letter stays small whatever a
    publisher sends, and says exactly what it was."""
    payload, topic, line = letter.payload, letter.topic, letter.line
    size, digest = letter.payload_bytes, letter.payload_sha256
    too_long = limit is not None and (
        len(payload) > limit or len(topic) > limit or (line is not None and len(line) > limit)
    )
    if too_long and size is None:
        assert limit is not None
        size, digest = len(payload), hashlib.sha256(payload).hexdigest()
        payload = payload[: min(TRUNCATED_PREFIX_BYTES, limit)]
        topic = topic[:limit]
        line = None if line is None else line[:limit]
    record: dict[str, Any] = {
        "topic": topic,
        "reason": letter.reason,
        "detail": letter.detail[:1000],
        "received_ns": letter.received_ns,
        "dead_lettered_ns": letter.dead_lettered_ns,
    }
    try:
        record["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_b64"] = base64.b64encode(payload).decode("ascii")
    if size is not None:
        record["payload_bytes"], record["payload_sha256"] = size, digest
    if line is not None:
        record["line"] = line
    return orjson.dumps(record) + b"\n"


def from_json(raw: bytes) -> DeadLetter:
    record = orjson.loads(raw)
    payload = (
        base64.b64decode(record["payload_b64"])
        if "payload_b64" in record
        else record["payload"].encode("utf-8")
    )
    return DeadLetter(
        topic=record["topic"],
        payload=payload,
        reason=record["reason"],
        detail=record["detail"],
        received_ns=record["received_ns"],
        dead_lettered_ns=record["dead_lettered_ns"],
        line=record.get("line"),
        payload_bytes=record.get("payload_bytes"),
        payload_sha256=record.get("payload_sha256"),
    )


class DeadLetterFile:
    def __init__(
        self,
        path: Path,
        max_bytes: int,
        on_error: Callable[[str], None],
        publish: Callable[[bytes], None] | None = None,
        keep_payload_bytes: int = 65536,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        # payloads up to this are kept whole (replayable); longer ones as their first bytes,
        # and topics and refused lines are cut to it too. At most max_bytes / 32: three such
        # parts, even escaped 6x by JSON (NUL bytes), stay under max_bytes, so one letter never
        # outgrows the file
        self.limit = min(keep_payload_bytes, max_bytes // 32)
        self._on_error = on_error
        self._publish = publish
        self._file: IO[bytes] | None = None
        self._size = 0
        self.written = 0
        # a letter was lost since the last flush (its write raised): whoever settles it must
        # not ack its message, so the broker keeps it and redelivers it
        self._lost = False

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._open_locked()
        self._size = self._file.tell()

    def write(self, letter: DeadLetter) -> None:
        data = to_json(letter, self.limit)
        try:
            if self._file is None:
                self.open()
            assert self._file is not None
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            self._file.write(data)
            self._size += len(data)
            self.written += 1
        except (OSError, IngestdError) as exc:  # IngestdError: the file is locked elsewhere
            self._lost = True
            self._on_error(f"{self.path}: {getattr(exc, 'strerror', None) or exc}")
        if self._publish is not None:
            self._publish(data)

    def _rotate(self) -> None:
        assert self._file is not None
        file, self._file = self._file, None  # reopened by the next write if this fails
        file.close()
        self.path.replace(self.path.with_name(self.path.name + ".1"))
        self._file = self._open_locked()
        self._size = 0

    def _open_locked(self) -> IO[bytes]:
        file = open_private(self.path, "ab", buffering=64 * 1024)
        if not lock_exclusive(file):
            file.close()
            raise IngestdError(f"{self.path} is in use by another ingestd (deadletter.path)")
        return file

    def flush(self) -> bool:
        """Hand what was written to the OS. True if every letter since the last flush is now
        with it (a crash of ingestd cannot lose them); False if one was lost or the flush
        failed (ENOSPC, EIO): their messages must not be acked."""
        stored, self._lost = not self._lost, False
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                self._on_error(f"{self.path}: {exc.strerror}")
                return False
        return stored

    async def flush_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def read_dead_letters(path: Path) -> list[DeadLetter]:
    letters = []
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                letters.append(from_json(raw))
    return letters
