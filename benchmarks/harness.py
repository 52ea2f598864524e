"""What the end-to-end benchmarks share: machine facts, one probe (a paced or burst load through
Mosquitto -> ingestd -> InfluxDB 1.6, reconciled exactly), a write-latency proxy, and results
written as JSON, Markdown and a PNG chart in benchmarks/results/."""

from __future__ import annotations

import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.servers import InfluxDB1, Mosquitto

from .stack import quiet_ingestd, running_stack

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
# as mosquitto/mosquitto.conf ships them: a 1000-message in-flight window matching ingestd's
# mqtt.max_inflight (acks after storage), and a queue deep enough for a QoS 1 backlog
SHIPPED_BROKER_LIMITS = (
    "sys_interval 1\nmax_inflight_messages 1000\n"
    "max_queued_messages 1000000\nmax_queued_bytes 268435456\n"
)
RESULTS = Path(__file__).parent / "results"


# -- machine ---------------------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith(("model name", "Model", "Hardware")):
                cpu_model = line.split(":", 1)[1].strip()
                break
    pi_model = None
    model_path = Path("/proc/device-tree/model")
    if model_path.exists():
        pi_model = model_path.read_bytes().rstrip(b"\0").decode(errors="replace")
    libraries: dict[str, str | None] = {}
    for name in ("ingestd", "aiomqtt", "paho-mqtt", "aiohttp", "orjson", "pydantic", "uvloop"):
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    mosquitto = _first_line(["mosquitto", "-h"])
    influxd = _first_line(["influxd", "version"])
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)),
        "raspberry_pi_model": pi_model,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libraries": libraries,
        "broker": mosquitto,
        "database": influxd,
    }


# -- the write-latency proxy -----------------------------------------------------------------


