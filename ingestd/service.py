"""Composition root: builds the stages from settings, runs the tasks, shuts down in order.

```
 MQTT broker                                                          InfluxDB
     │ sensors/#                                                          ▲
 ┌───▼────┐ RawMessage  ┌──── pipeline.handle (sync, inline) ────┐        │
 │ source │────────────▶│ decode ─▶ transform ─▶ encode          │        │
 └────────┘             └──────────────────────────┬─────────────┘        │
  task "ingest"                                    │ line protocol        │
                                        ┌──────────▼──────────┐  ┌────────┴─┐
                                        │ buffer (bounded)    │─▶│   sink   │
                                        │ memory → disk spool │  └──────────┘
                                        └─────────────────────┘ tasks "flush", "spool-replay"
        rejected anywhere ─▶ counted by reason ─▶ dead letters (JSON lines [+ MQTT topic])
```

Shutdown: stop the source, close buffer intake, drain to the sink until the deadline,
dead-letter what is left (reason unwritten_at_shutdown), close the sink, one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry

from ingestd.alerts import Alerts
from ingestd.buffer import BufferClosed, MemoryBuffer
from ingestd.config import InfluxSettings, Settings
from ingestd.deadletter import DeadLetterFile
from ingestd.errors import (
    DropReason,
    IngestdError,
    MessageRejected,
    RetryableSinkError,
    Suppressed,
)
from ingestd.events import DeviceRegistry
from ingestd.flush import Flusher
from ingestd.formats import Remembered
from ingestd.http import HttpEndpoints
from ingestd.logs import get_logger
from ingestd.outbox import Outbox
from ingestd.pipeline import Pipeline
from ingestd.records import RawMessage
from ingestd.routes import compile_routes, subscriptions
from ingestd.selfmetrics import SelfMetrics
from ingestd.sink import InfluxSink, Sink
from ingestd.source import MqttSource, SourceFactory, SourceHooks
from ingestd.spool import DiskSpool
from ingestd.statefiles import ALERTS, DEVICES, FIELD_TYPES, REPORTED, StateFiles
from ingestd.telemetry import Telemetry
from ingestd.webhook import Webhook


class Service:
    """Wires the stages from settings. The I/O adapters are seams: pass `sink` (a factory, called
    for the data and for the self-metrics connection), `source` (a factory given the hooks) or
    `spool` to run the service against fakes (ingestd.devtools.fakes) or your own."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        *,
        sink: Callable[[InfluxSettings], Sink] = InfluxSink,
        source: SourceFactory = MqttSource,
        spool: DiskSpool | None = None,
    ) -> None:
        self.settings = settings
        self.log = get_logger()
        routes = compile_routes(settings)
        acks_after_write = settings.mqtt.ack == "after_write" and settings.mqtt.qos > 0
        buffer = MemoryBuffer(
            settings.batch.buffer_max_lines,
            ack_window=settings.mqtt.max_inflight if acks_after_write else 0,
            max_bytes=settings.batch.buffer_max_bytes,
        )
        self.buffer = buffer
        sp = settings.spool
        if spool is None and sp.enabled:
            spool = DiskSpool(sp.path, sp.max_bytes, sp.segment_bytes, sp.fsync)
        self.spool = spool
        held = spool  # the gauge reads what the spool holds at scrape time

        def spool_gauge() -> tuple[int, int, int]:
            if held is None:
                return 0, 0, 0
            return held.size_bytes, held.stats.records_replayed, held.stats.corrupt_records

        self.telemetry = Telemetry(
            registry,
            settings.deadletter.log_interval_s,
            buffer_gauge=lambda: (buffer.fill, buffer.max_lines),
            spool_gauge=spool_gauge,
        )
        dl = settings.deadletter
        self.dead_letters = DeadLetterFile(
            dl.path,
            dl.max_bytes,
            on_error=self.telemetry.deadletter_write_failed,
            publish=self._publish_dead_letter if dl.mqtt_topic else None,
            keep_payload_bytes=settings.limits.max_payload_bytes,
        )
        self.state_files = StateFiles(settings.state.path)
        self._learned_changed = asyncio.Event()  # field types, devices or alerts: save soon
        # events and alerts that must reach the broker, published by the "outbox" task
        self.outbox = Outbox(settings.events.max_pending)
        self.devices: DeviceRegistry | None = None
        if settings.events.enabled:
            self.devices = DeviceRegistry(self.outbox)
            self.devices.on_change = self._learned_changed.set
        self.alerts: Alerts | None = None
        # alert transitions POSTed to events.webhook_url, through an outbox of their own
        self.webhook_outbox = Outbox(settings.events.max_pending)
        self.webhook = Webhook()
        if settings.alerts:
            url = settings.events.webhook_url
            self.alerts = Alerts(
                settings.alerts,
                self.outbox,
                settings.limits.max_series_per_route,
                webhook=(self.webhook_outbox, url) if url else None,
            )
            self.alerts.on_change = self._learned_changed.set
        self.pipeline = Pipeline(
            routes,
            self.buffer,
            self.telemetry,
            self.dead_letters.write,
            settings.limits,
            settled=self._settle_unbuffered,
            # on MQTT 5 the broker sends none at subscribe (Retain Handling 2): the flag on
            # anything else is not a replay, so it is not guessed from
            skip_retained=settings.mqtt.retained == "skip" and settings.mqtt.protocol != "5",
            save_state=self.state_files.save,
            publish=self._publish_for_format,
            devices=self.devices,
            alerts=self.alerts,
        )
        self.sink = sink(settings.influx)
        hooks = SourceHooks(
            handle=self.pipeline.handle,
            buffer_full=self._buffer_full,
            wait_for_space=self.buffer.wait_for_space,
            invalid_topic=lambda m: self.pipeline.reject(
                m, DropReason.INVALID_TOPIC, "topic is not valid UTF-8"
            ),
            oversized=self.pipeline.handle_oversized,
            on_fatal=self._fail,
        )
        # the formats' own topics join mqtt.topics (routes.subscriptions)
        subscribed = settings.mqtt.model_copy(update={"topics": subscriptions(settings)})
        self.source = source(subscribed, hooks, self.telemetry)
        self.flusher = Flusher(
            settings=settings,
            buffer=self.buffer,
            sink=self.sink,
            spool=self.spool,
            telemetry=self.telemetry,
            reject=self.pipeline.reject,
            ack=self.source.ack,
            flush_dead_letters=self.dead_letters.flush,
        )
        self.http = HttpEndpoints(self.telemetry, self._ready)
        self.self_metrics = SelfMetrics(
            settings, self.telemetry, sink(settings.self_metrics.influx(settings.influx))
        )
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.failed = False  # a task died, or ingestd cannot continue: exit non-zero
        self.acks_overdue_since_ns: int | None = None  # the ack watchdog's current stall
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def _fail(self, why: str) -> None:
        """ingestd cannot do what it is configured to: drain, ack, stop, exit non-zero."""
        self.log.error("ingestd_cannot_continue", reason=why)
        self.failed = True
        self.request_stop()

    def _buffer_full(self) -> bool:
        """Asked after each message: should reading pause? Not while the spool can take the
        oldest waiting batch: a database slower than ingest overflows to disk, not to the broker."""
        if not self.buffer.full:
            return False
        if (
            self.spool is not None
            and not self.buffer.closed
            and (batch := self.buffer.take(self.settings.batch.max_lines)) is not None
        ):
            if self.flusher.spool_batch(batch):
                return self.buffer.full
            self.buffer.keep(batch)
        return True

    def _settle_unbuffered(self, message: RawMessage) -> None:
        """A message that was dead-lettered or ignored: ack once the dead letter is with the OS
        (it survives a crash of ingestd; fsync is left to the OS, for SD cards' sake). A dead
        letter that could not be written means no ack: the broker keeps the message and
        redelivers it on the next connection, and the ack watchdog says so meanwhile."""
        if message.mid and self.dead_letters.flush():
            self.source.ack([message])

    def _publish_for_format(self, topic: str, payload: bytes) -> None:
        """What a format asks to send (a Sparkplug rebirth request): QoS 0, not retained."""
        self.source.publish_nowait(topic, payload)

    def _publish_dead_letter(self, data: bytes) -> None:
        topic = self.settings.deadletter.mqtt_topic
        if topic:
            self.source.publish_nowait(topic, data.rstrip(b"\n"))

    def _ready(self) -> tuple[bool, str]:
        if not self.telemetry.mqtt_connected:
            return False, "mqtt not connected"
        if self.flusher.outage:
            return False, "the database is not taking writes"
        if self.flusher.replay_error is not None:
            return False, f"the spool cannot be replayed: {self.flusher.replay_error}"
        if self.acks_overdue_since_ns is not None:
            return False, "messages wait for their ack longer than mqtt.ack_overdue_s"
        return True, "ready"

    def check_acks(self, now_ns: int) -> None:
        """The ack watchdog: a message that waits for its ack longer than the bound while the
        database takes writes means the data path is stalled, though the connection is up."""
        bound_s = self.settings.ack_overdue_s
        oldest = self.source.oldest_unacked_ns()
        waited_s = 0.0
        if oldest is not None and not self.flusher.outage:
            waited_s = (now_ns - max(oldest, self.flusher.writable_since_ns)) / 1e9
        self.telemetry.oldest_unacked_s = max(waited_s, 0.0)
        if waited_s > bound_s and self.acks_overdue_since_ns is None:
            self.acks_overdue_since_ns = now_ns
            self.telemetry.acks_overdue(waited_s, bound_s)
        elif waited_s <= bound_s and self.acks_overdue_since_ns is not None:
            self.telemetry.acks_caught_up((now_ns - self.acks_overdue_since_ns) / 1e9)
            self.acks_overdue_since_ns = None

    async def _watch_acks(self) -> None:
        interval_s = min(1.0, self.settings.ack_overdue_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            self.check_acks(time.time_ns())

    # -- supervision -------------------------------------------------------------------------

    def _start(self, name: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Every task runs until shutdown. One that ends before, by an error or by returning,
        stops the service: its traceback is logged and the exit is non-zero."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._task_done)
        self.tasks[name] = task
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.log.error("task_failed", task=task.get_name(), error=repr(error), exc_info=error)
            self._fail(f"task {task.get_name()} failed: {error!r}")
        elif not self._stopping.is_set():
            self._fail(f"task {task.get_name()} ended before shutdown")

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping.is_set():
            return
        self.log.info("shutdown_requested")
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings
        await self.sink.open()
        try:
            self.log.info("database_prepared", found=await self.sink.prepare())
        except RetryableSinkError as exc:  # down now: the spool holds what comes meanwhile
            self.log.warning("database_not_prepared", error=str(exc)[:300])
        except IngestdError:
            await self.sink.close()
            raise
        self.dead_letters.open()
        await self._remember()
        if s.http.enabled:
            await self.http.start(s.http.host, s.http.port)
        self._log_started()
        started_at = time.monotonic()
        ingest = self._start("ingest", self.source.run())
        flush = self._start("flush", self.flusher.run())
        self._start_the_rest()
        self.started.set()
        await self._stopping.wait()
        # 1. stop reading (still connected, so what is drained can be acked)
        self.source.close_intake()
        # 2. close buffer intake, 3. drain until the deadline
        self.buffer.close_intake()
        try:
            async with asyncio.timeout(s.shutdown.drain_timeout_s):
                await asyncio.wait({flush})
        except TimeoutError:
            pass
        await _cancel(flush, self.tasks.get("spool-replay"))
        unwritten, left_with_broker = self._settle_leftovers()
        self.source.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.wait({ingest})
        await _cancel(ingest)
        # 5. close the sink and the rest; keep what was learned
        self._save_learned(everything_stored=not unwritten)
        await self.sink.close()
        await _cancel(*self.tasks.values())
        await self.self_metrics.sink.close()
        await self.webhook.close()
        self._close_files()
        await self.http.stop()
        self._log_summary(time.monotonic() - started_at, unwritten, left_with_broker)

    def _start_the_rest(self) -> None:
        """Every task but ingest and flush, each supervised: the spool replay, the dead-letter
        flusher, self-metrics, the ack watchdog, the state saver, and what events and alerts
        need: the outbox, the webhook's outbox, the silence watch."""
        s, ev = self.settings, self.settings.events
        if self.spool is not None:
            self._start("spool-replay", self.flusher.replay_forever())
        self._start("deadletter-flush", self.dead_letters.flush_every(1.0))
        if s.self_metrics.interval_s > 0:
            self._start("self-metrics", self.self_metrics.run())
        self._start("ack-watchdog", self._watch_acks())
        self._start("state-save", self._save_learned_state())
        if self.devices is not None or self.alerts is not None:
            self._start(
                "outbox", self.outbox.run(self.source.publish, ev.retry_min_s, ev.retry_max_s)
            )
            o = self.outbox
            self.telemetry.outbox_gauge = lambda: (o.published, o.failures, o.dropped, o.pending)
        if self.alerts is not None and s.events.webhook_url:
            self._start(
                "webhook",
                self.webhook_outbox.run(self.webhook.post, ev.retry_min_s, ev.retry_max_s),
            )
        if self.alerts is not None and any(rule.silent_s for rule in s.alerts):
            self._start("alerts-silence", self._watch_silence(self.alerts))

    def _learned(self) -> list[tuple[str, Remembered]]:
        """What ingestd learns as it runs and saves at most once a second: field types, the
        devices announced, the alerts open."""
        learned: list[tuple[str, Remembered]] = [(FIELD_TYPES, self.pipeline.field_types)]
        if self.devices is not None:
            learned.append((DEVICES, self.devices))
        if self.alerts is not None:
            learned.append((ALERTS, self.alerts))
        return learned

    def _save_learned(self, everything_stored: bool) -> None:
        """At shutdown: what was learned (the alerts with their last readings), and what report
        by exception remembers, but that only when all of it is stored: a point that was not
        (dead-lettered at shutdown) must not become the reference a later reading is measured
        against."""
        for name, state in self._learned():
            if state.changed or name == ALERTS:
                self.state_files.save(name, state)
        if self.pipeline.report.changed and everything_stored:
            self.state_files.save(REPORTED, self.pipeline.report)

    async def _watch_silence(self, alerts: Alerts) -> None:
        """Open silence alerts as series go quiet; their points are written like readings."""
        tick_s = min(
            10.0, max(0.5, min(r.silent_s for r in self.settings.alerts if r.silent_s) / 10)
        )
        while True:
            await asyncio.sleep(tick_s)
            points = alerts.check_silence(time.time_ns())
            if points:
                lines = [self.pipeline.encoder.to_line(point) for point in points]
                with contextlib.suppress(BufferClosed):
                    self.buffer.put(lines, RawMessage("ingestd/alerts", b"", time.time_ns()))

    def _close_files(self) -> None:
        """Flush the dead letters, and release them and the spool for the next ingestd."""
        self.dead_letters.close()
        if self.spool is not None:
            self.spool.close()

    def _log_started(self) -> None:
        s = self.settings
        self.log.info(
            "ingestd_started",
            mqtt=f"{s.mqtt.host}:{s.mqtt.port}",
            topics=subscriptions(s),
            influx=s.influx.url,
            api=s.influx.api,
            routes=len(s.routes),
            http_port=self.http.port,
        )
        if s.mqtt.password_in_plaintext:
            self.log.warning(
                "mqtt_password_in_plaintext",
                host=s.mqtt.host,
                fix="set mqtt.tls = true (and ca_file) and a TLS listener on the broker; "
                "plaintext is acceptable only on a network nobody else shares, such as one "
                "host's Docker network",
            )

    async def _remember(self) -> None:
        """What ingestd learned before: the formats' state and the field types, from
        state.path; then the types the database holds, which win over a first sighting."""
        types = self.pipeline.field_types
        remembered: dict[str, Remembered] = {
            **self.pipeline.format_states, FIELD_TYPES: types, REPORTED: self.pipeline.report
        }  # fmt: skip
        remembered.update(self._learned())
        self.state_files.load(remembered)
        try:
            held = await self.sink.field_types()
        except RetryableSinkError as exc:  # down now: conflicts will teach it
            self.log.warning("field_types_not_learned", error=str(exc)[:300])
        except IngestdError as exc:  # no InfluxQL (VictoriaMetrics), or not allowed
            self.log.info("field_types_not_learned", error=str(exc)[:300])
        else:
            self.log.info(
                "field_types_learned", fields=len(held), changed=types.learn_database(held)
            )
        configured = {
            (route.measurement, key): kind
            for route in self.pipeline.routes.routes
            if route.measurement_is_static and route.measurement
            for key, kind in route.types.items()
        }
        for measurement, key, want, held_type in types.configured_conflicts(configured):
            self.log.warning(
                "configured_type_conflict",
                measurement=measurement,
                field=key,
                configured=want,
                database=held_type,
                fix="change the route's types to what the database holds, or drop the field there",
            )
        types.on_change = self._learned_changed.set

    async def _save_learned_state(self) -> None:
        """At most one save a second, however fast fields, devices and alerts change: a type
        learned and not yet saved when the power goes is learned again from the database, a
        device announced and not yet saved is announced again (at least once), an alert
        transition not yet saved may be sent again."""
        while True:
            await self._learned_changed.wait()
            await asyncio.sleep(1.0)
            self._learned_changed.clear()
            for name, state in self._learned():
                if state.changed:
                    self.state_files.save(name, state)
            if any(state.changed for _, state in self._learned()):
                self._learned_changed.set()  # a save failed (logged): again in a second

    def _settle_leftovers(self) -> tuple[int, int]:
        """Shutdown step 4: what is left goes to the spool if there is one; else unacked QoS 1
        messages stay with the broker, which redelivers them to our session, and the rest is
        dead-lettered. Returns (lines left unwritten, messages left with the broker)."""
        left = self.buffer.drain()
        if left.lines and self.flusher.spool_batch(left):
            left = self.buffer.drain()
        left_with_broker = sum(1 for message in left.messages() if message.mid)
        for line, origin in zip(left.lines, left.origins, strict=True):
            if not origin.mid:
                self.pipeline.reject(
                    origin,
                    DropReason.UNWRITTEN_AT_SHUTDOWN,
                    "drain timeout",
                    line=line,
                    settle=False,
                )
        return len(left), left_with_broker

    def _log_summary(self, uptime_s: float, unwritten: int, left_with_broker: int) -> None:
        t = self.telemetry
        self.log.info(
            "ingestd_stopped",
            uptime_s=round(uptime_s, 1),
            received=t.messages_received,
            written=t.points_written,
            ignored=t.messages_ignored,
            dropped=t.dropped_total,
            dropped_by_reason=dict(t.dropped),
            unwritten_lines=unwritten,
            left_with_broker=left_with_broker,
        )

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            self.log.warning("forced_exit", signal=sig.name)
            raise SystemExit(130)
        self.request_stop()


async def _cancel(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel and wait; their errors were logged by the supervisor already."""
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)


def tune_gc() -> None:
    """The buffer holds up to buffer_max_lines objects for a while; with CPython's default
    thresholds (700 allocations) the cyclic collector keeps walking them. The hot path creates no
    reference cycles, so collect less often, and leave what startup built out of it."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def run_service(settings: Settings, service: Callable[[Settings], Service] = Service) -> bool:
    """The one way to run the daemon (`ingestd --config`, `ingestd local`): logging, units
    resolved in a child process, uvloop, the gc tuned, signals. True if it stopped failed."""
    from ingestd.logs import configure_logging
    from ingestd.units import resolve_in_subprocess

    configure_logging(settings.log.format, settings.log.level)
    # before the event loop starts: pint stays out of this long-running process
    resolve_in_subprocess(spec for route in settings.routes for spec in route.units.values())

    async def main() -> bool:
        running = service(settings)
        tune_gc()
        running.install_signal_handlers()
        await running.run()
        return running.failed

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


class Checked(NamedTuple):
    """What `ingestd check` says of one message."""

    lines: list[str] | None  # None: not written (ignored, dead-lettered or suppressed)
    reason: str | None = None  # why it would be dead-lettered
    suppressed: list[str] | None = None  # report by exception: why its points are not written


def check_messages(settings: Settings, messages: list[tuple[str, bytes]]) -> list[Checked]:
    """What `ingestd check` prints for each message, in order, through one pipeline: what a
    format remembers (a Sparkplug DBIRTH's aliases) carries from one message to the next. Writes
    nothing and saves no state."""
    pipeline = Pipeline(
        compile_routes(settings),
        MemoryBuffer(settings.batch.buffer_max_lines),
        Telemetry(),
        lambda _d: None,
        settings.limits,
    )
    out: list[Checked] = []
    for topic, payload in messages:
        try:
            encoded = pipeline.to_lines(RawMessage(topic, payload, time.time_ns()))
            out.append(Checked(None if encoded is None else encoded[0]))
        except Suppressed as exc:
            out.append(Checked(None, suppressed=exc.reasons))
        except MessageRejected as exc:
            out.append(Checked(None, f"{exc.reason}: {exc.detail}"))
    return out


def check_message(settings: Settings, topic: str, payload: bytes) -> Checked:
    """`check_messages` for one message."""
    return check_messages(settings, [(topic, payload)])[0]
