"""Line protocol, escaping in one place. Byte-for-byte what influxdb-client's Point would write
(sorted tags and fields, "30" for 30.0, "7i" for ints), which a property test holds us to."""

from __future__ import annotations

from ingestd.records import FieldValue, Point

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


def escape_measurement(name: str) -> str:
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
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


def to_line(point: Point) -> str:
    """One point as one line of line protocol, nanosecond timestamp, no trailing newline."""
    parts = [escape_measurement(point.measurement)]
    for key, value in sorted(point.tags):
        if key and value:
            parts.append(f",{escape_key(key)}={escape_tag_value(value)}")
    parts.append(" ")
    parts.append(
        ",".join(
            f"{escape_key(key)}={format_field_value(value)}" for key, value in sorted(point.fields)
        )
    )
    parts.append(f" {point.time_ns}")
    return "".join(parts)
