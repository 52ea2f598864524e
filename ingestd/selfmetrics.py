"""ingestd's own counters, written every `self_metrics.interval_s` into a database of their own
(`self_metrics.database`, default "ingestd"): the sensor database holds only sensor data.

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
import os
import time

from ingestd.config import Settings
from ingestd.encode import to_line
from ingestd.errors import DropReason, IngestdError, SinkError
from ingestd.records import FieldValue, Point
from ingestd.sink import Sink
from ingestd.telemetry import BATCH_OUTCOMES, STATS, Telemetry

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
    """One point of running totals and gauges (telemetry.STATS, the batches by outcome, uptime
    and memory), and one point per drop reason."""
    t = telemetry
    fields: list[tuple[str, FieldValue]] = [(stat.name, stat.read(t)) for stat in STATS]
    fields += [(f"batches_{outcome}", t.batches.get(outcome, 0)) for outcome in BATCH_OUTCOMES]
    fields += [("uptime_s", float(round(uptime_s, 3))), ("rss_bytes", rss_bytes())]
    tags = (("instance", instance),)
    lines = [to_line(Point(measurement, tags, tuple(fields), now_ns))]
    for reason in DropReason:
        count = t.dropped.get(reason.value, 0)
        drop_tags = (*tags, ("reason", reason.value))
        lines.append(to_line(Point(f"{measurement}_drops", drop_tags, (("count", count),), now_ns)))
    return lines


class SelfMetrics:
    def __init__(self, settings: Settings, telemetry: Telemetry, sink: Sink) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.sink = sink  # its own, so a report never waits behind a sensor batch

    async def report(self, uptime_s: float) -> bool:
        s = self.settings
        lines = report_lines(
            self.telemetry, s.self_metrics.measurement, s.mqtt.client_id, uptime_s, time.time_ns()
        )
        try:
            refused = await self.sink.write(lines)
        except SinkError as exc:
            self.telemetry.log.debug("self_metrics_skipped", error=str(exc)[:300])
            return False
        if refused:  # e.g. a field whose type an older ingestd wrote differently
            self.telemetry.log.debug(
                "self_metrics_refused", lines=len(refused), error=refused[0].detail[:300]
            )
        return True

    async def run(self) -> None:
        """Until cancelled; the service starts it only when self_metrics.interval_s > 0. Its
        database is created first where ingestd may (v1); if not, reports are skipped."""
        interval_s = self.settings.self_metrics.interval_s
        started = time.monotonic()
        try:
            found = await self.sink.prepare()
            self.telemetry.log.info(
                "self_metrics_database", database=self.settings.self_metrics.database, found=found
            )
        except IngestdError as exc:  # a SinkError too: the server is down, or says no
            self.telemetry.log.warning("self_metrics_database_not_prepared", error=str(exc)[:300])
        while True:
            await asyncio.sleep(interval_s)
            await self.report(time.monotonic() - started)
