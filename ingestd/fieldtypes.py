"""One InfluxDB type per field: decided by configuration, by what the database already holds, or
by the first sighting, and every later value coerced losslessly to it or rejected.

A field that changes type (21 then 21.5, "100.00" then 100) is InfluxDB's "field type conflict":
the most common complaint about Node-RED's influx node. The memory outlives the process (the
service saves it under state.path, like a format's state) and is reconciled with the database:
its types are learned at startup (SHOW FIELD KEYS), and from the answer to a write that
conflicted. A "no reading" never gets here, so it never decides a type. Pure: no I/O, no
telemetry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import orjson

from ingestd.errors import DropReason, MessageRejected
from ingestd.records import FieldValue

MAX_REMEMBERED_FIELDS = 100_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"true", "on", "yes", "1", "open"})
_FALSE = frozenset({"false", "off", "no", "0", "closed"})


def _conflict(key: str, value: object, wanted: str) -> MessageRejected:
    # both types named: the one the value has, the one the field holds
    kind = (
        natural_type(value) if isinstance(value, bool | int | float | str) else type(value).__name__
    )
    return MessageRejected(
        DropReason.FIELD_TYPE_CONFLICT,
        f"field {key!r}: {value!r} ({kind}) is not a valid {wanted}, the field's type",
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


# InfluxDB's words for its field types, in SHOW FIELD KEYS and in write errors (1.x and 2.x)
INFLUX_TYPES = {"float": "float", "integer": "int", "string": "string", "boolean": "bool"}
# 1.x: 'field type conflict: input field "v" on measurement "t" is type string, already exists
# as type float dropped=1'; 2.x says the same inside its JSON message
_CONFLICT = re.compile(
    r'field type conflict: input field \\?"(?P<field>(?:[^"\\]|\\.)*)\\?" on measurement '
    r'\\?"(?P<measurement>(?:[^"\\]|\\.)*)\\?" is type \w+, already exists as type (?P<type>\w+)'
)


def _unescape(text: str) -> str:
    """A name as InfluxDB 2.x quotes it inside its JSON error text."""
    return text.replace('\\"', '"').replace("\\\\", "\\")


class FieldTypes:
    """One InfluxDB type per (measurement, field), bounded at `max_remembered` fields."""

    def __init__(self, max_remembered: int = MAX_REMEMBERED_FIELDS) -> None:
        self._types: dict[tuple[str, str], str] = {}
        self._max = max_remembered
        self.changed = False
        # told when a type is learned, so the service saves the memory soon (not per message)
        self.on_change: Callable[[], None] = lambda: None

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
                self._changed()
        return known

    def _changed(self) -> None:
        if not self.changed:
            self.changed = True
            self.on_change()

    def learn(self, measurement: str, key: str, influx_type: str) -> bool:
        """What the database holds wins over a first sighting. True if it changed a type."""
        wanted = INFLUX_TYPES.get(influx_type)
        ident = (measurement, key)
        if wanted is None or self._types.get(ident) == wanted:
            return False
        if ident not in self._types and len(self._types) >= self._max:
            return False
        self._types[ident] = wanted
        self._changed()
        return True

    def learn_database(self, held: dict[tuple[str, str], str]) -> int:
        """The database's (measurement, field) -> InfluxDB type; how many types changed."""
        return sum(self.learn(m, k, t) for (m, k), t in held.items())

    def learn_conflict(self, detail: str) -> bool:
        """The type a refused write says the field already has."""
        found = _CONFLICT.search(detail)
        if found is None:
            return False
        measurement, key = _unescape(found["measurement"]), _unescape(found["field"])
        return self.learn(measurement, key, found["type"])

    def configured_conflicts(
        self, configured: Mapping[tuple[str, str], str]
    ) -> list[tuple[str, str, str, str]]:
        """(measurement, field, configured, held) where a route's `types` disagrees with what
        is known (the database's types, once learned): its writes would be refused."""
        return [
            (m, k, want, self._types[(m, k)])
            for (m, k), want in configured.items()
            if self._types.get((m, k)) not in (None, want)
        ]

    def to_json(self) -> bytes:
        return orjson.dumps([[m, k, t] for (m, k), t in self._types.items()])

    def load_json(self, data: bytes) -> None:
        for measurement, key, kind in orjson.loads(data)[: self._max]:
            if kind in INFLUX_TYPES.values():
                self._types[(str(measurement), str(key))] = kind

    def __len__(self) -> int:
        return len(self._types)
