"""`ingestd local`: the whole pipeline on one machine without Docker, from the system's packages.

Starts Mosquitto and InfluxDB 1.6 (or VictoriaMetrics with --api v2) on loopback ports under a
work directory, writes an ingest.toml for them, and runs ingestd in the foreground until Ctrl-C;
then stops what it started. Data stays in the work directory between runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from ingestd.config import parse_settings
from ingestd.devtools.servers import Database, InfluxDB1, Mosquitto, VictoriaMetrics, free_port
from ingestd.devtools.workload import ROUTES, TOPICS


def local_config(
    broker_port: int, database: Database, workdir: Path, http_port: int
) -> dict[str, object]:
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "topics": TOPICS, "qos": 1},
        "influx": database.influx_settings(),
        "deadletter": {"path": str(workdir / "deadletters.jsonl")},
        "spool": {"path": str(workdir / "spool")},
        "http": {"port": http_port},
        "routes": ROUTES,
    }


def run_local(workdir: Path, api: str, mqtt_port: int, http_port: int) -> bool:
    """True if ingestd stopped failed."""
    from ingestd.service import run_service

    workdir = workdir.resolve()  # the servers run with it as their cwd
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(workdir, port=mqtt_port or None)
    database: Database = InfluxDB1(workdir) if api == "v1" else VictoriaMetrics(workdir)
    http_port = http_port or free_port()
    config = local_config(broker.port, database, workdir, http_port)
    (workdir / "ingest.json").write_text(json.dumps(config, indent=2))
    broker.start()
    try:
        database.start()
        try:
            settings = parse_settings(config)
            print(
                f"mosquitto on 127.0.0.1:{broker.port}, {database.name} at {database.url}, "
                f"metrics on http://127.0.0.1:{http_port}/metrics\n"
                f"try: mosquitto_pub -p {broker.port} -t sensors/dev-1/temperature "
                f"-m '{{\"v\": 22.5}}'\n"
                f"or:  python -m ingestd.devtools.workload --port {broker.port} --count 10000\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            return run_service(settings)
        finally:
            database.stop()
    finally:
        broker.stop()
