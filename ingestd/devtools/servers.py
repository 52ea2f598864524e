"""Real servers on free loopback ports, started and stopped by PID: for the tests and `ingestd local`.

Where a Docker engine answers, testcontainers runs eclipse-mosquitto 2 and influxdb 2.7 so the v2
path is tested against InfluxDB 2 itself. Without one (as in CI here), Debian's binaries run:
`mosquitto`, `influxd` 1.6 (v1 /write and /query) and `victoria-metrics` (/api/v2/write line
protocol; started with -retentionPeriod=100y or it silently drops old timestamps).
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingestd.sink import quote_identifier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s}s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def interrupt_session(proc: subprocess.Popen[Any], timeout_s: float) -> int:
    """Ctrl-C for a process started with start_new_session=True: SIGINT, and if it has not
    stopped within `timeout_s`, SIGKILL for its whole session (the servers it started too)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


@dataclass
class Process:
    """A server process we started; stopped by its PID only."""

    argv: list[str]
    workdir: Path
    port: int
    name: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / f"{self.name}.log"

    def start(self, timeout_s: float = 30) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        try:
            proc = self.proc
            wait_until(lambda: proc.poll() is None and port_open(self.port), timeout_s, self.name)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not start:\n{self.log.read_text()[-2000:]}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


