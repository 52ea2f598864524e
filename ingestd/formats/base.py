"""What every ecosystem format shares: its input, its output, and how raw values become readings.

A format is a pure function from one message (topic levels, payload) to samples: points before
typing. The transform stage then does for every format what it does for the p4n4 ones: skips
absent readings, applies the route's units and types, checks limits. A format returns None for
traffic that is not a measurement (availability, LWT, discovery, bridge state): counted as
ignored, never as an error. Bad data raises MessageRejected with a bounded reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, NamedTuple, Protocol

from ingestd.decode import flatten, is_absent, parse_json
from ingestd.errors import DropReason, MessageRejected
from ingestd.timestamps import to_ns

Tags = tuple[tuple[str, str], ...]


class FormatInput(NamedTuple):
    levels: list[str]  # the topic's levels
    rest: list[str]  # the levels a trailing '#' of the route's template matched
    segments: dict[str, str]  # the template's named levels
    payload: bytes
    timezone: tzinfo  # for payload times without an offset (Tasmota's Time)
    max_readings: int
    state: FormatState | None = None  # the format's memory across messages (Sparkplug births)
    received_ns: int = 0  # for what a format rate-limits (Sparkplug rebirth requests)


class Sample(NamedTuple):
    """One point before typing: raw values, absent ones included (they are skipped later)."""

    measurement: str
    tags: Tags
    fields: list[tuple[str, Any]]
    time_ns: int | None  # None: the receive time


Samples = list[Sample] | None  # None: not a measurement, ignored


class Remembered(Protocol):
    """Memory that outlives the process: the service saves it (under `state.path`) when
    `changed` is set, and loads it at startup."""

    changed: bool

    def to_json(self) -> bytes: ...

    def load_json(self, data: bytes) -> None: ...


class FormatState(Remembered, Protocol):
    """What a format remembers between messages, saved before the message that changed it is
    acked. `outbox`: messages the format asks to publish (a Sparkplug rebirth request); the
    pipeline hands them to the service when the route allows it, and empties it either way."""

    outbox: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    # default topic templates, used (and subscribed to) when the route sets no topic
    topics: tuple[str, ...]
    samples: Callable[[FormatInput], Samples]
    # for a format with memory: one fresh state per pipeline
    new_state: Callable[[], FormatState] | None = None


_BOOLEANS = {"on": True, "off": False, "true": True, "false": False}
# a plain decimal number; a leading zero before more digits marks an identifier ("0042", a meter
# serial), which stays a string
_NUMBER = re.compile(r"-?(0|[1-9]\d{0,19})(\.\d{1,20})?")


def reading(value: Any) -> Any:
    """A payload value as ingestd stores it, the same way in every format: ON/OFF, on/off and
    true/false are booleans; a numeric string is a number, unless a leading zero marks it as an
    identifier; anything else is kept as it is (absent markers are skipped later)."""
    if isinstance(value, str) and len(value) <= 42:
        text = value.strip()
        lowered = text.lower()
        if lowered in _BOOLEANS:
            return _BOOLEANS[lowered]
        if _NUMBER.fullmatch(text):
            return float(text)
    return value


def path_value(node: Any, *path: str | int) -> Any:
    """The value at a path of keys and list indexes in decoded JSON, or None where it stops."""
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and len(node) > part else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def json_object(payload: bytes) -> dict[str, Any]:
    data = parse_json(payload)
    if not isinstance(data, dict):
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"expected a JSON object, got {type(data).__name__}"
        )
    return data


def flat_fields(
    node: dict[str, Any] | list[Any], max_readings: int, prefix: str = ""
) -> list[tuple[str, Any]]:
    """Nested objects flattened to dotted names, each value through `reading`."""
    out: list[tuple[str, Any]] = []
    flatten(node, prefix, out, max_readings)
    return [(key, reading(value)) for key, value in out]


def payload_time(value: Any, timezone: tzinfo, unit: str = "auto") -> int | None:
    """A payload's own time in ns, or None (receive time) when it has none."""
    if is_absent(value):
        return None
    return to_ns(value, unit, timezone)


def fahrenheit_to_celsius(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value - 32) * 5 / 9
    return value


def text(value: Any) -> str | None:
    """A scalar as a tag value, or None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool | dict | list) or value is None:
        return None
    return str(value)


def tags_of(*pairs: tuple[str, Any]) -> Tags:
    """Tags from (key, value) pairs, leaving out the empty ones."""
    out = []
    for key, value in pairs:
        as_text = text(value)
        if as_text is not None:
            out.append((key, as_text))
    return tuple(out)
