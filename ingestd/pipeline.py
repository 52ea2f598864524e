"""pipeline.handle: decode -> transform -> encode, inline and synchronous, per message.

Called straight from the MQTT read path: no task, no queue, no future per message. The only
place a message can wait is the bounded buffer it lands in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from ingestd.alerts import Alerts
from ingestd.buffer import BufferClosed, MemoryBuffer
from ingestd.config import LimitSettings
from ingestd.encode import LineEncoder
from ingestd.errors import DropReason, MessageRejected, Suppressed
from ingestd.events import DeviceRegistry
from ingestd.fieldtypes import FieldTypes
from ingestd.formats import FormatState
from ingestd.logs import get_logger
from ingestd.records import DeadLetter, Point, RawMessage
from ingestd.report import ReportByException
from ingestd.routes import Route, RouteTable
from ingestd.telemetry import Telemetry
from ingestd.transform import SeriesGuard, sample_points, to_points


class Pipeline:
    def __init__(
        self,
        routes: RouteTable,
        buffer: MemoryBuffer,
        telemetry: Telemetry,
        dead_letter: Callable[[DeadLetter], None],
        limits: LimitSettings,
        *,
        settled: Callable[[RawMessage], None] = lambda _message: None,
        skip_retained: bool = False,
        save_state: Callable[[str, FormatState], None] | None = None,
        publish: Callable[[str, bytes], object] | None = None,
        devices: DeviceRegistry | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.routes = routes
        self.buffer = buffer
        self.telemetry = telemetry
        self.dead_letter = dead_letter
        # called once a message that never reaches the buffer is stored (dead-lettered) or
        # ignored: the service acknowledges it to the broker
        self.settled = settled
        self.skip_retained = skip_retained
        self.field_types = FieldTypes()
        self.encoder = LineEncoder(max_key_bytes=limits.max_key_bytes)
        self.limits = limits
        self.series = SeriesGuard(limits.max_series_per_route, limits.max_series_per_device)
        # the last point written of each series of a route with a report rule (saved at
        # shutdown, when everything it remembers is stored)
        self.report = ReportByException()
        # what the formats remember between messages (Sparkplug's alias maps), one per format
        self.format_states: dict[str, FormatState] = {}
        for route in routes.routes:
            codec = route.codec
            if codec is not None and codec.new_state is not None:
                self.format_states.setdefault(codec.name, codec.new_state())
        # called, before the message is acked, when a message changed a format's state: the
        # service saves it, so a restart does not forget it
        self.save_state = save_state
        # what a format asks to publish (a Sparkplug rebirth request), where its route allows
        self.publish = publish
        # device events (events.enabled): told of each identity's first series
        self.devices = devices
        # alert rules ([[alerts]]): see every reading, add the points of their transitions
        self.alerts = alerts

    def to_points(self, message: RawMessage) -> tuple[list[Point], Route | None] | None:
        """The points this message becomes, and its route if the payload lacked the route's
        time_key (stamped with the receive time); None if it is not a reading (its route ignores
        it, or it holds no reading); MessageRejected if bad."""
        if len(message.payload) > self.limits.max_payload_bytes:
            raise MessageRejected(
                DropReason.PAYLOAD_TOO_LARGE,
                f"{len(message.payload)} bytes > limits.max_payload_bytes = "
                f"{self.limits.max_payload_bytes}",
            )
        matched = self.routes.match(message.topic)
        if matched is None:
            raise MessageRejected(DropReason.UNKNOWN_TOPIC, "no route matches this topic")
        route, segments = matched
        if route.format == "ignore":
            return None
        if route.codec is None:  # the p4n4 formats, inline: no extra call on the hot path
            points, time_missing = to_points(
                route,
                segments,
                message.payload,
                message.received_ns,
                types=self.field_types,
                limits=self.limits,
            )
        else:
            points, time_missing = self.route_points(route, segments, message)
        if not points:  # the payload held no reading (nan, unavailable, null, ...)
            return None
        for point in points:
            new_identity = self.series.admit(route, point, segments)
            if new_identity is not None and self.devices is not None:
                self.devices.seen(route.template.text, new_identity, point)
        if self.alerts is None and route.report is None:
            return points, route if time_missing else None
        return self._ruled(route, points), route if time_missing else None

    def _ruled(self, route: Route, points: list[Point]) -> list[Point]:
        """The rules' say: alert rules see every reading and add the points of the alerts it
        opens or closes; the route's report-by-exception rule keeps what changed (the others
        are counted). Suppressed when nothing is left: the message is settled as stored."""
        raised = self.alerts.observe(points) if self.alerts is not None else []
        if route.report is None:
            return points + raised if raised else points
        kept, reasons = self.report.keep(route.report, points)
        if reasons:
            self.telemetry.points_suppressed(route.template.text, reasons)
            if not kept and not raised:
                raise Suppressed(reasons)
        return kept + raised

    def route_points(
        self, route: Route, segments: dict[str, str], message: RawMessage
    ) -> tuple[list[Point], bool]:
        """The points `message` becomes on this route, typed, and whether it lacked the route's
        time_key; [] for no reading. The one dispatch between the p4n4 formats and the
        ecosystem formats (`ingestd discover` tries one route after another through it)."""
        if route.codec is None:
            return to_points(
                route,
                segments,
                message.payload,
                message.received_ns,
                types=self.field_types,
                limits=self.limits,
            )
        state = self.format_states.get(route.codec.name)
        try:
            points = sample_points(
                route,
                segments,
                message.topic,
                message.payload,
                message.received_ns,
                types=self.field_types,
                limits=self.limits,
                state=state,
            )
        finally:
            if state is not None:
                self._settle_state(route, state)
        return points, False  # each format knows where its time is, or that it has none

    def _settle_state(self, route: Route, state: FormatState) -> None:
        """After a message of a format with memory: save what changed, publish what it asks."""
        assert route.codec is not None
        if state.changed and self.save_state is not None:
            self.save_state(route.codec.name, state)
        if state.outbox:
            if route.request_rebirth and self.publish is not None:
                for topic, payload in state.outbox:
                    self.publish(topic, payload)
            state.outbox.clear()

    def to_lines(self, message: RawMessage) -> tuple[list[str], Route | None] | None:
        """`to_points`, encoded as line protocol."""
        found = self.to_points(message)
        if found is None:
            return None
        points, untimed = found
        return [self.encoder.to_line(point) for point in points], untimed

    def handle(self, message: RawMessage) -> None:
        self.telemetry.messages_received += 1
        if message.retain and self.skip_retained:
            self.telemetry.retained_message_skipped(message)
            self.settled(message)
            return
        try:
            found = self.to_points(message)
            if found is not None:  # encoded here, not through to_lines: one call less a message
                to_line = self.encoder.to_line
                lines = [to_line(point) for point in found[0]]
        except Suppressed:  # report by exception: nothing to write, nothing wrong
            self.settled(message)
            return
        except MessageRejected as exc:
            if exc.reason == DropReason.CARDINALITY_LIMIT:
                self.telemetry.cardinality_limit_reached(message.topic, exc.detail)
            self.reject(message, exc.reason, exc.detail)
            return
        except Exception as exc:  # a bug must cost one message, never the service
            get_logger().exception("pipeline_error", topic=message.topic)
            self.reject(message, DropReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return
        if found is None:
            self.telemetry.messages_ignored += 1
            self.settled(message)
            return
        untimed = found[1]
        if untimed is not None:
            self.telemetry.payload_time_missing(untimed.index, untimed.time_key, message)
        try:
            self.buffer.put(lines, message)
        except BufferClosed:  # arrived during shutdown, after intake closed
            self.reject(message, DropReason.UNWRITTEN_AT_SHUTDOWN, "arrived after intake closed")

    def handle_oversized(self, message: RawMessage, size: int, sha256: str) -> None:
        """A message the MQTT client read past, too large to hold: `message.payload` is its first
        bytes. Dead-lettered (not replayable) with its size and SHA-256, then settled."""
        self.telemetry.messages_received += 1
        detail = f"{size} bytes: the packet is over mqtt.max_packet_bytes (read past, unbuffered)"
        self.reject(message, DropReason.PAYLOAD_TOO_LARGE, detail, whole=(size, sha256))

    def reject(
        self,
        message: RawMessage,
        reason: str,
        detail: str,
        *,
        line: str | None = None,
        settle: bool = True,
        whole: tuple[int, str] | None = None,
    ) -> None:
        """Count, log (rate-limited) and dead-letter one message, or one line of it. `settle=False`
        when the message is settled some other way (its batch, or the broker keeps it). A line
        the database refused for a field type conflict teaches the field its type, so the next
        values are coerced to it (or dead-lettered naming both types) instead of refused.
        `whole`: the size and SHA-256 of the payload when `message.payload` is only its start."""
        if reason == DropReason.REJECTED_BY_SINK:
            self.field_types.learn_conflict(detail)
        self.telemetry.message_dropped(reason, message, detail)
        letter = DeadLetter(
            message.topic,
            message.payload,
            reason,
            detail,
            message.received_ns,
            time.time_ns(),
            line,
        )
        if whole is not None:  # the payload is only its first bytes
            letter = replace(letter, payload_bytes=whole[0], payload_sha256=whole[1])
        self.dead_letter(letter)
        if settle:
            self.settled(message)
