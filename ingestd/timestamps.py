"""Timestamps to integer nanoseconds, without losing precision.

Numbers: epoch seconds, milliseconds, microseconds or nanoseconds, by magnitude unless the unit is
configured. Floats go through their shortest decimal repr, so 1700000000.123 is exactly
1700000000123000000 ns, not the binary float's 1700000000122999906. ISO-8601 strings keep all nine
fractional digits (datetime.fromisoformat would drop the last three).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation

from ingestd.errors import DropReason, MessageRejected

_SCALE_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}

# Magnitude bands for "auto": below 1e11 seconds (until year 5138), below 1e14 milliseconds,
# below 1e17 microseconds, else nanoseconds.
_BANDS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))

_ISO_FRACTION = re.compile(r"^([^.,]*T?[^.,]*?\d\d(?::?\d\d)?)[.,](\d+)(.*)$")
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
    if unit == "auto":
        unit = detect_unit(float(number))
    return _checked(int((number * _SCALE_NS[unit]).to_integral_value()), original)


def number_to_ns(value: float, unit: str = "auto") -> int:
    if isinstance(value, int):
        return _checked(value * _SCALE_NS[detect_unit(value) if unit == "auto" else unit], value)
    return _decimal_to_ns(Decimal(repr(value)), unit, value)


def iso_to_ns(text: str, naive_tz: tzinfo = UTC) -> int:
    fraction_ns = 0
    head = text.strip()
    match = _ISO_FRACTION.match(head)
    if match:
        digits = match.group(2)
        fraction_ns = int(digits[:9].ljust(9, "0"))
        head = match.group(1) + match.group(3)
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
        text = value.strip()
        try:
            number = Decimal(text)
        except InvalidOperation:
            return iso_to_ns(text, naive_tz)
        return _decimal_to_ns(number, unit, value)
    raise MessageRejected(DropReason.INVALID_TIMESTAMP, f"timestamp of type {type(value).__name__}")
