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
import signal
import time

from prometheus_client import CollectorRegistry

from ingestd.buffer import MemoryBuffer
from ingestd.config import Settings
from ingestd.deadletter import DeadLetterFile
from ingestd.errors import DropReason, MessageRejected
from ingestd.flush import Flusher
from ingestd.http import HttpEndpoints
from ingestd.logs import get_logger
from ingestd.pipeline import Pipeline
from ingestd.records import RawMessage
from ingestd.routes import compile_routes
from ingestd.selfmetrics import SelfMetrics
from ingestd.sink import InfluxSink
from ingestd.source import MqttSource
from ingestd.spool import DiskSpool
from ingestd.telemetry import Telemetry


class Service:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.log = get_logger()
        self.telemetry = Telemetry(registry, settings.deadletter.log_interval_s)
        routes = compile_routes(settings)
        acks_after_write = settings.mqtt.ack == "after_write" and settings.mqtt.qos > 0
        self.buffer = MemoryBuffer(
            settings.batch.buffer_max_lines,
            ack_window=settings.mqtt.max_inflight if acks_after_write else 0,
        )
        self.telemetry.buffer_gauge = lambda: (self.buffer.fill, self.buffer.max_lines)
        dl = settings.deadletter
        self.dead_letters = DeadLetterFile(
            dl.path,
            dl.max_bytes,
            on_error=self.telemetry.deadletter_write_failed,
            publish=self._publish_dead_letter if dl.mqtt_topic else None,
        )
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
        )
        self.sink = InfluxSink(settings.influx)
        self.source = MqttSource(
            settings.mqtt,
            self.pipeline.handle,
            self._buffer_full,
            self.buffer.wait_for_space,
            self.telemetry,
            on_fatal=self._fail,
        )
        self.source.invalid_topic = lambda m: self.pipeline.reject(
            m, DropReason.INVALID_TOPIC, "topic is not valid UTF-8"
        )
        self.spool: DiskSpool | None = None
        if settings.spool.enabled:
            sp = settings.spool
            self.spool = DiskSpool(sp.path, sp.max_bytes, sp.segment_bytes, sp.fsync)
            spool = self.spool
            self.telemetry.spool_gauge = lambda: (
                spool.size_bytes,
                spool.stats.records_replayed,
                spool.stats.corrupt_records,
            )
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
        self.self_metrics = SelfMetrics(settings, self.telemetry)
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.failed = False  # a task died of an unexpected error: exit non-zero after shutdown
        self.acks_overdue_since_ns: int | None = None  # the ack watchdog's current stall

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
        (it survives a crash of ingestd; fsync is left to the OS, for SD cards' sake)."""
        if message.mid:
            self.dead_letters.flush()
            self.source.ack([message])

    def _publish_dead_letter(self, data: bytes) -> None:
        topic = self.settings.deadletter.mqtt_topic
        if topic:
            self.source.publish_nowait(topic, data.rstrip(b"\n"))

    def _ready(self) -> tuple[bool, str]:
        if not self.telemetry.mqtt_connected:
            return False, "mqtt not connected"
        if self.flusher.outage:
            return False, "the database is not taking writes"
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

    # -- the flush task ----------------------------------------------------------------------

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._stopping.is_set():
            return
        self.log.info("shutdown_requested")
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings
        self.dead_letters.open()
        if s.http.enabled:
            await self.http.start(s.http.host, s.http.port)
        await self.sink.open()
        self.log.info(
            "ingestd_started",
            mqtt=f"{s.mqtt.host}:{s.mqtt.port}",
            topics=s.mqtt.topics,
            influx=s.influx.url,
            api=s.influx.api,
            routes=len(s.routes),
            http_port=self.http.port,
        )
        started_at = time.monotonic()
        ingest = asyncio.create_task(self.source.run(), name="ingest")
        flush = asyncio.create_task(self.flusher.run(), name="flush")
        replay = asyncio.create_task(self.flusher.replay_forever(), name="spool-replay")
        dl_flush = asyncio.create_task(self.dead_letters.flush_every(1.0), name="deadletter-flush")
        reports = asyncio.create_task(self.self_metrics.run(), name="self-metrics")
        watchdog = asyncio.create_task(self._watch_acks(), name="ack-watchdog")
        self.started.set()
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait(
            {ingest, flush, watchdog, stopping}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task is not stopping and task.exception() is not None:
                self.failed = True
                self.log.error("task_failed", task=task.get_name(), error=repr(task.exception()))
        # 1. stop reading (still connected, so what is drained can be acked)
        self.source.close_intake()
        # 2. close buffer intake, 3. drain until the deadline
        self.buffer.close_intake()
        try:
            async with asyncio.timeout(s.shutdown.drain_timeout_s):
                await flush
        except (TimeoutError, Exception):
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await flush
        replay.cancel()
        unwritten, left_with_broker = self._settle_leftovers()
        self.source.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await ingest
        ingest.cancel()
        # 5. close the sink and the rest
        await self.sink.close()
        reports.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reports
        dl_flush.cancel()
        watchdog.cancel()
        stopping.cancel()
        self.dead_letters.close()
        await self.http.stop()
        self._log_summary(time.monotonic() - started_at, unwritten, left_with_broker)

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


def check_message(
    settings: Settings, topic: str, payload: bytes
) -> tuple[list[str] | None, str | None]:
    """What `ingestd check --topic --payload` prints: the lines, or the drop reason."""
    buffer = MemoryBuffer(settings.batch.buffer_max_lines)
    pipeline = Pipeline(
        compile_routes(settings),
        buffer,
        Telemetry(),
        lambda _d: None,
        settings.limits,
    )
    try:
        return pipeline.to_lines(RawMessage(topic, payload, time.time_ns())), None
    except MessageRejected as exc:
        return None, f"{exc.reason}: {exc.detail}"
