"""Immutable records that travel the hot path.

The two made once per message (RawMessage, Point) are NamedTuples: a frozen slotted dataclass
costs ~1.5 µs to construct (its __init__ goes through object.__setattr__ per field), a
NamedTuple ~0.3 µs, and at 10k msg/s that difference alone is ~2% of a core. Both are as
immutable and hashable as the dataclass was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

FieldValue = float | int | bool | str


class RawMessage(NamedTuple):
    """One MQTT message as the broker handed it to us."""

    topic: str
    payload: bytes
    received_ns: int
    retain: bool = False
    # what acknowledging it to the broker takes: packet id (0: nothing to ack, QoS 0), QoS, and
    # the connection it arrived on (an ack is only valid on that connection)
    mid: int = 0
    qos: int = 0
    connection: int = 0


class Point(NamedTuple):
    """One InfluxDB point. Tags and fields are tuples of (key, value) so the record stays hashable."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    time_ns: int


# a series: measurement and tags, as a Point holds them (what the rules remember things by)
Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message (or the line it became) that was not written, and why."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_ns: int
    dead_lettered_ns: int
    line: str | None = None
    # set when the stored payload is only its first bytes (too large to keep whole): the
    # original size and SHA-256; such a letter cannot be replayed
    payload_bytes: int | None = None
    payload_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line of a batch the database refused: its index in the batch, and why."""

    index: int
    detail: str


@dataclass(slots=True)
class WriteProgress:
    """How far a write of many requests got: parts of the batch still to send, as
    (offset, length), last first; the refusals so far; and how many requests a part the
    database refused has cost (the bisection's budget, influx.max_bisect_requests)."""

    pending: list[tuple[int, int]]
    rejected: list[Rejection]
    bisect_requests: int = 0
