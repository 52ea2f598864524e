"""`ingestd local`: the root ingest.toml is the config it runs; your own config keeps its routes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ingestd.devtools.local import (
    DATABASE_PORT,
    DEMO,
    HTTP_PORT,
    MQTT_PORT,
    local_config,
)
from ingestd.devtools.servers import InfluxDB1

ROOT = Path(__file__).resolve().parents[3]


def test_the_repositorys_ingest_toml_is_the_config_ingestd_local_runs(tmp_path: Path) -> None:
    database = InfluxDB1(tmp_path, DATABASE_PORT)
    runs = local_config(DEMO, MQTT_PORT, database, Path(".ingestd-local"), HTTP_PORT)
    assert tomllib.loads((ROOT / "ingest.toml").read_text()) == runs


def test_your_own_config_keeps_its_routes_and_limits_but_uses_the_local_servers(
    tmp_path: Path,
) -> None:
    own = {
        "mqtt": {"host": "broker.lan", "username": "me", "password_env": "PW", "topics": ["a/#"]},
        "influx": {"url": "https://db.lan", "token_env": "T", "bucket": "b", "org": "o"},
        "limits": {"max_readings": 7},
        "routes": [{"topic": "a/{device}/{measurement}"}],
    }
    database = InfluxDB1(tmp_path, 9999)
    runs = local_config(own, 1, database, tmp_path, 2)
    assert runs["mqtt"] == {"host": "127.0.0.1", "port": 1, "topics": ["a/#"]}
    assert runs["influx"] == {"url": "http://127.0.0.1:9999", "api": "v1", "database": "sensors"}
    assert runs["limits"] == own["limits"] and runs["routes"] == own["routes"]
    assert runs["deadletter"]["path"] == str(tmp_path / "deadletters.jsonl")
