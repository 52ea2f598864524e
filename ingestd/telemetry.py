"""Every observable event is one method here: a counter (and, where useful, a log line).

The hot path only bumps plain ints; prometheus_client reads them at scrape time through a
collector, so a message costs no lock and no label lookup. Labels come from bounded enums only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingestd.errors import DropReason
from ingestd.logs import get_logger
from ingestd.topics import BROKER_STATS, BROKER_STORED, filter_matches

if TYPE_CHECKING:
    from ingestd.records import RawMessage

BATCH_OUTCOMES = ("written", "partial", "retried", "rejected")


class Due(NamedTuple):
    suppressed: int  # lines held back since the last one for this key
    first: bool  # the first line ever for this key


class LogRate:
    """At most one log line per key and interval; counts the lines it holds back."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def due(self, key: str) -> Due | None:
        """None: hold this line back. Otherwise log it, with what was held back."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] += 1
            return None
        self._last[key] = now
        return Due(self._held.pop(key, 0), last is None)


class Telemetry:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        log_interval_s: float = 10.0,
        *,
        buffer_gauge: Callable[[], tuple[int, int]] = lambda: (0, 1),
        spool_gauge: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0),
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.log = get_logger()
        self.messages_received = 0
        self.messages_ignored = 0
        self.retained_skipped = 0
        self.messages_without_time = 0
        self.points_spooled = 0
        self.spool_write_errors = 0
        # (bytes held, records replayed, corrupt records skipped), read at scrape time
        self.spool_gauge = spool_gauge
        # the outbox of events and alerts (published, publish failures, dropped, pending), read
        # at scrape time; the service sets it when events are on
        self.outbox_gauge: Callable[[], tuple[int, int, int, int]] = lambda: (0, 0, 0, 0)
        self.points_written = 0
        self.write_seconds_sum = 0.0  # with writes_timed: mean write latency per interval
        self.writes_timed = 0
        self.dropped: Counter[str] = Counter()
        # report by exception: points left out, by (route's topic template, reason); routes come
        # from the config and reasons from report.SUPPRESSION_REASONS, so the labels are bounded
        self.suppressed: Counter[tuple[str, str]] = Counter()
        self.batches: Counter[str] = Counter()
        self.mqtt_connected = False
        self.mqtt_reading_paused = False
        self.subscribed_filters: list[str] = []
        self.subscriptions_refused = 0
        # the ack watchdog: how long the oldest message has waited for its ack while the
        # database takes writes, and how many stalls (episodes past the bound) there were
        self.oldest_unacked_s = 0.0
        self.ack_stalls = 0
        self.mqtt_protocol_errors = 0  # connections closed on a packet that broke the spec
        # the broker's own counters ($SYS, mqtt.broker_stats): None until it published them
        self.broker_dropped: int | None = None
        self.broker_stored: int | None = None
        # (lines held, capacity), read at scrape time
        self.buffer_gauge = buffer_gauge
        self.deadletter_write_errors = 0
        # keys are bounded: drop reasons (an enum), subscribed topic filters
        self._drop_logs = LogRate(log_interval_s)
        self._retained_logs = LogRate(log_interval_s)
        self._time_logs = LogRate(log_interval_s)  # keys: route indexes
        self._last_cardinality_alert = -60.0
        self.write_seconds = Histogram(
            "ingestd_write_duration_seconds",
            "Time to write one batch to the database, including retries of its parts",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(_Counters(self))

    # -- per message -------------------------------------------------------------------------

    def points_suppressed(self, route: str, reasons: list[str]) -> None:
        for reason in reasons:
            self.suppressed[route, reason] += 1

    def message_dropped(self, reason: str, message: RawMessage, detail: str) -> None:
        self.dropped[reason] += 1
        due = self._drop_logs.due(reason)
        if due is None:
            return
        self.log.warning(
            "message_dropped",
            reason=reason,
            topic=message.topic,
            detail=detail[:300],
            suppressed_since_last=due.suppressed,
        )

    def retained_message_skipped(self, message: RawMessage) -> None:
        """Counted; and logged, the first per topic filter and then at most once per interval,
        so a broker that flags queued live messages as retained (amqtt does, after a restart)
        is visible rather than silently discarding readings."""
        self.retained_skipped += 1
        topic_filter = next(
            (f for f in self.subscribed_filters if filter_matches(f, message.topic)), "?"
        )
        due = self._retained_logs.due(topic_filter)
        if due is None:
            return
        self.log.info(
            "retained_message_skipped",
            topic=message.topic,
            topic_filter=topic_filter,
            first=due.first,
            suppressed_since_last=due.suppressed,
            hint="mqtt.retained = 'skip'; set 'ingest' if your broker marks live messages retained",
        )

    def payload_time_missing(
        self, route_index: int, time_key: str | None, message: RawMessage
    ) -> None:
        """A route names a time_key and the payload did not hold it: the message is stored,
        stamped with its receive time. Counted; logged at most once per route and interval."""
        self.messages_without_time += 1
        due = self._time_logs.due(str(route_index))
        if due is None:
            return
        self.log.warning(
            "payload_time_missing",
            route=f"routes[{route_index}]",
            time_key=time_key,
            topic=message.topic,
            suppressed_since_last=due.suppressed,
            detail='stamped with the receive time; set time_key = "" on the route if its '
            "devices send no time",
        )

    def cardinality_limit_reached(self, topic: str, detail: str) -> None:
        """An alert, not a routine drop: logged as an error once per minute at most."""
        now = time.monotonic()
        if now - self._last_cardinality_alert >= 60:
            self._last_cardinality_alert = now
            self.log.error("cardinality_limit_reached", topic=topic, detail=detail)

    # -- per batch ---------------------------------------------------------------------------

    def batch_written(self, lines: int, rejected: int, seconds: float) -> None:
        self.points_written += lines - rejected
        self.batches["partial" if rejected else "written"] += 1
        self.write_seconds.observe(seconds)
        self.write_seconds_sum += seconds
        self.writes_timed += 1
        self.log.debug("batch_written", lines=lines, rejected=rejected, seconds=round(seconds, 4))

    def batch_retried(self, lines: int, error: str, delay_s: float) -> None:
        self.batches["retried"] += 1
        self.log.warning(
            "batch_retry", lines=lines, error=error[:300], retry_in_s=round(delay_s, 2)
        )

    # -- connection and lifecycle ------------------------------------------------------------

    def mqtt_up(self, host: str, port: int, topics: list[str], keepalive_s: int) -> None:
        self.mqtt_connected = True
        self.subscribed_filters = topics
        self.subscriptions_refused = 0
        self.log.info(
            "mqtt_connected", host=host, port=port, topics=topics, keepalive_s=keepalive_s
        )

    def subscription_refused(self, topic_filter: str, reason: str) -> None:
        self.subscriptions_refused += 1
        self.log.error("mqtt_subscription_refused", topic_filter=topic_filter, reason=reason)

    def broker_stat(self, topic: str, payload: bytes) -> None:
        """A $SYS counter from the broker (topics.BROKER_STATS). Drops that grow are logged."""
        text = payload[:20].decode("ascii", "replace").strip()
        if not text.isdigit():
            return
        value = int(text)
        if topic == BROKER_STORED:
            self.broker_stored = value
            return
        before, self.broker_dropped = self.broker_dropped, value
        if before is not None and value > before:
            self.log.warning(
                "broker_dropped_messages",
                dropped=value - before,
                dropped_total=value,
                fix="a subscriber's queue was full: raise max_queued_messages in mosquitto.conf "
                "(ingestd's session holds at most it while ingestd is away or behind), and see "
                "the README's 'Scaling' section if ingestd cannot keep up",
            )

    def broker_stats_refused(self, reason: str) -> None:
        self.log.info(
            "broker_stats_unavailable",
            topics=list(BROKER_STATS),
            reason=reason,
        )

    def acks_overdue(self, waited_s: float, bound_s: float) -> None:
        self.ack_stalls += 1
        self.log.error(
            "mqtt_acks_overdue",
            oldest_waited_s=round(waited_s, 1),
            bound_s=round(bound_s, 1),
            detail="messages stored or in the buffer are not being acknowledged while the "
            "database takes writes; the broker stops sending once its in-flight window is full",
        )

    def acks_caught_up(self, stalled_s: float) -> None:
        self.log.info("mqtt_acks_caught_up", stalled_s=round(stalled_s, 1))

    def spool_replay_failed(self, error: str, retry_in_s: float) -> None:
        self.log.error("spool_replay_failed", error=error[:300], retry_in_s=round(retry_in_s, 2))

    def mqtt_down(self, error: str, retry_in_s: float) -> None:
        was = self.mqtt_connected
        self.mqtt_connected = False
        self.log.warning(
            "mqtt_disconnected" if was else "mqtt_connect_failed",
            error=error[:300],
            retry_in_s=round(retry_in_s, 2),
        )

    def reading_paused(self, paused: bool) -> None:
        self.mqtt_reading_paused = paused
        self.log.debug("mqtt_reading_paused" if paused else "mqtt_reading_resumed")

    def spool_write_failed(self, error: str) -> None:
        self.spool_write_errors += 1
        self.log.error("spool_write_failed", error=error[:300])

    def deadletter_write_failed(self, error: str) -> None:
        self.deadletter_write_errors += 1
        self.log.error("deadletter_write_failed", error=error)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Stat(NamedTuple):
    """One number ingestd reports about itself, both as Prometheus `ingestd_<name>` (unless
    `prometheus` is False: the histogram already carries it) and as a self-metrics field `<name>`.
    `read` returns an int or a float, never both for one stat: a field's type is fixed in InfluxDB."""

    name: str
    help: str
    kind: str  # "counter" or "gauge"
    read: Callable[[Telemetry], int | float]
    prometheus: bool = True


