"""ingestd as a subprocess, the way users run it: for the integration tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import tomli_w

from ingestd.devtools.servers import free_port, wait_until


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Process `pid`'s peak resident memory (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Broker(Protocol):
    """What ingestd needs of a broker to be pointed at it: Mosquitto, aedes, a scripted fake."""

    port: int


class Ingestd:
    """ingestd as a subprocess, the way users run it. `overrides` merge into config sections."""

    def __init__(
        self,
        workdir: Path,
        broker: Broker,
        influx: dict[str, Any],
        topics: list[str],
        routes: list[dict[str, Any]],
        **overrides: Any,
    ) -> None:
        self.workdir = workdir
        self.http_port = free_port()
        self.deadletters = workdir / "deadletters.jsonl"
        config: dict[str, Any] = {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "topics": topics,
                "qos": 1,
                "client_id": f"ingestd-test-{self.http_port}",
            },
            "influx": influx,
            "batch": {
                "max_lines": 5000,
                "flush_interval_s": 0.2,
                "retry_initial_s": 0.2,
                "retry_max_s": 2.0,
            },
            "deadletter": {"path": str(self.deadletters), "log_interval_s": 1.0},
            "spool": {"path": str(workdir / "spool")},
            "state": {"path": str(workdir / "state")},
            "http": {"port": self.http_port},
            "log": {"format": "json"},
            # off unless a test asks: its points would be counted as sensor data by read-backs
            "self_metrics": {"interval_s": 0},
            "routes": routes,
        }
        for key, value in overrides.items():  # sections merge; a list (alerts) replaces
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
        self.config = workdir / "ingest.toml"
        self.config.write_text(tomli_w.dumps(config))
        self.log = workdir / "ingestd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 30) -> None:
        with self.log.open("ab") as out:
            # INGESTD_CPUS=0 pins ingestd to CPU 0 (taskset): a one-core budget, like a Pi's
            # share while the broker and the database take the others
            cpus = os.environ.get("INGESTD_CPUS")
            pin = ["taskset", "-c", cpus] if cpus else []
            self.proc = subprocess.Popen(
                [*pin, sys.executable, "-m", "ingestd", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_until(self.ready, ready_timeout_s, "ingestd /readyz")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"ingestd exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/readyz", timeout=2
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_settled(self, received: int, timeout_s: float) -> dict[str, float]:
        """Until every message is received and every good one written or dropped: nothing left
        in memory or in the spool."""
        deadline = time.monotonic() + timeout_s
        metrics: dict[str, float] = {}
        while time.monotonic() < deadline:
            metrics = self.metrics()
            if (
                metrics.get("ingestd_messages_received_total", 0) >= received
                and metrics.get("ingestd_buffer_lines", 1) == 0
                and metrics.get("ingestd_spool_bytes", 0) == 0
            ):
                return metrics
            time.sleep(0.1)
        raise TimeoutError(f"not settled after {timeout_s}s: {metrics}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the ingestd process has used so far (from /proc)."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory (VmHWM) in MB."""
        assert self.proc is not None
        return peak_rss_mb(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no drain, nothing flushed."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
