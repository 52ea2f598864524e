"""Topic templates and compiled routes: the input contract, resolved once at startup.

A template is a topic with named levels: `sensors/{device}/{measurement}`. Named levels become
tags, except those the measurement name is built from. `+` matches one level without naming it,
a final `#` matches the rest. The first route that matches a topic wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter

from ingestd.config import FieldType, RouteSettings, Settings
from ingestd.decode import ValueEnvelope, envelope_adapter
from ingestd.errors import ConfigError
from ingestd.formats import FORMATS, Format
from ingestd.report import ReportRule
from ingestd.topics import CACHED_TOPIC_MAX_BYTES, filters_overlap
from ingestd.units import Conversion, parse_conversion

_NAMED_LEVEL = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    text: str
    # per level: a literal to compare, or None for a wildcard level
    literals: tuple[str | None, ...]
    # per level: the segment name, or None
    names: tuple[str | None, ...]
    rest: bool  # ends in '#'

    @classmethod
    def parse(cls, text: str, key: str) -> TopicTemplate:
        if not text or text.startswith("$"):
            raise ConfigError(key, f"invalid topic template {text!r}")
        levels = text.split("/")
        literals: list[str | None] = []
        names: list[str | None] = []
        for i, level in enumerate(levels):
            named = _NAMED_LEVEL.match(level)
            if level == "#":
                if i != len(levels) - 1:
                    raise ConfigError(key, "'#' must be the last level")
                break
            if named:
                if named.group(1) in names:
                    raise ConfigError(key, f"segment {{{named.group(1)}}} appears twice")
                literals.append(None)
                names.append(named.group(1))
            elif level == "+":
                literals.append(None)
                names.append(None)
            elif "{" in level or "}" in level or "+" in level or "#" in level:
                raise ConfigError(
                    key, f"a level must be a literal, '+', '#' or a whole {{name}}: {level!r}"
                )
            else:
                literals.append(level)
                names.append(None)
        return cls(text, tuple(literals), tuple(names), levels[-1] == "#")

    def match(self, levels: list[str]) -> dict[str, str] | None:
        count = len(self.literals)
        if len(levels) != count and not (self.rest and len(levels) > count):
            return None
        segments: dict[str, str] = {}
        for level, literal, name in zip(levels, self.literals, self.names, strict=False):
            if literal is not None:
                if level != literal:
                    return None
            elif name is not None:
                if not level:
                    return None
                segments[name] = level
        return segments

    @property
    def as_filter(self) -> str:
        """The template as an MQTT filter: every named level a '+', a trailing rest a '#'."""
        levels = ["+" if literal is None else literal for literal in self.literals]
        return "/".join([*levels, "#"] if self.rest else levels)

    def reachable_through(self, topic_filter: str) -> bool:
        """Whether subscribing to `topic_filter` delivers some topic this template matches."""
        return filters_overlap(topic_filter, self.as_filter)


@dataclass(frozen=True, slots=True)
class Route:
    index: int
    template: TopicTemplate
    format: str
    measurement: str  # a str.format template over segment names
    measurement_is_static: bool
    tag_segments: tuple[str, ...]
    static_tags: tuple[tuple[str, str], ...]
    value_key: str
    field: str
    readings: tuple[str, ...] | None
    tag_keys: tuple[str, ...]
    skip_keys: frozenset[str]
    time_key: str | None
    time_unit: str
    timezone: tzinfo
    envelope: TypeAdapter[ValueEnvelope] | None
    conversions: dict[str, Conversion]
    types: dict[str, FieldType]
    # an ecosystem format (ingestd/formats/), or None for value, object and ignore
    codec: Format | None = None
    request_rebirth: bool = False  # may publish what its format asks (Sparkplug rebirths)
    # the segment naming the publisher (RouteSettings.identity): series budgets count per value
    identity: str | None = None
    # report by exception (RouteSettings.report): None writes every reading
    report: ReportRule | None = None

    def measurement_for(self, segments: dict[str, str]) -> str:
        if self.measurement_is_static:
            return self.measurement
        return self.measurement.format_map(segments)


BUILT_IN_FORMATS = ("value", "object", "ignore")


def _templates(index: int, route: RouteSettings) -> tuple[Format | None, list[str]]:
    key = f"routes[{index}]"
    codec = FORMATS.get(route.format)
    if codec is None and route.format not in BUILT_IN_FORMATS:
        names = ", ".join([*BUILT_IN_FORMATS, *FORMATS])
        raise ConfigError(f"{key}.format", f"unknown format {route.format!r}; one of {names}")
    if route.topic is not None:
        return codec, [route.topic]
    if codec is None:
        raise ConfigError(f"{key}.topic", "required unless format names an ecosystem")
    return codec, list(codec.topics)


def _compile_route(index: int, route: RouteSettings) -> list[Route]:
    codec, topics = _templates(index, route)
    return [_compile_template(index, route, codec, topic) for topic in topics]


def _compile_template(index: int, route: RouteSettings, codec: Format | None, topic: str) -> Route:
    key = f"routes[{index}]"
    template = TopicTemplate.parse(topic, f"{key}.topic")
    segment_names = [n for n in template.names if n is not None]
    if route.measurement is not None:
        measurement = route.measurement
    elif "measurement" in segment_names:
        measurement = "{measurement}"
    elif route.format == "ignore" or codec is not None:
        measurement = ""  # ignored, or the format names it
    else:
        raise ConfigError(
            f"{key}.measurement",
            "set measurement, or name a topic level {measurement}",
        )
    used = _PLACEHOLDER.findall(measurement)
    for name in used:
        if name not in segment_names:
            raise ConfigError(f"{key}.measurement", f"{{{name}}} is not a level of {topic!r}")
    try:
        timezone: tzinfo = ZoneInfo(route.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{key}.timezone", f"unknown time zone {route.timezone!r}") from exc
    conversions = {
        name: parse_conversion(spec, f"{key}.units.{name}") for name, spec in route.units.items()
    }
    for name, wanted in route.types.items():
        if name in conversions and wanted in ("bool", "string"):
            raise ConfigError(f"{key}.types.{name}", "a converted field must be float or int")
    time_key = route.time_key or None  # time_key = "": the payloads carry no time
    readings = tuple(route.readings.split(".")) if route.readings else None
    skip = set(route.exclude)
    if readings is None and codec is None:
        # tag and time keys live beside the readings; keep them out of the fields
        skip.update(route.tag_keys)
        if time_key:
            skip.add(time_key)
    if route.request_rebirth and route.format != "sparkplug_b":
        raise ConfigError(f"{key}.request_rebirth", "only for format = 'sparkplug_b'")
    identity = route.identity
    if identity is None and "device" in segment_names:
        identity = "device"
    elif identity is not None and identity not in segment_names:
        raise ConfigError(f"{key}.identity", f"{{{identity}}} is not a level of {topic!r}")
    return Route(
        codec=codec,
        request_rebirth=route.request_rebirth,
        identity=identity,
        report=ReportRule(route.report) if route.report is not None else None,
        index=index,
        template=template,
        format=route.format,
        measurement=measurement,
        measurement_is_static=not used,
        tag_segments=tuple(n for n in segment_names if n not in used),
        static_tags=tuple(sorted(route.tags.items())),
        value_key=route.value_key,
        field=route.field,
        readings=readings,
        tag_keys=tuple(route.tag_keys),
        skip_keys=frozenset(skip),
        time_key=time_key,
        time_unit=route.time_unit,
        timezone=timezone,
        envelope=envelope_adapter(route.value_key, time_key) if route.format == "value" else None,
        conversions=conversions,
        types=dict(route.types),
    )


MAX_CACHED_TOPICS = 50_000


class RouteTable:
    """Compiled routes; `match` is on the hot path. Devices publish to the same topics again and
    again, so matches are cached per topic; the cache is cleared when it reaches its bound, so a
    publisher inventing topics costs time, never memory."""

    def __init__(self, routes: list[Route], max_cached: int = MAX_CACHED_TOPICS) -> None:
        self.routes = routes
        self._cache: dict[str, tuple[Route, dict[str, str]] | None] = {}
        self._max_cached = max_cached

    def match(self, topic: str) -> tuple[Route, dict[str, str]] | None:
        """The first route matching `topic` and its named levels (shared: do not mutate)."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = self._match(topic)
        if len(topic) <= CACHED_TOPIC_MAX_BYTES:  # characters: at most 4x as many bytes
            if len(self._cache) >= self._max_cached:
                self._cache.clear()
            self._cache[topic] = found
        return found

    def _match(self, topic: str) -> tuple[Route, dict[str, str]] | None:
        levels = topic.split("/")
        for route in self.routes:
            segments = route.template.match(levels)
            if segments is not None:
                return route, segments
        return None


def subscriptions(settings: Settings) -> list[str]:
    """What ingestd subscribes to: mqtt.topics, plus the topics of every route that names an
    ecosystem format (its own `topic`, else the format's defaults), so that
    `format = "zigbee2mqtt"` alone is a working config."""
    topics = list(settings.mqtt.topics)
    for route in settings.routes:
        codec = FORMATS.get(route.format)
        if codec is not None:
            for text in codec.topics if route.topic is None else [route.topic]:
                topic_filter = TopicTemplate.parse(text, "format").as_filter
                if topic_filter not in topics:
                    topics.append(topic_filter)
    return topics


def compile_routes(settings: Settings) -> RouteTable:
    routes = [r for i, route in enumerate(settings.routes) for r in _compile_route(i, route)]
    topics = subscriptions(settings)
    for route in routes:
        if not any(route.template.reachable_through(f) for f in topics):
            raise ConfigError(
                f"routes[{route.index}].topic",
                f"{route.template.text!r} can never match a topic that mqtt.topics "
                f"{topics} delivers",
            )
    return RouteTable(routes)