class Mosquitto(Process):
    """`listener_options` are mosquitto.conf lines for the listener (TLS, auth); with none, the
    broker allows anonymous clients. `sys_interval_s`: how often it publishes its $SYS counters."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        listener_options: str = "",
        persistence: bool = False,
        *,
        max_queued_messages: int = 1_000_000,
        sys_interval_s: int = 10,
    ) -> None:
        port = port or free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            # started as root, mosquitto would switch to the `mosquitto` user, who cannot read
            # files in a private work directory: stay who we are
            f"user {getpass.getuser()}\nper_listener_settings false\nlistener {port} 127.0.0.1\n"
            + (listener_options or "allow_anonymous true\n")
            + (
                f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
                if persistence
                else "persistence false\n"
            )
            # a slow subscriber must not lose QoS 1 messages to the default 1000-message queue
            + f"max_queued_messages {max_queued_messages}\nmax_queued_bytes 0\n"
            + f"sys_interval {sys_interval_s}\n"
        )
        super().__init__(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
            workdir,
            port,
            "mosquitto",
        )


class Database:
    """What a test needs of a database: ingestd settings for it, and the points it holds."""

    api: str
    url: str
    name: str

    def influx_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def points(self) -> list[dict[str, Any]]:
        """Every stored point as {measurement, tags, fields, time_ns}."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class InfluxDB1(Process, Database):
    api = "v1"
    database = "sensors"

    def __init__(
        self, workdir: Path, port: int | None = None, admin: tuple[str, str] | None = None
    ) -> None:
        """On `port` (its RPC on the next one), or on free ports. With `admin` (user, password),
        authentication is on: that admin is created first, and queries log in as it unless
        told otherwise."""
        port, rpc = (port, port + 1) if port else (free_port(), free_port())
        self.admin = admin
        data = workdir / "influxdb"
        conf = workdir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{data}/meta"\n'
            f'[data]\n  dir = "{data}/data"\n  wal-dir = "{data}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
            f"  auth-enabled = {'true' if admin else 'false'}\n"
            "[monitor]\n  store-enabled = false\n"
        )
        super().__init__(
            [shutil.which("influxd") or "/usr/bin/influxd", "-config", str(conf)],
            workdir,
            port,
            "influxd",
        )
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 30) -> None:
        Process.start(self, timeout_s)
        wait_until(lambda: http("GET", f"{self.url}/ping")[0] == 204, timeout_s, "influxd ping")
        if self.admin:  # the one statement InfluxDB takes without a login, while it has no user
            user, password = self.admin
            status, body = self.request(
                "POST", "/query", {"q": f"CREATE USER {quote_identifier(user)} WITH PASSWORD "
                                   f"{quote_string(password)} WITH ALL PRIVILEGES"}, None
            )  # fmt: skip
            assert status == 200, body
        self.query(f"CREATE DATABASE {self.database}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        Process.stop(self, sig)

    def request(
        self, method: str, path: str, params: dict[str, str], login: tuple[str, str] | None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        """One HTTP request, with basic auth as `login` when given."""
        headers = {}
        if login is not None:
            credentials = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {credentials}"
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        return http(method, url, body, headers)

    def query(
        self, q: str, database: str | None = None, login: tuple[str, str] | None = None
    ) -> Any:
        """An InfluxQL query on the sensors' database, or on `database`; as `login`, or as the
        admin where authentication is on."""
        params = {"q": q, "db": database or self.database, "epoch": "ns"}
        status, body = self.request("POST", "/query", params, login or self.admin)
        assert status == 200, body
        return json.loads(body)

    def influx_settings(self) -> dict[str, Any]:
        return {"url": self.url, "api": "v1", "database": self.database}

    def count(self) -> int:
        """Points stored, over every measurement (each point has all its fields here)."""
        total = 0
        for series in self.query("SELECT count(*) FROM /.*/")["results"][0].get("series", []):
            total += max(v for v in series["values"][0][1:] if v is not None)
        return int(total)

    def field_types(self, database: str | None = None) -> dict[tuple[str, str], str]:
        out = {}
        for series in self.query("SHOW FIELD KEYS", database)["results"][0].get("series", []):
            for key, kind in series["values"]:
                out[(series["name"], key)] = kind
        return out

    def points(self) -> list[dict[str, Any]]:
        # One query per measurement: InfluxDB 1.6's `SELECT * FROM /.*/` drops the rows of a
        # field whose type differs in another measurement (a bool `power` beside a float one).
        shown = self.query("SHOW MEASUREMENTS")["results"][0].get("series", [])
        names = [row[0] for series in shown for row in series["values"]]
        points = []
        for name in names:
            escaped = name.replace("\\", "\\\\").replace('"', '\\"')
            result = self.query(f'SELECT * FROM "{escaped}" GROUP BY *')["results"][0]
            points.extend(self._rows(result))
        return points

    @staticmethod
    def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
        points = []
        for series in result.get("series", []):
            columns = series["columns"]
            for row in series["values"]:
                values = dict(zip(columns, row, strict=True))
                time_ns = values.pop("time")
                points.append(
                    {
                        "measurement": series["name"],
                        "tags": {k: v for k, v in series.get("tags", {}).items() if v != ""},
                        "fields": {k: v for k, v in values.items() if v is not None},
                        "time_ns": time_ns,
                    }
                )
        return points


def quote_string(value: str) -> str:
    """An InfluxQL string literal, single-quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class VictoriaMetrics(Process, Database):
    """Accepts /api/v2/write; stores every field as float64 `<measurement>_<field>` at ms precision."""

    api = "v2"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        port = port or free_port()
        super().__init__(
            [
                shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics",
                f"-httpListenAddr=127.0.0.1:{port}",
                f"-storageDataPath={workdir / 'vm'}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            workdir,
            port,
            "victoria-metrics",
        )
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout_s: float = 30) -> None:
        Process.start(self, timeout_s)
        wait_until(
            lambda: http("GET", f"{self.url}/health")[0] == 200,
            timeout_s,
            "victoria-metrics health",
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        Process.stop(self, sig)

    def influx_settings(self) -> dict[str, Any]:
        return {"url": self.url, "api": "v2", "org": "p4n4", "bucket": "sensors"}

    def points(self) -> list[dict[str, Any]]:
        http("GET", f"{self.url}/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": '{__name__=~".+"}'})
        status, body = http("GET", f"{self.url}/api/v1/export?{query}")
        assert status == 200, body
        points = []
        for raw in body.splitlines():
            series = json.loads(raw)
            labels = dict(series["metric"])
            name = labels.pop("__name__")
            labels.pop("db", None)
            for value, ts_ms in zip(series["values"], series["timestamps"], strict=True):
                points.append({"metric": name, "tags": labels, "value": value, "time_ms": ts_ms})
        return points
