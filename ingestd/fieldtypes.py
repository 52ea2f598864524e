"""One InfluxDB type per field, for the life of the process: decided by configuration or by the
first sighting, and every later value coerced losslessly to it or rejected.

A field that changes type (21 then 21.5, "100.00" then 100) is InfluxDB's "field type conflict":
the most common complaint about Node-RED's influx node. Pure: no I/O, no telemetry.
"""

from __future__ import annotations

import math

from ingestd.errors import DropReason, MessageRejected
from ingestd.records import FieldValue

MAX_REMEMBERED_FIELDS = 100_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "on", "yes", "1", "open"})
_FALSE = frozenset({"false", "off", "no", "0", "closed"})


def _conflict(key: str, value: object, wanted: str) -> MessageRejected:
    return MessageRejected(
        DropReason.FIELD_TYPE_CONFLICT, f"field {key!r}: {value!r} is not a valid {wanted}"
    )


def coerce(key: str, value: FieldValue, wanted: str) -> FieldValue:
    """`value` as type `wanted`, losslessly, or MessageRejected(field_type_conflict)."""
    if wanted == "float":
        if isinstance(value, bool):
            raise _conflict(key, value, wanted)
        if isinstance(value, float):
            return value
        if isinstance(value, int):
            as_float = float(value)
            if math.isinf(as_float):
                raise MessageRejected(DropReason.INVALID_VALUE, f"field {key!r}: {value} overflows")
            return as_float
        try:
            parsed = float(value)
        except ValueError:
            raise _conflict(key, value, wanted) from None
        if not math.isfinite(parsed):
            raise MessageRejected(
                DropReason.INVALID_VALUE, f"field {key!r}: {value!r} is not finite"
            )
        return parsed
    if wanted == "int":
        if isinstance(value, bool):
            raise _conflict(key, value, wanted)
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise _conflict(key, value, wanted) from None
        if isinstance(value, float):
            if not value.is_integer():
                raise _conflict(key, value, wanted)
            value = int(value)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise MessageRejected(
                DropReason.INVALID_VALUE, f"field {key!r}: {value} overflows int64"
            )
        return value
    if wanted == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        raise _conflict(key, value, wanted)
    # string
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def natural_type(value: FieldValue) -> str:
    """The type a field gets at its first sighting. Numbers are floats unless configured `int`:
    that way a device that sends 21 and later 21.5 never hits InfluxDB's field type conflict."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float"
    return "string"


class FieldTypes:
    """One InfluxDB type per (measurement, field) for the life of the process."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED_FIELDS) -> None:
        self._types: dict[tuple[str, str], str] = {}
        self._max = max_remembered

    def type_for(
        self, measurement: str, key: str, value: FieldValue, configured: str | None
    ) -> str:
        if configured is not None:
            return configured
        ident = (measurement, key)
        known = self._types.get(ident)
        if known is None:
            known = natural_type(value)
            if len(self._types) < self._max:
                self._types[ident] = known
        return known

    def __len__(self) -> int:
        return len(self._types)
