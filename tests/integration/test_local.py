"""`ingestd local` as a user runs it: servers on fixed ports, data kept between runs, your own
config's routes, and a dead-letter replay against `--servers-only` after fixing a route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.devtools.servers import free_port, http, interrupt_session, port_open, wait_until

pytestmark = pytest.mark.integration

ROUTE = '[[routes]]\ntopic = "sensors/{device}/{measurement}"\n'
FIXED = ROUTE + '[[routes]]\ntopic = "devices/{device}/{metric}"\nmeasurement = "{metric}"\n'
TOPICS = '[mqtt]\ntopics = ["sensors/#", "devices/+/+"]\n'


class Local:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {"mqtt": free_port(), "database": free_port(), "http": free_port()}
        self.proc: subprocess.Popen[str] | None = None
        self.out = workdir.parent / "local.out"

    def start(self, config: Path, *extra: str) -> None:
        argv = [sys.executable, "-m", "ingestd", "local", "--workdir", str(self.workdir)]
        argv += ["--config", str(config), *extra]
        argv += [f"--mqtt-port={self.ports['mqtt']}", f"--http-port={self.ports['http']}"]
        argv += [f"--database-port={self.ports['database']}"]
        with self.out.open("a") as out:
            # a session of its own: if it must be killed, its servers go with it (killpg)
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
        wait_until(lambda: port_open(self.ports["database"]), 60, "ingestd local's database")

    def stop(self) -> int:
        assert self.proc is not None
        code = interrupt_session(self.proc, timeout_s=60)
        self.proc = None
        return code

    def query(self, q: str) -> list[list[object]]:
        params = urllib.parse.urlencode({"q": q, "db": "sensors", "epoch": "ns"})
        url = f"http://127.0.0.1:{self.ports['database']}/query?{params}"
        status, body = http("POST", url)
        assert status == 200, body
        series = json.loads(body)["results"][0].get("series", [])
        return [row for s in series for row in s["values"]]

    def publish(self, topic: str, payload: str) -> None:
        subprocess.run(
            ["mosquitto_pub", "-p", str(self.ports["mqtt"]), "-q", "1", "-t", topic, "-m", payload],
            check=True,
            timeout=10,
        )


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    running = Local(tmp_path / "work")
    yield running
    if running.proc is not None and running.proc.poll() is None:  # a failed test
        interrupt_session(running.proc, timeout_s=30)


def test_local_keeps_its_data_and_a_fixed_route_replays_what_it_dead_lettered(
    local: Local, tmp_path: Path
) -> None:
    first, fixed = tmp_path / "first.toml", tmp_path / "fixed.toml"
    first.write_text(TOPICS + ROUTE)  # no route for devices/...: dead-lettered
    fixed.write_text(TOPICS + FIXED)
    local.start(first)
    ready = f"http://127.0.0.1:{local.ports['http']}/readyz"
    wait_until(lambda: http("GET", ready)[0] == 200, 60, "ingestd /readyz")
    local.publish("sensors/dev-1/temperature", '{"v": 22.5, "ts": 1700000000}')
    local.publish("devices/abc/humidity", "41")
    letters = local.workdir / "deadletters.jsonl"
    wait_until(lambda: letters.exists() and letters.read_text().count("\n") == 1, 30, "letter")
    wait_until(lambda: local.query("SELECT * FROM temperature") != [], 30, "the written point")
    assert local.stop() == 0

    # the same ports and the same data: the point written in the first run is still there
    local.start(fixed, "--servers-only")
    assert local.query("SELECT value FROM temperature") == [[1_700_000_000_000_000_000, 22.5]]
    written = local.workdir / "ingest.toml"
    replay = subprocess.run(
        [sys.executable, "-m", "ingestd", "deadletter", "replay", "--config", str(written)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.startswith("replayed 1 dead letters: 1 written, 0 ignored"), replay.stdout
    assert [row[1:] for row in local.query("SELECT device, value FROM humidity")] == [["abc", 41.0]]
    assert letters.read_text() == ""
    assert local.stop() == 0
    assert not port_open(local.ports["mqtt"]) and not port_open(local.ports["database"])
