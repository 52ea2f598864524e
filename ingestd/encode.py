"""Line protocol, escaping in one place. Byte-for-byte what influxdb-client's Point would write
(sorted tags and fields, "30" for 30.0, "7i" for ints), which a property test holds us to."""

from __future__ import annotations

from ingestd.errors import DropReason, MessageRejected
from ingestd.records import FieldValue, Point

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


def _refused(what: str, name: str) -> MessageRejected:
    return MessageRejected(
        DropReason.SCHEMA_MISMATCH,
        f"{what} {name[:60]!r} ends with a backslash, which line protocol cannot carry"
        if name
        else f"empty {what}: InfluxDB refuses it",
    )


def escape_measurement(name: str) -> str:
    if name.endswith("\\"):  # it would escape the separator after it
        raise _refused("measurement", name)
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    """A tag or field key, escaped; MessageRejected for one InfluxDB would refuse (empty, or
    ending in a backslash: measured on InfluxDB 1.6, both `k\\=1` and `k\\\\=1` are refused). Checked
    where a key is first escaped: the encoder caches keys and series, so it costs nothing per
    message, and the line is dead-lettered here instead of costing the bisection requests."""
    if not key or key.endswith("\\"):
        raise _refused("key", key)
    return key.translate(_ESCAPE_KEY)


def escape_tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the separator that follows it.
    return escaped + " " if escaped.endswith("\\") else escaped


def format_field_value(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        text = str(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, int):
        return f"{value}i"
    return '"' + value.translate(_ESCAPE_STRING) + '"'


def series_prefix(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """`measurement,tag=value,...`, escaped, tags sorted: everything a line has before its fields."""
    parts = [escape_measurement(measurement)]
    for key, value in sorted(tags):
        if key and value:
            parts.append(f",{escape_key(key)}={escape_tag_value(value)}")
    return "".join(parts)


def field_set(fields: tuple[tuple[str, FieldValue], ...]) -> str:
    return ",".join(
        f"{escape_key(key)}={format_field_value(value)}" for key, value in sorted(fields)
    )


def to_line(point: Point) -> str:
    """One point as one line of line protocol, nanosecond timestamp, no trailing newline."""
    return (
        f"{series_prefix(point.measurement, point.tags)} {field_set(point.fields)} {point.time_ns}"
    )


def _check_length(what: str, name: str, max_bytes: int) -> None:
    if len(name) > max_bytes // 4 and len(name.encode()) > max_bytes:
        raise MessageRejected(
            DropReason.LIMIT_EXCEEDED,
            f"{what} {name[:60]!r}... is {len(name.encode())} bytes > limits.max_key_bytes = "
            f"{max_bytes}",
        )


class LineEncoder:
    """`to_line` for the hot path: a device's series prefix is escaped once, not per message.
    The cache is cleared at `max_series`, so invented series cost time, never memory. Names
    longer than `max_key_bytes` (measurement, tag and field keys) are refused where they are
    first escaped, so the check costs nothing per message."""

    def __init__(self, max_series: int = 100_000, max_key_bytes: int = 1 << 16) -> None:
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        self._keys: dict[str, str] = {}  # escaped field keys, bounded the same way
        self._max_series = max_series
        self._max_key_bytes = max_key_bytes

    def _key(self, key: str) -> str:
        escaped = self._keys.get(key)
        if escaped is None:
            _check_length("field key", key, self._max_key_bytes)
            if len(self._keys) >= self._max_series:
                self._keys.clear()
            escaped = self._keys[key] = escape_key(key)
        return escaped

    def _prefix(self, measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
        _check_length("measurement", measurement, self._max_key_bytes)
        for key, _value in tags:
            _check_length("tag key", key, self._max_key_bytes)
        if len(self._prefixes) >= self._max_series:
            self._prefixes.clear()
        prefix = self._prefixes[measurement, tags] = series_prefix(measurement, tags)
        return prefix

    def to_line(self, point: Point) -> str:
        series = (point.measurement, point.tags)
        prefix = self._prefixes.get(series)
        if prefix is None:
            prefix = self._prefix(point.measurement, point.tags)
        fields = point.fields
        if len(fields) == 1:
            key, value = fields[0]
            return f"{prefix} {self._key(key)}={format_field_value(value)} {point.time_ns}"
        key_of = self._key
        field_text = ",".join(f"{key_of(k)}={format_field_value(v)}" for k, v in sorted(fields))
        return f"{prefix} {field_text} {point.time_ns}"
