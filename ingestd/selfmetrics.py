"""ingestd's own counters, written into the database every `self_metrics.interval_s`.

This is what Telegraf's `internal` input does, and it is why the stack needs no Prometheus: the
Grafana that shows the sensors shows ingestd's health from the same InfluxDB, and a Pi owner runs
one service fewer (a Prometheus server costs ~100 MB of RAM and another volume to look after).
`/metrics` stays for those who already run Prometheus.

Counters are written as running totals, not rates, so a missed report loses nothing: the next
one carries the whole count and Grafana derives rates with `derivative(nonNegative: true)`. A
report that cannot be written is skipped, not retried or spooled; sensor data keeps priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from ingestd.config import Settings
from ingestd.encode import escape_measurement, escape_tag_value
from ingestd.errors import DropReason, SinkError
from ingestd.sink import InfluxSink
from ingestd.telemetry import BATCH_OUTCOMES, Telemetry

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size now (Linux), 0 where /proc is not there."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def report_lines(
    telemetry: Telemetry, measurement: str, instance: str, uptime_s: float, now_ns: int
) -> list[str]:
    """One point of running totals and gauges, and one point per drop reason."""
    t = telemetry
    spool_bytes, replayed, corrupt = t.spool_gauge()
    fill, capacity = t.buffer_gauge()
    fields: list[tuple[str, int | float]] = [
        ("messages_received", t.messages_received),
        ("messages_ignored", t.messages_ignored),
        ("retained_skipped", t.retained_skipped),
        ("points_written", t.points_written),
        ("messages_dropped", t.dropped_total),
        ("points_spooled", t.points_spooled),
        ("spool_bytes", spool_bytes),
        ("spool_batches_replayed", replayed),
        ("spool_corrupt_records", corrupt),
        ("buffer_lines", fill),
        ("buffer_capacity_lines", capacity),
        ("mqtt_connected", int(t.mqtt_connected)),
        ("mqtt_reading_paused", int(t.mqtt_reading_paused)),
        ("write_seconds_sum", float(t.write_seconds_sum)),
        ("writes_timed", t.writes_timed),
        ("deadletter_write_errors", t.deadletter_write_errors),
        ("uptime_s", float(round(uptime_s, 3))),
        ("rss_bytes", rss_bytes()),
    ]
    fields += [(f"batches_{outcome}", t.batches.get(outcome, 0)) for outcome in BATCH_OUTCOMES]
    # integers as InfluxDB integers, so derivative() and sums stay exact
    encoded = ",".join(
        f"{key}={value}i" if isinstance(value, int) else f"{key}={value!r}" for key, value in fields
    )
    name = escape_measurement(measurement)
    tag = f"instance={escape_tag_value(instance)}"
    lines = [f"{name},{tag} {encoded} {now_ns}"]
    for reason in DropReason:
        count = t.dropped.get(reason.value, 0)
        lines.append(f"{name}_drops,{tag},reason={reason.value} count={count}i {now_ns}")
    return lines


class SelfMetrics:
    def __init__(self, settings: Settings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.sink = InfluxSink(settings.influx)
        self.reports_written = 0
        self.reports_skipped = 0

    async def report(self, uptime_s: float) -> bool:
        s = self.settings
        lines = report_lines(
            self.telemetry, s.self_metrics.measurement, s.mqtt.client_id, uptime_s, time.time_ns()
        )
        try:
            await self.sink.post(lines)
        except SinkError as exc:
            self.reports_skipped += 1
            self.telemetry.log.debug("self_metrics_skipped", error=str(exc)[:300])
            return False
        self.reports_written += 1
        return True

    async def run(self) -> None:
        interval_s = self.settings.self_metrics.interval_s
        if interval_s <= 0:
            return
        started = time.monotonic()
        try:
            while True:
                await asyncio.sleep(interval_s)
                await self.report(time.monotonic() - started)
        finally:
            with contextlib.suppress(Exception):
                await self.sink.close()
