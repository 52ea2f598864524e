"""`ingestd deadletter replay` after the user fixed the config, against a real InfluxDB 1.6."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ingestd.deadletter import DeadLetterFile, read_dead_letters, to_json
from ingestd.devtools.servers import InfluxDB1
from ingestd.records import DeadLetter

pytestmark = pytest.mark.integration

TELEMETRY = {"device_id": "aa", "ts": 1594512000.0, "data": {"temp": 86.0, "humidity": 51.0}}


def letter(topic: str, payload: bytes, reason: str) -> DeadLetter:
    return DeadLetter(topic, payload, reason, "test", 1, 1_700_000_000 * 10**9)


def write_config(path: Path, db: InfluxDB1, deadletters: Path, with_route: bool) -> None:
    route = (
        '[[routes]]\ntopic = "iot/telemetry/{device}"\nformat = "object"\nmeasurement = "telemetry"\n'
        'readings = "data"\ntag_keys = ["device_id"]\nunits = { temp = "degF -> degC" }\n'
        '[[routes]]\ntopic = "sensors/{device}/{measurement}"\n'
    )
    path.write_text(
        f'[mqtt]\ntopics = ["sensors/#", "iot/#"]\n[influx]\napi = "v1"\nurl = "{db.url}"\n'
        f'database = "sensors"\n[deadletter]\npath = "{deadletters}"\n'
        + (route if with_route else "")
    )


def replay(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingestd", "deadletter", "replay", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_replay_writes_what_the_fixed_config_accepts_and_keeps_the_rest(
    tmp_path: Path, influxdb1: InfluxDB1
) -> None:
    deadletters = tmp_path / "deadletters.jsonl"
    letters = [
        letter(
            f"iot/telemetry/dev-{i}",
            orjson.dumps({**TELEMETRY, "ts": 1594512000 + i}),
            "unknown_topic",
        )
        for i in range(3)
    ]
    letters.append(letter("sensors/d/t", b'{"v": 1', "invalid_json"))
    letters.append(letter("sensors/d/t", b'{"v": 2}', "unwritten_at_shutdown"))
    deadletters.write_bytes(b"".join(to_json(x) for x in letters))
    config = tmp_path / "ingest.toml"
    write_config(config, influxdb1, deadletters, with_route=True)

    result = replay(config, "--reason", "unknown_topic", "--reason", "invalid_json")

    assert result.returncode == 1, result.stderr  # one letter was refused again
    assert "replayed 4 dead letters: 3 written, 0 ignored, 1 dead-lettered again" in result.stdout
    points = influxdb1.points()
    assert sorted(p["tags"]["device"] for p in points) == ["dev-0", "dev-1", "dev-2"]
    assert all(p["fields"]["temp"] == 30.0 for p in points)
    left = read_dead_letters(deadletters)
    assert sorted(x.reason for x in left) == ["invalid_json", "unwritten_at_shutdown"]


def test_replay_refuses_a_file_a_running_ingestd_holds(
    tmp_path: Path, influxdb1: InfluxDB1
) -> None:
    deadletters = tmp_path / "deadletters.jsonl"
    config = tmp_path / "ingest.toml"
    write_config(config, influxdb1, deadletters, with_route=False)
    holder = DeadLetterFile(deadletters, 1 << 20, on_error=lambda _e: None)
    holder.open()
    try:
        result = replay(config)
    finally:
        holder.close()
    assert result.returncode == 1
    assert "in use by a running ingestd" in result.stderr
