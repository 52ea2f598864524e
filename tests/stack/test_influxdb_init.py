"""The InfluxDB 2 init script (compose/influxdb-init/buckets-and-accounts.sh), run under bash
against a stand-in for the `influx` CLI (fake_influx.py: the subcommands it runs, with only the
flags the real CLI documents), in the environment the influxdb service gives it: the metrics
bucket, and one v1 authorization per account of compose/influxdb-init/accounts, with read and
write on exactly its buckets; run again, nothing doubles and a rotated password applies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import COMPOSE, STACKS, env_file, influx_accounts, load_yaml, write_dotenv

SCRIPT = COMPOSE / "influxdb-init" / "buckets-and-accounts.sh"


def stack_env(tmp_path: Path) -> dict[str, str]:
    """What the influxdb service's environment holds, from a .env setup_secrets.py wrote; and
    what its entrypoint adds (DOCKER_INFLUXDB_INIT_*, resolved)."""
    dotenv = env_file(write_dotenv(tmp_path))
    service = load_yaml(STACKS["iot"])["services"]["influxdb"]["environment"]
    resolved = {}
    for name, value in service.items():
        variable = str(value).removeprefix("${").partition(":")[0].partition("}")[0]
        resolved[name] = dotenv.get(variable, str(value))
    return resolved


def run_script(tmp_path: Path, env: dict[str, str], state: dict[str, Any]) -> tuple[int, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "influx"
    fake.write_text(
        f'#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / "fake_influx.py"} "$@"\n'
    )
    fake.chmod(0o755)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_INFLUX_STATE": str(state_path),
             **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    state.clear()
    state.update(json.loads(state_path.read_text()))
    return result.returncode, result.stdout + result.stderr


def after_setup(env: dict[str, str]) -> dict[str, Any]:
    """What `influx setup` left: the org's sensor bucket, and no v1 authorization."""
    sensors = {"id": "0a0a0a0a0a0a0a0a", "name": env["DOCKER_INFLUXDB_INIT_BUCKET"],
               "org": env["DOCKER_INFLUXDB_INIT_ORG"], "retention": "infinite"}  # fmt: skip
    return {"buckets": [sensors], "auths": [], "serial": 0}


def granted(state: dict[str, Any]) -> dict[str, tuple[set[str], set[str], str]]:
    """Each authorization's (buckets read, buckets written, password), by user name."""
    names = {b["id"]: b["name"] for b in state["buckets"]}
    return {
        a["username"]: (
            {names[i] for i in a["read"]},
            {names[i] for i in a["write"]},
            a["password"],
        )
        for a in state["auths"]
    }


def expected(env: dict[str, str]) -> dict[str, tuple[set[str], set[str], str]]:
    bucket = {"sensors": env["DOCKER_INFLUXDB_INIT_BUCKET"], "ingestd": "ingestd"}
    return {
        env[f"INFLUXDB_{a.name}_USER"]: (
            {bucket[b] for b in a.read},
            {bucket[b] for b in a.write},
            env[f"INFLUXDB_{a.name}_PASSWORD"],
        )
        for a in influx_accounts().values()
    }


def test_the_init_creates_the_metrics_bucket_and_an_account_per_service(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    state = after_setup(env)
    status, out = run_script(tmp_path, env, state)
    assert status == 0, out
    assert [(b["name"], b["retention"]) for b in state["buckets"]] == [
        ("sensors", "infinite"),
        ("ingestd", "30d"),
    ]
    assert granted(state) == expected(env)
    assert set(granted(state)) == {"ingestd", "grafana", "n8n"}
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] not in out
    assert env["INFLUXDB_GRAFANA_PASSWORD"] not in out


def test_run_again_it_changes_nothing_but_a_rotated_password(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    state = after_setup(env)
    assert run_script(tmp_path, env, state)[0] == 0
    first = granted(state)
    env["INFLUXDB_GRAFANA_PASSWORD"] = "rotated-in-dotenv-1A"
    status, out = run_script(tmp_path, env, state)
    assert status == 0, out
    assert len(state["buckets"]) == 2 and len(state["auths"]) == 3
    assert granted(state) == {**first, "grafana": (*first["grafana"][:2], "rotated-in-dotenv-1A")}


def test_without_an_accounts_password_the_init_fails_and_says_which(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    del env["INFLUXDB_N8N_PASSWORD"]
    state = after_setup(env)
    status, out = run_script(tmp_path, env, state)
    assert status != 0 and "INFLUXDB_N8N_PASSWORD" in out and "setup_secrets.py" in out


def test_the_influxdb_service_passes_every_accounts_login_to_the_init() -> None:
    service = load_yaml(STACKS["iot"])["services"]["influxdb"]
    names = {f"INFLUXDB_{a}_{part}" for a in influx_accounts() for part in ("USER", "PASSWORD")}
    assert names <= set(service["environment"])
    assert "./influxdb-init:/docker-entrypoint-initdb.d:ro" in service["volumes"]
    # the image's entrypoint runs executable *.sh only (run-parts), never `accounts` itself
    assert os.access(SCRIPT, os.X_OK) and not os.access(SCRIPT.parent / "accounts", os.X_OK)