# The one list. Self-metrics field names are what the Grafana health dashboard reads: renaming
# one breaks a panel (tests/stack/test_grafana.py holds the dashboard to this list).
STATS: tuple[Stat, ...] = (
    Stat("messages_received", "MQTT messages received", "counter", lambda t: t.messages_received),
    Stat(
        "messages_ignored",
        "Messages that are not readings: an ignore route, traffic a format skips, no-reading markers",
        "counter",
        lambda t: t.messages_ignored,
    ),
    Stat(
        "retained_skipped",
        "Retained messages replayed by the broker and skipped (mqtt.retained = 'skip')",
        "counter",
        lambda t: t.retained_skipped,
    ),
    Stat(
        "messages_without_time",
        "Messages stored with their receive time because the payload lacked the route's time_key",
        "counter",
        lambda t: t.messages_without_time,
    ),
    Stat(
        "points_written",
        "Points confirmed written by the database",
        "counter",
        lambda t: t.points_written,
    ),
    Stat(
        "messages_dropped",
        "Messages (or lines) dead-lettered, all reasons",
        "counter",
        lambda t: t.dropped_total,
        prometheus=False,  # ingestd_messages_dropped{reason} carries it, by reason
    ),
    Stat(
        "deadletter_write_errors",
        "Dead letters that could not be stored",
        "counter",
        lambda t: t.deadletter_write_errors,
    ),
    Stat(
        "events_published",
        "Events and alerts the broker acked (QoS 1, through the outbox)",
        "counter",
        lambda t: t.outbox_gauge()[0],
    ),
    Stat(
        "events_publish_failures",
        "Attempts to publish an event or alert that failed (each is retried)",
        "counter",
        lambda t: t.outbox_gauge()[1],
    ),
    Stat(
        "events_dropped",
        "Events and alerts dropped from a full outbox (events.max_pending)",
        "counter",
        lambda t: t.outbox_gauge()[2],
    ),
    Stat(
        "events_pending",
        "Events and alerts waiting to be published",
        "gauge",
        lambda t: t.outbox_gauge()[3],
    ),
    Stat("spool_bytes", "Bytes waiting in the disk spool", "gauge", lambda t: t.spool_gauge()[0]),
    Stat("points_spooled", "Lines stored in the disk spool", "counter", lambda t: t.points_spooled),
    Stat(
        "spool_batches_replayed",
        "Spooled batches written back",
        "counter",
        lambda t: t.spool_gauge()[1],
    ),
    Stat(
        "spool_corrupt_records",
        "Torn or corrupt spool records skipped (checksum)",
        "counter",
        lambda t: t.spool_gauge()[2],
    ),
    Stat(
        "spool_write_errors",
        "Spool appends that failed (disk full)",
        "counter",
        lambda t: t.spool_write_errors,
    ),
    Stat("buffer_lines", "Lines held in the buffer", "gauge", lambda t: t.buffer_gauge()[0]),
    Stat(
        "buffer_capacity_lines",
        "Buffer capacity in lines",
        "gauge",
        lambda t: t.buffer_gauge()[1],
    ),
    Stat(
        "mqtt_connected",
        "1 while connected to the broker",
        "gauge",
        lambda t: int(t.mqtt_connected),
    ),
    Stat(
        "mqtt_subscriptions_refused",
        "Subscriptions of mqtt.topics the broker refused on this connection",
        "gauge",
        lambda t: t.subscriptions_refused,
    ),
    Stat(
        "mqtt_oldest_unacked_seconds",
        "How long the oldest message has waited for its ack while the database takes writes",
        "gauge",
        lambda t: float(t.oldest_unacked_s),
    ),
    Stat(
        "mqtt_ack_stalls",
        "Times messages waited for their ack longer than mqtt.ack_overdue_s (the watchdog)",
        "counter",
        lambda t: t.ack_stalls,
    ),
    Stat(
        "mqtt_protocol_errors",
        "Connections closed because the broker sent a malformed or oversized packet",
        "counter",
        lambda t: t.mqtt_protocol_errors,
    ),
    Stat(
        "broker_messages_dropped",
        "Messages the broker says it dropped, for any client ($SYS/broker/publish/messages/"
        "dropped; -1 until it publishes it)",
        "gauge",
        lambda t: -1 if t.broker_dropped is None else t.broker_dropped,
    ),
    Stat(
        "broker_messages_stored",
        "Messages the broker holds ($SYS/broker/store/messages/count; -1 until published)",
        "gauge",
        lambda t: -1 if t.broker_stored is None else t.broker_stored,
    ),
    Stat(
        "mqtt_reading_paused",
        "1 while reading is paused by a full buffer",
        "gauge",
        lambda t: int(t.mqtt_reading_paused),
    ),
    Stat(
        "write_seconds_sum",
        "Seconds spent writing batches",
        "counter",
        lambda t: float(t.write_seconds_sum),
        prometheus=False,  # ingestd_write_duration_seconds_sum
    ),
    Stat(
        "writes_timed",
        "Batch writes timed",
        "counter",
        lambda t: t.writes_timed,
        prometheus=False,  # ingestd_write_duration_seconds_count
    ),
)


class _Counters(Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def collect(self) -> Iterator[Metric]:
        t = self.t
        for stat in STATS:
            if stat.prometheus:
                family = CounterMetricFamily if stat.kind == "counter" else GaugeMetricFamily
                yield family(f"ingestd_{stat.name}", stat.help, value=stat.read(t))
        dropped = CounterMetricFamily(
            "ingestd_messages_dropped",
            "Messages (or lines) dead-lettered, by reason",
            labels=["reason"],
        )
        for reason in DropReason:
            dropped.add_metric([reason.value], t.dropped.get(reason.value, 0))
        yield dropped
        suppressed = CounterMetricFamily(
            "ingestd_points_suppressed",
            "Points a route's report-by-exception rule did not write, by route and reason",
            labels=["route", "reason"],
        )
        for (route, why), count in sorted(t.suppressed.items()):
            suppressed.add_metric([route, why], count)
        yield suppressed
        batches = CounterMetricFamily(
            "ingestd_write_batches", "Write batches by outcome", labels=["outcome"]
        )
        for outcome in BATCH_OUTCOMES:
            batches.add_metric([outcome], t.batches.get(outcome, 0))
        yield batches