class LatencyProxy:
    """Between ingestd and InfluxDB: forwards each write and, once the database has answered
    2xx, records for every line now minus the line's timestamp. With payload timestamps set at
    publish time, that is publish-to-stored latency."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.latencies_ms: list[float] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, method="POST", headers=dict(self.headers)
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, answer = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, answer = exc.code, exc.read()
                now_ns = time.time_ns()
                if status < 300:
                    stamps = [int(line.rsplit(b" ", 1)[1]) for line in body.splitlines() if line]
                    with proxy.lock:
                        proxy.latencies_ms.extend((now_ns - ts) / 1e6 for ts in stamps)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as response:
                    answer = response.read()
                self.send_response(response.status)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def percentiles(self) -> dict[str, float]:
        with self.lock:
            values = sorted(self.latencies_ms)
        if not values:
            return {}
        return {
            "p50_ms": round(values[len(values) // 2], 1),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
            "max_ms": round(values[-1], 1),
            "points": len(values),
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- one probe -------------------------------------------------------------------------------


@dataclass
class Probe:
    """One load through the whole path, reconciled. For a reference probe (reference.py),
    `stored` is what the counting subscriber received."""

    qos: int
    offered_rate: float | None  # None: a burst
    subscriber: str = "ingestd"
    published: int = 0
    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    broker_dropped: int = 0
    publish_s: float = 0.0
    settle_s: float = 0.0  # from the last publish until everything was stored
    stored_rate: float = 0.0  # stored per second, from first publish to last store
    cpu_ms_per_1000: float = 0.0  # of the subscriber: ingestd, or the reference
    peak_rss_mb: float = 0.0
    simulator_cpu_ms_per_1000: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    # /metrics reads that failed (ingestd's event loop too busy to answer within the timeout)
    metrics_unanswered: int = 0

    @property
    def lossless(self) -> bool:
        return (
            self.broker_dropped == 0
            and self.received == self.published
            and self.stored + self.dead_lettered == self.published
        )

    def keeps_up(self, grace_s: float, seconds: float) -> bool:
        """Lossless, stored within `grace_s` of the last publish, and the offered load was
        really offered: at QoS 1 the simulator can fall behind its schedule."""
        offered = (self.offered_rate or 0) * seconds
        return (
            self.lossless
            and self.metrics_unanswered == 0
            and self.settle_s <= grace_s
            and self.published >= 0.95 * offered
        )


def broker_dropped(port: int) -> int:
    """$SYS/broker/publish/messages/dropped (needs sys_interval set on the broker)."""
    value: list[int] = []
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sys-reader-{time.time_ns()}")

    def on_message(_c: object, _u: object, message: paho.MQTTMessage) -> None:
        value.append(int(message.payload))
        done.set()

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("$SYS/broker/publish/messages/dropped")
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return value[0] if value else 0


def run_simulator(port: int, args: list[str], report: Path, timeout_s: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "ingestd", "simulate", "--port", str(port)]
    command += [*args, "--report", str(report), "--progress-s", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"simulator failed: {result.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


@dataclass(frozen=True)
class Load:
    """p4n4 payloads from `devices` simulated devices: `rate` msg/s for `seconds`, or with rate
    None a burst of `count`. `live`: generated while sending, so timestamps are send times."""

    qos: int
    rate: float | None
    seconds: float = 0.0
    count: int = 0
    devices: int = 1000
    live: bool = False

    def simulator_args(self) -> list[str]:
        args = ["--devices", str(self.devices), "--format", "p4n4", "--qos", str(self.qos)]
        args += ["--dropout-share", "0", "--max-inflight", "1000"]
        if self.rate is None:
            args += ["--burst", "--count", str(self.count)]
        else:
            args += ["--rate", str(self.rate), "--duration-s", str(self.seconds)]
        return [*args, "--no-pre-encode"] if self.live else args


def probe(
    load: Load, measure_latency: bool = False, ingestd_overrides: dict[str, Any] | None = None
) -> Probe:
    """One load through a fresh broker, ingestd and database, reconciled."""
    with running_stack(SHIPPED_BROKER_LIMITS) as (broker, db, workdir):
        proxy = LatencyProxy(db.url) if measure_latency else None
        influx = {**db.influx_settings(), "url": proxy.url} if proxy else db.influx_settings()
        overrides = {"mqtt": {"qos": load.qos, "max_inflight": 1000}, **(ingestd_overrides or {})}
        ingestd = quiet_ingestd(workdir, broker, influx, **overrides)
        ingestd.start()
        try:
            result = _drive(broker, db, ingestd, workdir, load)
            if proxy:
                result.latency = proxy.percentiles()
        finally:
            if ingestd.proc is not None and ingestd.proc.poll() is None:
                ingestd.stop()
            if proxy:
                proxy.close()
        return result


def _drive(broker: Mosquitto, db: InfluxDB1, ingestd: Any, workdir: Path, load: Load) -> Probe:
    cpu_before = ingestd.cpu_seconds()
    report = run_simulator(
        broker.port, load.simulator_args(), workdir / "published.json", 600 + load.seconds
    )
    published_at = time.monotonic()
    published = int(report["published"])
    metrics, unanswered = settle(ingestd.metrics, published)
    settled_at = time.monotonic()
    cpu = ingestd.cpu_seconds() - cpu_before
    received = int(metrics.get("ingestd_messages_received_total", 0))
    publish_s = float(report["duration_s"])
    result = Probe(
        qos=load.qos,
        offered_rate=load.rate,
        published=published,
        received=received,
        stored=db.count(),
        dead_lettered=int(_dropped(metrics)),
        publish_s=publish_s,
        settle_s=round(settled_at - published_at, 2),
        stored_rate=round(published / (publish_s + settled_at - published_at)),
        cpu_ms_per_1000=round(1e6 * cpu / max(received, 1), 2),
        peak_rss_mb=round(ingestd.peak_rss_mb(), 1),
        simulator_cpu_ms_per_1000=report.get("send_cpu_ms_per_1000"),
        metrics_unanswered=unanswered,
    )
    time.sleep(1.2)  # one more $SYS interval
    result.broker_dropped = broker_dropped(broker.port)
    return result


def settle(
    read_metrics: Callable[[], dict[str, float]], published: int, quiet_s: float = 5.0
) -> tuple[dict[str, float], int]:
    """Read /metrics until everything published is written or dead-lettered, or nothing moved
    for `quiet_s` (loss, or a stall). A read that fails (a saturated event loop does not answer
    within the timeout) counts as no progress: the last good reading stands, and the number of
    failed reads comes back with it, so a probe that overloads ingestd is reported as not
    keeping up instead of crashing the run."""
    metrics: dict[str, float] = {}
    unanswered = 0
    last, last_change = -1.0, time.monotonic()
    while time.monotonic() - last_change < quiet_s:
        try:
            metrics = read_metrics()
        except (OSError, http.client.HTTPException):  # a timeout, refused, cut short
            unanswered += 1
            time.sleep(0.05)
            continue
        done = metrics.get("ingestd_points_written_total", 0) + _dropped(metrics)
        if done >= published and metrics.get("ingestd_buffer_lines", 1) == 0:
            break
        if done != last:
            last, last_change = done, time.monotonic()
        time.sleep(0.05)
    return metrics, unanswered


def highest_rate(passes: Callable[[float], bool], start: float, smoke: bool = SMOKE) -> float:
    """From `start`, multiply the rate by 1.5 while it passes (divide while it fails) to
    bracket the highest passing rate, then bisect twice. 0 if even 1/10 of `start` fails.
    `smoke`: stop at the first passing rate."""
    good, bad = 0.0, float(start)
    if passes(bad):
        good, bad = bad, bad * 1.5
        while not smoke and passes(bad):
            good, bad = bad, bad * 1.5
    else:
        while bad > start / 10:
            candidate = round(bad / 1.5, -2)
            if passes(candidate):
                good = candidate
                break
            bad = candidate
        if good == 0:
            return 0.0
    for _ in range(0 if smoke else 2):
        middle = round((good + bad) / 2, -2)
        if passes(middle):
            good = middle
        else:
            bad = middle
    return good


def _dropped(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("ingestd_messages_dropped_total{"))


# -- results ---------------------------------------------------------------------------------


def median_of(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def save(name: str, result: dict[str, Any]) -> Path:
    """Append one run (with machine facts) to results/<name>.json; return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    entry = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result}
    entry.setdefault("machine", machine_info())
    path.write_text(json.dumps([*runs, entry], indent=2) + "\n")
    return path


def probe_dict(p: Probe) -> dict[str, Any]:
    return {**asdict(p), "lossless": p.lossless}
