"""The references ingestd's throughput is quoted against, measured in the same run: the same load
through the same broker settings to a subscriber that only counts.

- `mosquitto_sub` (C, libmosquitto): the delivery ceiling of this machine, this broker and this
  load generator. ingestd cannot store more than the box can deliver at all, so its rate as a
  share of this ceiling travels between machines better than the absolute figure.
- the paho counting subscriber (paho_counter.py): what a Python MQTT client costs before it does
  any work, the floor under every Python ingest path (Node-RED is JavaScript; aiomqtt is paho).

Each reference probe is reconciled like ingestd's: the subscriber received everything the
simulator published, within the same grace after the last publish, with `$SYS` drops at 0."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.daemon import cpu_seconds, peak_rss_mb
from ingestd.devtools.servers import Mosquitto, wait_until
from ingestd.devtools.workload import TOPICS

from .harness import SHIPPED_BROKER_LIMITS, Load, Probe, broker_dropped, run_simulator

READY_TOPIC = "sensors/reference/ready"


class Counter(Protocol):
    """A counting subscriber in its own process."""

    pid: int

    def received(self) -> tuple[int, float]:
        """Messages received so far, and the monotonic time of the last."""
        ...

    def close(self) -> None: ...


class _CountingProcess:
    """A subscriber process whose stdout reports its count, read by a thread (`_read`, which
    each kind implements for its own output)."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.pid = self.proc.pid
        self.count, self.last = 0, 0.0
        self.lock = threading.Lock()
        assert self.proc.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, out: IO[bytes]) -> None:
        raise NotImplementedError

    def received(self) -> tuple[int, float]:
        with self.lock:
            return self.count, self.last

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.reader.join(timeout=5)


class MosquittoSub(_CountingProcess):
    """`mosquitto_sub` printing one `.` per message (it flushes per message): the count is the
    bytes read, the time of the last is when its byte was read."""

    name = "mosquitto_sub"

    def __init__(self, port: int, qos: int) -> None:
        topics = [arg for topic in TOPICS for arg in ("-t", topic)]
        command = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos)]
        super().__init__([*command, *topics, "-F", ".", "-N", "-i", f"ref-{time.time_ns()}"])

    def _read(self, out: IO[bytes]) -> None:
        while chunk := os.read(out.fileno(), 65536):
            with self.lock:
                self.count += len(chunk)
                self.last = time.monotonic()


class PahoCounter(_CountingProcess):
    """paho_counter.py, which prints `<count> <monotonic time of the last>` as it moves."""

    name = "paho"

    def __init__(self, port: int, qos: int) -> None:
        topics = [arg for topic in TOPICS for arg in ("--topic", topic)]
        command = [sys.executable, "-m", "benchmarks.paho_counter", "--port", str(port)]
        super().__init__([*command, "--qos", str(qos), *topics])

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            count, last = line.split()
            with self.lock:
                self.count, self.last = int(count), float(last)


COUNTERS: dict[str, type[MosquittoSub] | type[PahoCounter]] = {
    "mosquitto_sub": MosquittoSub,
    "paho": PahoCounter,
}


def subscribed(port: int, counter: Counter, timeout_s: float = 10.0) -> int:
    """Publish to READY_TOPIC until the counter sees one: it is subscribed. Returns its count
    after the last of those arrived, to subtract from what the load brings."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ready-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:

        def seen() -> bool:
            client.publish(READY_TOPIC, b"1", qos=1).wait_for_publish(2)
            return counter.received()[0] > 0

        wait_until(seen, timeout_s, "the reference subscriber's subscription", interval_s=0.1)
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(0.3)  # a ready message still in flight
    return counter.received()[0]


def wait_received(counter: Counter, expected: int, quiet_s: float = 5.0) -> tuple[int, float]:
    """Until the counter has `expected` messages, or nothing arrived for `quiet_s`."""
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < quiet_s:
        count, last = counter.received()
        if count >= expected:
            return count, last
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        time.sleep(0.05)
    return counter.received()


def reference_probe(load: Load, name: str) -> Probe:
    """`load` through a fresh broker (the shipped limits) to the counter `name`, reconciled."""
    workdir = Path(tempfile.mkdtemp())
    broker = Mosquitto(workdir, listener_options="allow_anonymous true\n" + SHIPPED_BROKER_LIMITS)
    broker.start()
    counter = COUNTERS[name](broker.port, load.qos)
    try:
        baseline = subscribed(broker.port, counter)
        cpu_before = cpu_seconds(counter.pid)
        report = run_simulator(
            broker.port, load.simulator_args(), workdir / "published.json", 600 + load.seconds
        )
        published_at = time.monotonic()
        published = int(report["published"])
        count, last = wait_received(counter, baseline + published)
        received = count - baseline
        cpu = cpu_seconds(counter.pid) - cpu_before
        publish_s = float(report["duration_s"])
        settle_s = max(0.0, last - published_at)
        result = Probe(
            qos=load.qos,
            offered_rate=load.rate,
            subscriber=name,
            published=published,
            received=received,
            stored=received,
            publish_s=publish_s,
            settle_s=round(settle_s, 2),
            stored_rate=round(received / (publish_s + settle_s)),
            cpu_ms_per_1000=round(1e6 * cpu / max(received, 1), 2),
            peak_rss_mb=round(peak_rss_mb(counter.pid), 1),
            simulator_cpu_ms_per_1000=report.get("send_cpu_ms_per_1000"),
        )
        time.sleep(1.2)  # one more $SYS interval
        result.broker_dropped = broker_dropped(broker.port)
        return result
    finally:
        counter.close()
        broker.stop()
