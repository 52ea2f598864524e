"""`ingestd discover`: listen to everything on a broker for a while, write nothing, and print a
ready `[[routes]]` block for the device ecosystems heard, with counts, one sample line of
protocol per format, and the topics no format could read.

Each message is tried against the formats' default topics, most specific first (ESPHome's
`+/+/+/state` last), and belongs to the first format that reads it: points, or traffic the
format knows to skip. A topic under a format's own literal prefix (`zigbee2mqtt/`, `spBv1.0/`,
`tele/`, ...) belongs to it even when a payload is refused (a Sparkplug DDATA heard before its
DBIRTH), and is counted as refused. Work per message is one parse per candidate format, and
memory is bounded by MAX_TOPICS. Topics alone cannot tell every ecosystem apart: Home Assistant's
statestream under a custom base (`pub/<domain>/<entity>/state`) reads as ESPHome.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from ingestd.buffer import MemoryBuffer
from ingestd.config import LimitSettings, MqttSettings, parse_settings
from ingestd.encode import to_line
from ingestd.errors import IngestdError, MessageRejected
from ingestd.pipeline import Pipeline
from ingestd.records import Point, RawMessage
from ingestd.routes import Route, compile_routes
from ingestd.telemetry import Telemetry

# most specific first: a literal prefix before the formats whose topics are all wildcards
ORDER = (
    "sparkplug_b",
    "zigbee2mqtt",
    "tasmota",
    "shelly",
    "ruuvi",
    "ttn",
    "owntracks",
    "homie",
    "chirpstack",
    "rtl_433",
    "edge_impulse",
    "homeassistant",
    "esphome",
)
P4N4 = "value"  # the p4n4 convention, sensors/{device}/{measurement}
MAX_TOPICS = 10_000
SHOWN_UNCLASSIFIED = 20


@dataclass
class Heard:
    messages: int = 0
    skipped: int = 0
    refused: int = 0
    topics: set[str] = field(default_factory=set)
    sample: str | None = None


class Discovery:
    """What was heard, by format. Pure: `observe` each message, then `report`."""

    def __init__(self, limits: LimitSettings | None = None) -> None:
        self.limits = limits or LimitSettings()
        routes = [{"format": name} for name in ORDER]
        routes.append({"topic": "sensors/{device}/{measurement}", "format": "value"})
        settings = parse_settings(
            {"influx": {"api": "v1", "database": "discover"}, "routes": routes}
        )
        table = compile_routes(settings)
        # a pipeline only for its format memory (Sparkplug births) and field types
        self.pipeline = Pipeline(table, MemoryBuffer(1), Telemetry(), lambda _d: None, self.limits)
        self.candidates: list[tuple[str, list[Route]]] = []
        for name in (*ORDER, P4N4):
            mine = [r for r in table.routes if (r.codec.name if r.codec else r.format) == name]
            self.candidates.append((name, mine))
        self.heard: dict[str, Heard] = {name: Heard() for name, _routes in self.candidates}
        self.unclassified: Counter[str] = Counter()
        self.messages = 0
        self.topics: set[str] = set()
        self.overflow = 0

    def observe(self, topic: str, payload: bytes, received_ns: int = 0) -> str | None:
        """The format this message belongs to, or None."""
        self.messages += 1
        if topic not in self.topics:
            if len(self.topics) >= MAX_TOPICS:
                self.overflow += 1
                return None
            self.topics.add(topic)
        levels = topic.split("/")
        owner: str | None = None
        if len(payload) <= self.limits.max_payload_bytes:
            for name, routes in self.candidates:
                for route in routes:
                    segments = route.template.match(levels)
                    if segments is None:
                        continue
                    if owner is None and route.template.literals[0] is not None:
                        owner = name  # its own prefix: its traffic, read or not
                    try:
                        message = RawMessage(topic, payload, received_ns)
                        points = self.pipeline.route_points(route, segments, message)[0]
                    except MessageRejected:
                        continue
                    self._record(name, topic, points)
                    return name
        if owner is not None:
            heard = self.heard[owner]
            heard.messages += 1
            heard.refused += 1
            heard.topics.add(topic)
            return owner
        self.unclassified[topic] += 1
        return None

    def _record(self, name: str, topic: str, points: list[Point]) -> None:
        heard = self.heard[name]
        heard.messages += 1
        heard.topics.add(topic)
        if not points:
            heard.skipped += 1
        elif heard.sample is None:
            heard.sample = to_line(points[0])

    def report(self, seconds: float, where: str) -> str:
        out = [
            f"# ingestd discover: {seconds:g} s on {where}: {self.messages:,} messages on "
            f"{len(self.topics):,} topics",
        ]
        if self.overflow:
            out.append(
                f"# (more than {MAX_TOPICS:,} topics: {self.overflow:,} messages not classified)"
            )
        found = [(name, heard) for name, heard in self.heard.items() if heard.messages]
        if not found:
            out.append("# no known ecosystem heard")
        for name, heard in found:
            out.append("")
            label = "p4n4 value" if name == P4N4 else name
            out.append(
                f"# {label}: {heard.messages:,} messages on {len(heard.topics):,} topics "
                f"({heard.skipped:,} skipped as not readings, {heard.refused:,} refused)"
            )
            if heard.sample is not None:
                out.append(f"#   {heard.sample}")
            out.append("[[routes]]")
            if name == P4N4:
                out.append('topic = "sensors/{device}/{measurement}"')
                out.append('format = "value"')
            else:
                out.append(f'format = "{name}"')
        if self.unclassified:
            out.append("")
            out.append(f"# not classified: {len(self.unclassified):,} topics")
            for topic, count in self.unclassified.most_common(SHOWN_UNCLASSIFIED):
                out.append(f"#   {topic} ({count:,} message{'s' if count > 1 else ''})")
            if len(self.unclassified) > SHOWN_UNCLASSIFIED:
                out.append(f"#   ... and {len(self.unclassified) - SHOWN_UNCLASSIFIED:,} more")
        return "\n".join(out) + "\n"


async def listen(mqtt: MqttSettings, seconds: float, discovery: Discovery) -> None:
    """Subscribe to `#` at QoS 0 with a clean session for `seconds`, feeding `discovery`."""
    from ingestd.mqtt.client import new_client

    def on_publish(topic: bytes, payload: bytes, _qos: int, _retain: bool, _mid: int) -> None:
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            return
        discovery.observe(text, payload, time.time_ns())

    quiet = mqtt.model_copy(
        update={"client_id": f"{mqtt.client_id}-discover-{os.getpid()}", "clean_session": True}
    )
    # a message larger than mqtt.max_packet_bytes is read past: no route could take it
    async with new_client(quiet, on_publish, False, lambda _oversized: None) as client:
        codes = await client.subscribe([("#", 0)])
        if codes and codes[0] >= 0x80:
            raise IngestdError(f"the broker refused a subscription to '#' (code {codes[0]:#x})")
        done, _pending = await asyncio.wait([client.disconnected], timeout=seconds)
        for ended in done:
            ended.result()  # the connection was lost: say why
