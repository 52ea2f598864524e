"""Timestamps to integer nanoseconds, without losing precision.

Numbers: epoch seconds, milliseconds, microseconds or nanoseconds, by magnitude unless the unit is
configured. Floats go through their shortest decimal repr, so 1700000000.123 is exactly
1700000000123000000 ns, not the binary float's 1700000000122999906. ISO-8601 strings keep all nine
fractional digits (datetime.fromisoformat would drop the last three).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation

from ingestd.errors import DropReason, MessageRejected

_SCALE_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}

# Magnitude bands for "auto": below 1e11 seconds (until year 5138), below 1e14 milliseconds,
# below 1e17 microseconds, else nanoseconds.
_BANDS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))

# Parsing runs inline on the MQTT read path, so its work is bounded: a time string longer than
# this is refused before any parsing (ISO 8601 with nine fractional digits and an offset is 35),
# and a number whose exponent puts it past 2**63 ns in every unit is refused before it is scaled
# (Decimal("1e999999") * 10**9 builds a million-digit integer: 26 s for 26 bytes).
MAX_TIME_TEXT = 64
_MAX_EXPONENT = 19  # 2**63 ns ~ 9.2e18: any unit's scaled value of 1e20 or more is out of range
_MIN_NS = 0
_MAX_NS = 2**63 - 1


def detect_unit(value: float) -> str:
    magnitude = abs(value)
    for bound, unit in _BANDS:
        if magnitude < bound:
            return unit
    return "ns"


def _checked(ns: int, original: object) -> int:
    if not _MIN_NS <= ns <= _MAX_NS:
        raise MessageRejected(
            DropReason.INVALID_TIMESTAMP, f"timestamp {original!r} is out of range"
        )
    return ns


def _decimal_to_ns(number: Decimal, unit: str, original: object) -> int:
    if not number.is_finite():
        raise MessageRejected(DropReason.INVALID_TIMESTAMP, f"timestamp {original!r} is not finite")
    if number.adjusted() > _MAX_EXPONENT:
        raise MessageRejected(
            DropReason.INVALID_TIMESTAMP, f"timestamp {str(original)[:40]!r} is out of range"
        )
    if unit == "auto":
        unit = detect_unit(float(number))
    return _checked(int((number * _SCALE_NS[unit]).to_integral_value()), original)


def number_to_ns(value: float, unit: str = "auto") -> int:
    if isinstance(value, int):
        return _checked(value * _SCALE_NS[detect_unit(value) if unit == "auto" else unit], value)
    return _decimal_to_ns(Decimal(repr(value)), unit, value)


def _split_fraction(text: str) -> tuple[str, str, str] | None:
    """`2024-01-01T12:00:00.123456789+01:00` -> (`...12:00:00`, `123456789`, `+01:00`): the
    first `.` or `,`, after two digits and before at least one. One pass: linear in the text."""
    for i, char in enumerate(text):
        if char in ".,":
            end = i + 1
            while end < len(text) and text[end].isdigit():
                end += 1
            if i >= 2 and text[i - 1].isdigit() and text[i - 2].isdigit() and end > i + 1:
                return text[:i], text[i + 1 : end], text[end:]
            return None
    return None


def ns_to_iso(ns: int) -> str:
    """A nanosecond Unix time as ISO 8601 in UTC (what events and alerts carry)."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def iso_to_ns(text: str, naive_tz: tzinfo = UTC) -> int:
    fraction_ns = 0
    head = text.strip()
    parts = _split_fraction(head)
    if parts is not None:
        head, digits, tail = parts
        fraction_ns = int(digits[:9].ljust(9, "0"))
        head += tail
    if head.endswith(("Z", "z")):
        head = head[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(head)
    except ValueError as exc:
        raise MessageRejected(
            DropReason.INVALID_TIMESTAMP, f"not an ISO-8601 time: {text!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000 + fraction_ns
    return _checked(ns, text)


def to_ns(value: object, unit: str = "auto", naive_tz: tzinfo = UTC) -> int:
    """Any timestamp a payload may carry, to epoch nanoseconds."""
    if isinstance(value, bool):
        raise MessageRejected(DropReason.INVALID_TIMESTAMP, f"timestamp {value!r} is a boolean")
    if isinstance(value, int | float):
        return number_to_ns(value, unit)
    if isinstance(value, str):
        if len(value) > MAX_TIME_TEXT:
            raise MessageRejected(
                DropReason.INVALID_TIMESTAMP,
                f"timestamp of {len(value)} characters (at most {MAX_TIME_TEXT}): {value[:40]!r}...",
            )
        text = value.strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            return iso_to_ns(text, naive_tz)
        return _decimal_to_ns(number, unit, value)
    raise MessageRejected(DropReason.INVALID_TIMESTAMP, f"timestamp of type {type(value).__name__}")
