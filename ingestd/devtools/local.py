"""`ingestd local`: the whole pipeline on one machine without Docker, from the system's packages.

Starts Mosquitto and InfluxDB 1.6 (or VictoriaMetrics with --api v2) on fixed loopback ports
under a work directory, writes the config it runs as `<workdir>/ingest.toml`, and runs ingestd
in the foreground until Ctrl-C; then stops what it started. Ports and data stay the same
between runs, so the database still holds what was written, and `ingestd deadletter replay
--config <workdir>/ingest.toml` works against `ingestd local --servers-only`.

With `--config` (default: ./ingest.toml if there is one, else the demo routes), that file's
routes, topics and limits run against these servers: its broker and database settings are
replaced by the local ones, and the dead letters, the spool and the formats' state go to the
work directory.
"""

from __future__ import annotations

import contextlib
import signal
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from ingestd.config import load_settings
from ingestd.devtools.servers import Database, InfluxDB1, Mosquitto, VictoriaMetrics, port_open
from ingestd.devtools.workload import ROUTES, TOPICS

MQTT_PORT = 1884  # 1883 is usually the system broker
DATABASE_PORT = 8186  # beside a system InfluxDB's 8086/8088; InfluxDB 1.6's RPC takes 8187
HTTP_PORT = 9108

# without --config: the demo routes, for every format the workload publishes
DEMO: dict[str, Any] = {"mqtt": {"topics": TOPICS, "qos": 1}, "routes": ROUTES}
# the user's broker account and TLS mean nothing to the local, anonymous broker
_REMOTE_MQTT_KEYS = (
    "username",
    "password_env",
    "password_file",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
)


def local_config(
    base: dict[str, Any], broker_port: int, database: Database, workdir: Path, http_port: int
) -> dict[str, Any]:
    """`base` (a config file's tables) pointed at the local servers and the work directory."""
    mqtt = {k: v for k, v in base.get("mqtt", {}).items() if k not in _REMOTE_MQTT_KEYS}
    return {
        **base,
        "mqtt": {**mqtt, "host": "127.0.0.1", "port": broker_port},
        "influx": database.influx_settings(),
        "http": {**base.get("http", {}), "host": "127.0.0.1", "port": http_port},
        "deadletter": {**base.get("deadletter", {}), "path": str(workdir / "deadletters.jsonl")},
        "spool": {**base.get("spool", {}), "path": str(workdir / "spool")},
        "state": {**base.get("state", {}), "path": str(workdir / "state")},
    }


def _free(port: int, what: str, option: str) -> None:
    if port_open(port):
        raise RuntimeError(
            f"port {port} ({what}) is in use: another `ingestd local`, or a system service; "
            f"stop it, or choose another with {option}"
        )


def run_local(
    workdir: Path,
    api: str,
    *,
    config: Path | None = None,
    mqtt_port: int = MQTT_PORT,
    database_port: int = DATABASE_PORT,
    http_port: int = HTTP_PORT,
    servers_only: bool = False,
) -> bool:
    """True if ingestd stopped failed."""
    from ingestd.service import run_service

    base = DEMO
    if config is None and Path("ingest.toml").is_file():
        config = Path("ingest.toml")  # the repository's, as you may have edited it
    if config is not None:
        try:
            base = tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RuntimeError(f"--config {config}: {exc}") from exc
    workdir.mkdir(parents=True, exist_ok=True)
    servers = workdir.resolve()  # the servers run with it as their cwd
    _free(mqtt_port, "MQTT", "--mqtt-port")
    _free(database_port, "database", "--database-port")
    if api == "v1":
        _free(database_port + 1, "InfluxDB's RPC, beside its HTTP port", "--database-port")
    if not servers_only:
        _free(http_port, "ingestd's /metrics", "--http-port")
    broker = Mosquitto(servers, port=mqtt_port)
    database: Database = (
        InfluxDB1(servers, database_port)
        if api == "v1"
        else VictoriaMetrics(servers, database_port)
    )
    written = workdir / "ingest.toml"
    written.write_text(
        "# written by `ingestd local`: the config it runs, pointed at its own servers\n"
        + tomli_w.dumps(local_config(base, mqtt_port, database, workdir, http_port))
    )
    settings = load_settings(written)  # a ConfigError names the key, as `ingestd --config` would
    broker.start()
    try:
        database.start()
        try:
            print(
                f"mosquitto on 127.0.0.1:{mqtt_port}, {database.name} at {database.url}; "
                f"the config is {written} (from {config or 'the demo routes'})\n"
                + (
                    "servers only: run ingestd, check or replay with --config " + str(written)
                    if servers_only
                    else f"metrics on http://127.0.0.1:{http_port}/metrics\n"
                    f"try: mosquitto_pub -p {mqtt_port} -t sensors/dev-1/temperature "
                    f"-m '{{\"v\": 22.5}}'\n"
                    f"or:  python -m ingestd.devtools.workload --port {mqtt_port} --count 10000"
                )
                + "\nCtrl-C stops everything.",
                flush=True,
            )
            if servers_only:
                _wait_for_a_signal()
                return False
            return run_service(settings)
        finally:
            database.stop()
    finally:
        broker.stop()


def _wait_for_a_signal() -> None:
    # SIGTERM stops the servers too; and SIGINT even where it was inherited ignored (started
    # with `&` from a script)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()
