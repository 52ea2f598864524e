"""`ingestd simulate`: one asyncio process playing 1 to 10,000 devices (or more).

    ingestd simulate --devices 1000 --rate 5000 --duration-s 30          # paced, QoS 0
    ingestd simulate --devices 100 --count 100000 --burst --qos 1       # as fast as it can
    ingestd simulate --devices 20 --interval-s 5 --duration-s 0         # forever, the demo
    ingestd simulate ... --malformed-share 0.02 --report published.json

It reports exactly what it published (per format, per topic, malformed ones per expected drop
reason, plus the broker's acknowledgements at QoS 1) so a benchmark can reconcile it against
what was stored, and its own CPU time, so a benchmark can tell its cost from ingestd's.
Messages are generated ahead of the send (in chunks while pacing, all of them for a --count
burst) and written in batches on one socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ingestd.sim.fleet import FORMATS, Fleet, Message
from ingestd.sim.publisher import ConnectionLost, MqttPublisher, TopicCache

CHUNK = 2_000  # messages per write
TICK_S = 0.005


@dataclass
class Report:
    devices: int
    qos: int
    offered_rate: float | None
    published: int = 0
    acked: int = 0
    dropouts: int = 0
    duration_s: float = 0.0  # sending only: pre-encoding happens before the clock starts
    generate_cpu_s: float = 0.0
    cpu_s: float = 0.0  # all of the simulator's CPU time, generation included
    per_format: Counter[str] = field(default_factory=Counter)
    per_topic: Counter[str] = field(default_factory=Counter)
    malformed_by_reason: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        rate = self.published / self.duration_s if self.duration_s else 0.0
        return {
            "devices": self.devices,
            "qos": self.qos,
            "offered_rate": self.offered_rate,
            "published": self.published,
            "acked": self.acked,
            "dropouts": self.dropouts,
            "duration_s": round(self.duration_s, 3),
            "achieved_rate": round(rate, 1),
            "cpu_s": round(self.cpu_s, 3),
            "generate_cpu_s": round(self.generate_cpu_s, 3),
            "send_cpu_ms_per_1000": round(
                1e6 * (self.cpu_s - self.generate_cpu_s) / self.published, 3
            )
            if self.published
            else None,
            "cpu_ms_per_1000": round(1e6 * self.cpu_s / self.published, 3)
            if self.published
            else None,
            "per_format": dict(self.per_format),
            "malformed_by_reason": dict(self.malformed_by_reason),
            "per_topic": dict(self.per_topic),
        }

    def summary(self) -> str:
        d = self.as_dict()
        return (
            f"published {d['published']} messages from {d['devices']} devices in "
            f"{d['duration_s']} s ({d['achieved_rate']}/s, QoS {d['qos']}, acked {d['acked']}); "
            f"formats {d['per_format']}; malformed {d['malformed_by_reason']}; "
            f"dropouts {d['dropouts']}; simulator CPU {d['cpu_s']} s"
        )


@dataclass
class Planned:
    """Messages ready for the socket, with what the report needs, in aligned lists."""

    heads: list[bytes] = field(default_factory=list)  # QoS 0: the packet; QoS 1: up to the id
    tails: list[bytes] = field(default_factory=list)  # QoS 1: the payload, after the id
    formats: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)  # the expected drop reason

    def __len__(self) -> int:
        return len(self.heads)


class Simulator:
    def __init__(self, fleet: Fleet, qos: int, max_inflight: int) -> None:
        self.fleet = fleet
        self.publisher: MqttPublisher  # set once connected, after `prepare`
        self.qos = qos
        self.max_inflight = max_inflight
        self.topics = TopicCache()
        self.report = Report(len(fleet.devices), qos, None)
        self.stop = asyncio.Event()

    def plan(self, messages: list[Message], into: Planned | None = None) -> Planned:
        planned = into or Planned()
        encode = self.topics.publish_head if self.qos else self.topics.publish
        for m in messages:
            planned.heads.append(encode(m.topic, m.payload))
            if self.qos:
                planned.tails.append(m.payload)
            planned.formats.append(m.format)
            planned.topics.append(m.topic.decode())
            planned.reasons.append(m.reason)
        return planned

    def generate(self, count: int) -> Planned:
        cpu = time.process_time()
        planned = self.plan(self.fleet.take(count, time.time_ns() // 1_000_000))
        self.report.generate_cpu_s += time.process_time() - cpu
        return planned

    async def send(self, planned: Planned, start: int, stop: int) -> None:
        publisher = self.publisher
        heads = planned.heads[start:stop]
        if self.qos == 0:
            publisher.write(b"".join(heads))
        else:
            tails = planned.tails[start:stop]
            # 16-bit packet ids: at most max_inflight unacknowledged at a time
            for a in range(0, len(heads), 500):
                b = min(a + 500, len(heads))
                await publisher.wait_inflight_at_most(self.max_inflight - (b - a))
                next_id = publisher.next_packet_id
                publisher.write(
                    b"".join(
                        [heads[i] + next_id().to_bytes(2, "big") + tails[i] for i in range(a, b)]
                    )
                )
        r = self.report
        r.published += len(heads)
        r.per_format.update(planned.formats[start:stop])
        r.per_topic.update(planned.topics[start:stop])
        r.malformed_by_reason.update(filter(None, planned.reasons[start:stop]))
        await publisher.drain()

    def prepare(
        self, rate: float | None, count: int | None, duration_s: float | None, pre_encode: bool
    ) -> Planned | None:
        """Everything a run of known size will send, generated before connecting (a long
        generation would otherwise outlast the MQTT keepalive) and before the clock starts."""
        total = count if rate is None or duration_s is None else int(rate * duration_s)
        if not pre_encode or total is None:
            return None
        cpu = time.process_time()
        now_ms = time.time_ns() // 1_000_000
        # a count is met exactly; a paced run keeps its dropouts' slots empty
        messages = (
            self.fleet.take_published(total, now_ms)
            if count is not None
            else self.fleet.take(total, now_ms)
        )
        plan = self.plan(messages)
        self.report.generate_cpu_s += time.process_time() - cpu
        return plan

    async def run(
        self,
        rate: float | None,
        count: int | None,
        duration_s: float | None,
        plan: Planned | None,
    ) -> None:
        """`rate` message slots a second (a dropout leaves its slot empty), or with rate None
        `count` messages as fast as the broker takes them; from `plan` when prepared."""
        self.report.offered_rate = rate
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await self._pace(plan, rate, count, duration_s, started)
        finally:
            self.report.duration_s = loop.time() - started

    async def _pace(
        self,
        plan: Planned | None,
        rate: float | None,
        count: int | None,
        duration_s: float | None,
        started: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        slots = sent = 0
        while not self.stop.is_set():
            now = loop.time()
            if duration_s is not None and now - started >= duration_s:
                break
            if count is not None and sent >= count:
                break
            if plan is not None and sent >= len(plan):
                break
            if rate is None:
                n = CHUNK
            else:
                n = min(int((now - started) * rate) - slots, CHUNK)
                if n <= 0:  # caught up: sleep until the next slot is due, at least one tick
                    await asyncio.sleep(max((slots + 1) / rate - (now - started), TICK_S))
                    continue
            if count is not None:
                n = min(n, count - sent)
            slots += n
            if plan is not None:
                n = min(n, len(plan) - sent)
                await self.send(plan, sent, sent + n)
                sent += n
            else:
                fresh = self.generate(n)
                await self.send(fresh, 0, len(fresh))
                sent += len(fresh)


async def simulate(
    fleet: Fleet,
    host: str,
    port: int,
    *,
    rate: float | None = None,
    count: int | None = None,
    duration_s: float | None = None,
    qos: int = 0,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    max_inflight: int = 10_000,
    ack_timeout_s: float = 60.0,
    progress_every_s: float = 0.0,
    pre_encode: bool = True,
) -> Report:
    """Publish; `rate` None means a burst of `count`. Returns what was published. Runs with a
    known size (a count, or a rate for a duration) are generated before the clock starts unless
    pre_encode is False (then each message carries the time it was sent: latency runs)."""
    if rate is None and count is None:
        raise ValueError("a burst needs a count")
    cpu = time.process_time()
    sim = Simulator(fleet, qos, max_inflight)
    plan = sim.prepare(rate, count, duration_s, pre_encode)
    sim.publisher = publisher = await MqttPublisher.connect(
        host,
        port,
        client_id or f"ingestd-simulate-{os.getpid()}",
        username=username,
        password=password,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, sim.stop.set)
    progress = (
        asyncio.create_task(_progress(sim, progress_every_s)) if progress_every_s > 0 else None
    )
    try:
        await sim.run(rate, count, duration_s, plan)
        if qos:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ack_timeout_s):
                    await publisher.wait_inflight_at_most(0)
    finally:
        sim.report.acked = publisher.acked
        sim.report.dropouts = fleet.dropouts
        sim.report.cpu_s = time.process_time() - cpu
        if progress is not None:
            progress.cancel()
        await publisher.disconnect()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return sim.report


async def _progress(sim: Simulator, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        print(sim.report.summary(), flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ingestd simulate", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--username")
    p.add_argument("--password-env", help="the environment variable holding the password")
    p.add_argument("--client-id")
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--format", default="mixed", choices=["mixed", *FORMATS])
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, help="messages per second, all devices together")
    pace.add_argument("--interval-s", type=float, help="seconds between one device's messages")
    pace.add_argument("--burst", action="store_true", help="--count messages, as fast as possible")
    p.add_argument("--count", type=int, help="stop after this many published messages")
    p.add_argument("--duration-s", type=float, default=60.0, help="0: until stopped")
    p.add_argument("--qos", type=int, choices=[0, 1], default=0)
    p.add_argument("--max-inflight", type=int, default=10_000, help="unacknowledged, at QoS 1")
    p.add_argument("--malformed-share", type=float, default=0.0)
    p.add_argument("--dropout-share", type=float, default=0.001)
    p.add_argument(
        "--spike-share", type=float, default=0.0005, help="readings that spike (4x the amplitude)"
    )
    p.add_argument(
        "--outage-every-s",
        type=float,
        default=0.0,
        help="one device goes quiet this often (0: never), for --outage-s",
    )
    p.add_argument("--outage-s", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--report", type=Path, help="write the full report (per topic) as JSON here")
    p.add_argument("--progress-s", type=float, default=60.0, help="a summary line this often")
    p.add_argument(
        "--no-pre-encode",
        action="store_true",
        help="generate while sending, so timestamps are send times (default: generate first)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.burst and not args.count:
        _parser().error("--burst needs --count")
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        _parser().error(f"environment variable {args.password_env} is not set")
    rate = None if args.burst else args.rate
    if args.interval_s:
        rate = args.devices / args.interval_s
    elif rate is None and not args.burst:
        rate = args.devices / 10.0  # one message per device every 10 s
    duration = None if args.count is not None or args.duration_s == 0 else args.duration_s
    fleet = Fleet(
        args.devices,
        args.format,
        seed=args.seed,
        malformed_share=args.malformed_share,
        dropout_share=args.dropout_share,
        spike_share=args.spike_share,
        outage_every_s=args.outage_every_s,
        outage_s=args.outage_s,
    )
    try:
        report = asyncio.run(
            simulate(
                fleet,
                args.host,
                args.port,
                rate=rate,
                count=args.count,
                duration_s=duration,
                qos=args.qos,
                username=args.username,
                password=password,
                client_id=args.client_id,
                max_inflight=args.max_inflight,
                progress_every_s=args.progress_s,
                pre_encode=not args.no_pre_encode,
            )
        )
    except (OSError, ConnectionLost, TimeoutError) as exc:
        print(f"ingestd simulate: {exc}", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    if args.report:
        args.report.write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
