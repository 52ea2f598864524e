"""The IoT stack as `docker compose --profile demo up` runs it, without Docker: the shipped
mosquitto.conf, ACL and a setup_secrets.py passwd in a real Mosquitto; ingestd with
compose/ingest.toml (only host names and ports changed, through its ${VAR:-default}
references); InfluxDB 1.6 for 2.7 on the v1 API, with authentication on and the services'
accounts of compose/influxdb-init/accounts granted as its init script grants them in 2.7
(ingestd logs in with its own); and the demo simulator with the compose `simulator` service's
arguments. Used by the rehearsal test and the demo-alerts benchmark."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from ingestd.config import load_settings
from ingestd.devtools.servers import InfluxDB1, free_port, http, quote_string, wait_until
from ingestd.sink import quote_identifier
from tests.integration.shipped import start_shipped_broker

from .conftest import COMPOSE, STACKS, env_file, influx_accounts, write_dotenv


@dataclass
class DemoStack:
    db: InfluxDB1
    sensors: str  # the sensor database (INFLUXDB_BUCKET)
    metrics_db: str  # ingestd's own (self_metrics.database)
    mqtt_port: int
    env: dict[str, str]  # the .env setup_secrets.py wrote
    work: Path

    def login(self, account: str) -> tuple[str, str]:
        """A service's InfluxDB user and password (GRAFANA, N8N, INGESTD)."""
        return influx_accounts()[account].login(self.env)

    @property
    def buckets(self) -> dict[str, str]:
        """The database of each bucket name compose/influxdb-init/accounts uses."""
        return {"sensors": self.sensors, "ingestd": self.metrics_db}


def grant_accounts(stack: DemoStack) -> None:
    """What compose/influxdb-init/buckets-and-accounts.sh does in InfluxDB 2.7, in 1.x terms:
    the buckets as databases, and each account a user with READ, WRITE or ALL on them."""
    db = stack.db
    for database in stack.buckets.values():
        db.query(f"CREATE DATABASE {quote_identifier(database)}")
    for account in influx_accounts().values():
        user, password = account.login(stack.env)
        db.query(f"CREATE USER {quote_identifier(user)} WITH PASSWORD {quote_string(password)}")
        for bucket in account.read | account.write:
            both = bucket in account.read and bucket in account.write
            privilege = "ALL" if both else "READ" if bucket in account.read else "WRITE"
            database = quote_identifier(stack.buckets[bucket])
            db.query(f"GRANT {privilege} ON {database} TO {quote_identifier(user)}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """compose's interpolation: ${VAR}, ${VAR:?message}, ${VAR:-default}, from .env."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: env[m.group(1)], text)


@contextmanager
def demo_stack(
    work: Path, before_simulator: Callable[[DemoStack], None] | None = None
) -> Iterator[DemoStack]:
    env_path = write_dotenv(work)
    passwd = env_path.parent / "passwd"
    env = env_file(env_path)
    broker, mqtt_port, _ = start_shipped_broker(work, passwd)
    db = InfluxDB1(work, admin=(env["INFLUXDB_ADMIN_USER"], env["INFLUXDB_ADMIN_PASSWORD"]))
    db.start()
    http_port = free_port()
    overrides = {
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(mqtt_port),
        "INFLUXDB_URL": db.url,
        "INGESTD_HTTP_HOST": "127.0.0.1",
        "INGESTD_HTTP_PORT": str(http_port),
    }
    daemon_env = {**os.environ, **env, **overrides}
    saved = dict(os.environ)
    os.environ.update(daemon_env)
    try:  # where the shipped config sends ingestd's own metrics
        metrics_db = load_settings(COMPOSE / "ingest.toml").self_metrics.database
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stack = DemoStack(db, env["INFLUXDB_BUCKET"], metrics_db, mqtt_port, env, work)
    grant_accounts(stack)
    ingestd = subprocess.Popen(
        [sys.executable, "-m", "ingestd", "--config", str(COMPOSE / "ingest.toml")],
        cwd=work, env=daemon_env, stdout=(work / "ingestd.log").open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    simulator: subprocess.Popen[bytes] | None = None
    try:
        wait_until(
            lambda: http("GET", f"http://127.0.0.1:{http_port}/readyz")[0] == 200, 30, "readyz"
        )
        if before_simulator is not None:
            before_simulator(stack)
        service = yaml.safe_load(STACKS["iot"].read_text())["services"]["simulator"]
        arguments = [
            interpolate(a, env).replace("--host=mosquitto", "--host=127.0.0.1")
            for a in service["command"]
        ]
        simulator = subprocess.Popen(
            [sys.executable, "-m", "ingestd", "simulate", *arguments, f"--port={mqtt_port}"],
            cwd=work, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
            stderr=(work / "simulator.log").open("wb"),
        )  # fmt: skip
        yield stack
    finally:
        for process in (simulator, ingestd):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        db.stop()
        broker.stop()
