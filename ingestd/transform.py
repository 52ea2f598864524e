"""A routed payload becomes points: readings found, typed, unit-converted and time-stamped.

Pure: no I/O, no telemetry. Returns points or raises MessageRejected with a bounded reason.
It also returns whether the payload lacked the route's time_key, so the pipeline can count
points stamped with the receive time although the route expects a time in the payload.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from ingestd.config import LimitSettings
from ingestd.decode import flatten, is_absent, parse_bare, parse_json, validate_envelope
from ingestd.errors import DropReason, MessageRejected
from ingestd.fieldtypes import FieldTypes, coerce
from ingestd.formats import FormatInput, FormatState
from ingestd.records import FieldValue, Point
from ingestd.routes import Route
from ingestd.timestamps import to_ns

DEFAULT_LIMITS = LimitSettings()

# The points, and whether the route names a time_key the payload did not hold (they are then
# stamped with the receive time). A plain tuple: it is built once per message.
Transformed = tuple[list[Point], bool]


def _get_path(data: dict[str, Any], path: str | tuple[str, ...]) -> Any:
    """A key, or a dotted path; an exact key wins, so `"PM2.5"` still works."""
    if isinstance(path, str):
        if path in data:
            return data[path]
        path = tuple(path.split("."))
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _field(route: Route, types: FieldTypes, measurement: str, key: str, raw: Any) -> FieldValue:
    if key == "time":
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH,
            "field key 'time' is reserved by InfluxDB; set time_key or exclude it",
        )
    if isinstance(raw, float) and not math.isfinite(raw):
        raise MessageRejected(DropReason.INVALID_VALUE, f"field {key!r} is not finite")
    conversion = route.conversions.get(key)
    value: FieldValue = raw
    if conversion is not None:
        number = coerce(key, raw, "float")
        assert isinstance(number, float)
        value = conversion.apply(number)
    return coerce(key, value, types.type_for(measurement, key, value, route.types.get(key)))


def _tags(route: Route, segments: dict[str, str]) -> list[tuple[str, str]]:
    tags = list(route.static_tags)
    tags.extend((name, segments[name]) for name in route.tag_segments)
    return tags


def _checked_tags(
    tags: list[tuple[str, str]], limits: LimitSettings
) -> tuple[tuple[str, str], ...]:
    for key, value in tags:
        if (
            len(value) > limits.max_tag_value_bytes // 4
            and len(value.encode()) > limits.max_tag_value_bytes
        ):
            raise MessageRejected(
                DropReason.LIMIT_EXCEEDED,
                f"tag {key!r} is longer than limits.max_tag_value_bytes = {limits.max_tag_value_bytes}",
            )
    return tuple(tags)


class SeriesGuard:
    """At most `max_series` distinct series (measurement + tag set) per route, and at most
    `max_per_identity` of them per identity on a route (the route's `identity` segment, the
    device: one device inventing series cannot spend the budget of the others). Remembers hashes
    of the series it admitted and a count per identity, so memory is bounded by the limit times
    the number of routes. Only a series not seen before costs more than one set lookup."""

    def __init__(self, max_series: int, max_per_identity: int | None = None) -> None:
        self.max_series = max_series
        self.max_per_identity = max_per_identity or max_series
        self._seen: dict[int, set[int]] = {}
        self._per_identity: dict[int, dict[str, int]] = {}

    def admit(
        self, route: Route, point: Point, segments: dict[str, str] | None = None
    ) -> str | None:
        """Count `point`'s series against its route's budget and, where the route names an
        identity level, against the budget of that level's value in `segments` (the topic's
        named levels); MessageRejected past either. Returns the identity when this is its
        first series on the route in this process (a device seen for the first time, or
        again after a restart), else None."""
        seen = self._seen.setdefault(route.index, set())
        # a route builds a series' tags in the same order every time: no need to sort
        series = hash((point.measurement, point.tags))
        if series in seen:
            return None
        if len(seen) >= self.max_series:
            raise MessageRejected(
                DropReason.CARDINALITY_LIMIT,
                f"route {route.template.text!r} already has limits.max_series_per_route = "
                f"{self.max_series} series",
            )
        identity = segments.get(route.identity) if segments and route.identity else None
        held = 0
        if identity is not None:
            counts = self._per_identity.setdefault(route.index, {})
            held = counts.get(identity, 0)
            if held >= self.max_per_identity:
                raise MessageRejected(
                    DropReason.CARDINALITY_LIMIT,
                    f"{route.identity} {identity!r} already has limits.max_series_per_device = "
                    f"{self.max_per_identity} series on route {route.template.text!r}",
                )
            counts[identity] = held + 1
        seen.add(series)
        return identity if identity is not None and not held else None


def _measurement(route: Route, segments: dict[str, str]) -> str:
    measurement = route.measurement_for(segments)
    if not measurement or measurement.startswith("#"):
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"invalid measurement name {measurement!r}"
        )
    return measurement


def _time(route: Route, value: Any, received_ns: int) -> int:
    if value is None:
        return received_ns
    return to_ns(value, route.time_unit, route.timezone)


def _time_missing(route: Route, value: Any) -> bool:
    return value is None and route.time_key is not None


def value_points(
    route: Route,
    segments: dict[str, str],
    payload: bytes,
    received_ns: int,
    *,
    types: FieldTypes,
    limits: LimitSettings,
) -> Transformed:
    data = parse_bare(payload)
    stamp: Any = None
    if isinstance(data, dict):
        assert route.envelope is not None
        envelope = validate_envelope(route.envelope, data)
        data, stamp = envelope.value, envelope.ts
    elif isinstance(data, list):
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"expected a value or an object, got {type(data).__name__}"
        )
    if data is None or (data.__class__ is str and is_absent(data)):  # JSON has no NaN
        return [], False
    measurement = _measurement(route, segments)
    value = _field(route, types, measurement, route.field, data)
    point = Point(
        measurement,
        _checked_tags(_tags(route, segments), limits),
        ((route.field, value),),
        _time(route, stamp, received_ns),
    )
    return [point], _time_missing(route, stamp)


def object_points(
    route: Route,
    segments: dict[str, str],
    payload: bytes,
    received_ns: int,
    *,
    types: FieldTypes,
    limits: LimitSettings,
) -> Transformed:
    data = parse_json(payload)
    if not isinstance(data, dict):
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"expected a JSON object, got {type(data).__name__}"
        )
    readings = data if route.readings is None else _get_path(data, route.readings)
    if not isinstance(readings, dict):
        where = ".".join(route.readings or ())
        raise MessageRejected(DropReason.SCHEMA_MISMATCH, f"no object at {where!r}")
    measurement = _measurement(route, segments)
    tags = _tags(route, segments)
    for key in route.tag_keys:
        tag = _get_path(data, key)
        if tag is not None and not isinstance(tag, dict | list):
            tags.append((key, coerce(key, tag, "string")))  # type: ignore[arg-type]
    stamp = _get_path(data, route.time_key) if route.time_key else None
    flat: list[tuple[str, Any]] = []
    flatten(readings, "", flat, limits.max_readings)
    fields = tuple(
        (key, _field(route, types, measurement, key, raw))
        for key, raw in flat
        # JSON has no NaN: only null and the text markers can mean "no reading" here, and the
        # hot path checks them without a call per number
        if raw is not None
        and not (raw.__class__ is str and is_absent(raw))
        and key not in route.skip_keys
    )
    if not fields:
        if any(key not in route.skip_keys for key, _raw in flat):
            return [], False  # only "no reading" markers: ignored, not an error
        raise MessageRejected(DropReason.NO_FIELDS, "the object holds no readings")
    point = Point(
        measurement, _checked_tags(tags, limits), fields, _time(route, stamp, received_ns)
    )
    return [point], _time_missing(route, stamp)


def sample_points(
    route: Route,
    segments: dict[str, str],
    topic: str,
    payload: bytes,
    received_ns: int,
    *,
    types: FieldTypes,
    limits: LimitSettings = DEFAULT_LIMITS,
    state: FormatState | None = None,
) -> list[Point]:
    """An ecosystem format's samples as typed points. [] when the message is not a reading
    (the format skips it, or it holds only "no reading" markers)."""
    assert route.codec is not None
    levels = topic.split("/")
    rest = levels[len(route.template.literals) :] if route.template.rest else []
    found = route.codec.samples(
        FormatInput(
            levels, rest, segments, payload, route.timezone, limits.max_readings, state, received_ns
        )
    )
    if found is None:
        return []
    base = _tags(route, segments)
    named = {key for key, _value in base}
    # bounds for every format at once: points and readings per message
    if len(found) > limits.max_readings or sum(len(s.fields) for s in found) > limits.max_readings:
        raise MessageRejected(
            DropReason.LIMIT_EXCEEDED, f"more than limits.max_readings = {limits.max_readings}"
        )
    points = []
    absent = False
    for sample in found:
        measurement = _measurement(route, segments) if route.measurement else sample.measurement
        fields = []
        for key, raw in sample.fields:
            if key in route.skip_keys:
                continue
            if is_absent(raw):
                absent = True
                continue
            value = orjson.dumps(raw).decode() if isinstance(raw, dict | list) else raw
            fields.append((key, _field(route, types, measurement, key, value)))
        if not fields:
            continue
        tags = base + [tag for tag in sample.tags if tag[0] not in named]
        stamp = received_ns if sample.time_ns is None else sample.time_ns
        points.append(Point(measurement, _checked_tags(tags, limits), tuple(fields), stamp))
    if not points and not absent:
        raise MessageRejected(DropReason.NO_FIELDS, "the message holds no readings")
    return points


def to_points(
    route: Route,
    segments: dict[str, str],
    payload: bytes,
    received_ns: int,
    *,
    types: FieldTypes,
    limits: LimitSettings = DEFAULT_LIMITS,
) -> Transformed:
    if route.format == "value":
        return value_points(route, segments, payload, received_ns, types=types, limits=limits)
    return object_points(route, segments, payload, received_ns, types=types, limits=limits)
