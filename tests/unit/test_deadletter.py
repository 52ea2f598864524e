"""A dead letter stays small whatever a publisher sends (issue 12 item 4): a payload over the
payload limit is kept as its first bytes with its size and SHA-256, and no letter outgrows
deadletter.max_bytes. Before, a 32 MiB message wrote a 192 MiB line (NUL bytes
escape to 6 in JSON)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson

from ingestd.deadletter import TRUNCATED_PREFIX_BYTES, DeadLetterFile, from_json, read_dead_letters
from ingestd.records import DeadLetter


def letter(payload: bytes, topic: str = "sensors/d/t", line: str | None = None) -> DeadLetter:
    return DeadLetter(topic, payload, "payload_too_large", "too big", 1, 2, line)


def written(tmp_path: Path, dead: DeadLetter, max_bytes: int = 64 * 1024 * 1024) -> bytes:
    file = DeadLetterFile(tmp_path / "dl.jsonl", max_bytes, on_error=lambda _e: None)
    file.open()
    file.write(dead)
    file.close()
    return (tmp_path / "dl.jsonl").read_bytes()


def test_a_payload_over_the_limit_keeps_its_head_size_and_hash(tmp_path: Path) -> None:
    payload = b"\x00" * (32 * 1024 * 1024)
    data = written(tmp_path, letter(payload))
    assert len(data) < 8 * TRUNCATED_PREFIX_BYTES  # was 6 x 32 MiB
    record = orjson.loads(data)
    assert record["payload_bytes"] == len(payload)
    assert record["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert from_json(data).payload == payload[:TRUNCATED_PREFIX_BYTES]


def test_a_payload_within_the_limit_is_kept_whole_and_replayable(tmp_path: Path) -> None:
    payload = b"\x00" * 60_000
    (kept,) = read_dead_letters_of(tmp_path, letter(payload))
    assert kept.payload == payload and kept.payload_bytes is None


def read_dead_letters_of(tmp_path: Path, dead: DeadLetter) -> list[DeadLetter]:
    written(tmp_path, dead)
    return read_dead_letters(tmp_path / "dl.jsonl")


def test_no_letter_outgrows_max_bytes(tmp_path: Path) -> None:
    control = "\x01" * 90_000  # escaped 6x by JSON
    huge = letter(b"\x00" * 100_000, topic="t/" + control, line="m v=" + control)
    assert len(written(tmp_path, huge, max_bytes=16 * 1024)) <= 16 * 1024


def test_a_truncated_letter_survives_a_round_trip_unchanged(tmp_path: Path) -> None:
    data = written(tmp_path, letter(b"z" * 200_000))
    again = from_json(data)
    from ingestd.deadletter import to_json

    assert to_json(again) == data  # replay rewrites it as it was
