"""The README as a new user follows it: in a fresh copy of the repository, the commands of "Run it
locally" and "Check a config or a message" run as written, in order, and print what the README
says they print.

Two things are not done literally, and the test says so rather than pretending:
- the install line's `apt-get` and `pip install -e .` (CI's `.ci/run` has just run both; a second
  editable install would repoint the venv at a temporary directory): its last command, `ingestd
  local`, runs, and the copy's `.venv` is this test's own venv;
- `ingestd local` runs in the background, and its "second terminal" is this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.devtools.local import DATABASE_PORT, HTTP_PORT, MQTT_PORT
from ingestd.devtools.servers import http, interrupt_session, port_open, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
STACK_ENVIRONMENT = ("MQTT_INGESTD_USER", "INFLUXDB_BUCKET", "INFLUXDB_INGESTD_USER")


def blocks(section: str) -> list[str]:
    """The ```sh blocks of one `## ` section, in order."""
    start = README.index(f"\n## {section}")
    end = README.find("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", README[start:end], re.S)


class Step:
    """One command of a block, and the `# ` lines after it: what it prints."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.expected: list[str] = []

    def check(self, out: str) -> None:
        got = out.strip().splitlines()
        assert len(got) == len(self.expected), (self.command, got, self.expected)
        for line, wanted in zip(got, self.expected, strict=True):
            if wanted.endswith("..."):
                assert line.startswith(wanted.removesuffix("...")), (self.command, line)
            else:
                assert line == wanted, (self.command, line)


def steps(block: str) -> list[Step]:
    out: list[Step] = []
    pending = ""
    for line in block.splitlines():
        if line.startswith("# "):
            out[-1].expected.append(line[2:])
        elif line.endswith("\\"):
            pending += line[:-1] + " "
        else:
            out.append(Step(pending + line))
            pending = ""
    return out


def run(step: Step, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", step.command], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The repository's files as a clone has them (tracked, as in the working tree)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False, timeout=30
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no clone to make")
    copy = tmp_path / "ingestd"
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(Path(sys.prefix))
    return copy


@pytest.fixture
def env() -> dict[str, str]:
    for port in (MQTT_PORT, DATABASE_PORT, HTTP_PORT):
        if port_open(port):
            pytest.skip(f"port {port} is taken here; the README's commands use it")
    return {k: v for k, v in os.environ.items() if k not in STACK_ENVIRONMENT}


@pytest.fixture
def local(clone: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    install = blocks("Run it locally, without Docker (Debian / Raspberry Pi OS)")[0].strip()
    assert install.startswith("sudo apt-get install -y ")
    assert " && python3 -m venv .venv && .venv/bin/pip install -e . && " in install
    command = install.rsplit(" && ", 1)[1]
    assert command == ".venv/bin/ingestd local"
    with (clone / "local.out").open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=clone, env=env, stdout=out,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        ready = f"http://127.0.0.1:{HTTP_PORT}/readyz"
        wait_until(lambda: http("GET", ready)[0] == 200, 90, "ingestd local's /readyz")
        yield proc
    finally:
        interrupt_session(proc, timeout_s=60)


def test_the_readme_runs_as_written_from_a_fresh_copy(
    clone: Path, env: dict[str, str], local: subprocess.Popen[str]
) -> None:
    publish, check_connect = blocks("Run it locally, without Docker (Debian / Raspberry Pi OS)")[1:]
    mosquitto_pub, workload, metrics = steps(publish)
    for step in (mosquitto_pub, workload):
        result = run(step, clone, env)
        assert result.returncode == 0, (step.command, result.stderr)

    # "the metrics end at": a write follows within the flush interval; bounded in time
    wanted = re.findall(r"`(ingestd_\w+ [\d.]+)`", README)
    assert wanted == [
        "ingestd_messages_received_total 10001.0",
        "ingestd_points_written_total 9501.0",
    ]
    deadline = time.monotonic() + 30
    while True:
        got = run(metrics, clone, env).stdout.strip().splitlines()
        if sorted(got) == sorted(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(got) == sorted(wanted)
    letters = (clone / ".ingestd-local" / "deadletters.jsonl").read_text().splitlines()
    assert len(letters) == 500

    for step in steps(check_connect) + steps(blocks("Check a config or a message")[0]):
        result = run(step, clone, env)
        failing = step.expected[:1] and step.expected[0].startswith("dead-letter:")
        assert result.returncode == (1 if failing else 0), (step.command, result.stderr)
        step.check(result.stdout)
    assert local.poll() is None, (clone / "local.out").read_text()[-2000:]
