"""What ingestd writes for itself is private and goes where it was meant to (issue 12 item 5):
spool segments, the spool cursor and the dead-letter file are created 0600 under a permissive
umask (they were 0644), and a symlink planted in their place is not followed (it was)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.buffer import Batch
from ingestd.deadletter import DeadLetterFile
from ingestd.records import DeadLetter, RawMessage
from ingestd.spool import DiskSpool


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def batch() -> Batch:
    return Batch(["m v=1 1"], [RawMessage("t", b"1", 1)])


def spool_in(directory: Path) -> DiskSpool:
    return DiskSpool(directory, 1 << 20, 1 << 20, fsync=False)


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    assert spool.store(batch())
    taken = spool.take()
    assert taken is not None
    spool.accept(taken)
    for name in ("0000000001.seg", "cursor"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_the_dead_letter_file_is_private(tmp_path: Path) -> None:
    file = DeadLetterFile(tmp_path / "dl.jsonl", 1 << 20, on_error=lambda _e: None)
    file.open()
    file.close()
    assert stat.S_IMODE((tmp_path / "dl.jsonl").stat().st_mode) == 0o600


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "0000000001.seg").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links"):  # the caller treats it as a full disk
        spool_in(tmp_path / "spool").store(batch())
    assert target.read_bytes() == b"keep"
    errors: list[str] = []
    (tmp_path / "dl.jsonl").symlink_to(target)
    letters = DeadLetterFile(tmp_path / "dl.jsonl", 1 << 20, on_error=errors.append)
    letters.write(DeadLetter("t", b"x", "invalid_json", "d", 1, 2))
    assert target.read_bytes() == b"keep" and errors
