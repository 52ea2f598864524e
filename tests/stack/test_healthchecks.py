"""The compose health checks, run for real where the tool they call exists here: the Mosquitto
check logs in to the shipped broker config (issue 12: it used to pass ingestd's password on
mosquitto_sub's command line, readable by every user of the host through ps)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.shipped import start_shipped_broker

from .conftest import STACKS, load_yaml

PASSWORD = "pw with spaces and $dollar"


def mosquitto_check() -> str:
    test = load_yaml(STACKS["iot"])["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    return str(test[1]).replace("$$", "$")  # compose's escape for a literal dollar


def test_the_mosquitto_health_check_puts_no_secret_on_a_command_line() -> None:
    script = mosquitto_check()
    invocation = script[script.index("mosquitto_sub") :]
    assert " -P " not in invocation and "PASSWORD" not in invocation
    assert "printf" in script  # a shell builtin: no process of its own, no argv to read


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="needs mosquitto-clients")
def test_the_mosquitto_health_check_passes_with_the_login_and_fails_without(
    tmp_path: Path,
) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwd), "ingestd", PASSWORD], check=True, timeout=30
    )
    broker, port, _ = start_shipped_broker(tmp_path, passwd)
    script = (
        mosquitto_check()
        .replace("-p 1883", f"-p {port}")
        .replace("/tmp/healthcheck", str(tmp_path / "healthcheck"))
    )
    try:
        outcomes = []
        for password in (PASSWORD, "wrong"):
            env = {**os.environ, "MQTT_INGESTD_USER": "ingestd", "MQTT_INGESTD_PASSWORD": password}
            done = subprocess.run(["sh", "-c", script], env=env, timeout=30, check=False)
            outcomes.append(done.returncode)
    finally:
        broker.stop()
    assert outcomes[0] == 0 and outcomes[1] != 0
    assert not (tmp_path / "healthcheck" / "mosquitto_sub").exists()  # removed after
