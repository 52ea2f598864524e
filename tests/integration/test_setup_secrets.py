"""compose/setup_secrets.py: random secrets, never overwritten without --rotate, and a passwd file
a real mosquitto accepts with the shipped configuration and ACL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .shipped import REPO, close, connect, load_setup_secrets, start_shipped_broker

pytestmark = pytest.mark.integration


def env_values(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.M))


def connects(port: int, user: str, password: str) -> bool:
    client, codes = connect(port, user, password)
    close(client)
    return codes == [0]


def test_secrets_are_random_kept_rotated_and_the_passwd_works_in_mosquitto(tmp_path: Path) -> None:
    setup = load_setup_secrets()
    example, env, passwd = REPO / "compose" / ".env.example", tmp_path / ".env", tmp_path / "passwd"
    setup.setup(example, env, passwd, rotate=False)
    first = env_values(env)
    placeholders = [k for k, v in env_values(example).items() if v == "change-me"]
    assert placeholders and all(
        first[k] != "change-me" and len(first[k]) >= 32 for k in placeholders
    )
    assert len({first[k] for k in placeholders}) == len(placeholders)  # all distinct
    assert first["INFLUXDB_ORG"] == "p4n4" and first["EI_API_KEY"] == ""
    assert first["INFLUXDB3_ADMIN_TOKEN"].startswith("apiv3_")  # 3 Core refuses it otherwise
    assert env.stat().st_mode & 0o777 == 0o600

    setup.setup(example, env, passwd, rotate=False)
    assert env_values(env) == first  # never overwritten without --rotate
    report = setup.setup(example, env, passwd, rotate=True)
    rotated = env_values(env)
    # issue 13: --rotate alone used to change every secret, and three services then broke (n8n
    # refuses another encryption key, InfluxDB and Grafana apply theirs at first start only)
    held = set(setup.INIT_ONLY) | set(setup.NEVER_HERE)
    assert held <= set(placeholders)
    assert all(rotated[k] != first[k] for k in placeholders if k not in held)
    assert all(rotated[k] == first[k] for k in held)
    for name in held:
        (line,) = [line for line in report if line.startswith(f"{name}: kept: ")]
        assert "docker" in line  # what rotating it takes
    assert not any(
        rotated[k] in line for k in placeholders for line in report
    )  # nothing secret printed
    # named, an init-only secret rotates, with what to do next; the token never does here
    report = setup.setup(
        example, env, passwd, rotate={"GF_SECURITY_ADMIN_PASSWORD", "INFLUXDB_ADMIN_TOKEN"}
    )
    named = env_values(env)
    assert named["GF_SECURITY_ADMIN_PASSWORD"] != rotated["GF_SECURITY_ADMIN_PASSWORD"]
    assert named["INFLUXDB_ADMIN_TOKEN"] == first["INFLUXDB_ADMIN_TOKEN"]
    assert any("reset-admin-password" in line for line in report)
    assert all(named[k] == rotated[k] for k in placeholders if k != "GF_SECURITY_ADMIN_PASSWORD")
    # passwords n8n's owner form takes: a digit, a capital and a small letter
    for name in placeholders:
        if name.endswith("_PASSWORD"):
            value = named[name]
            assert any(c.isdigit() for c in value) and any(c.isupper() for c in value), name

    broker, port, _ = start_shipped_broker(tmp_path, passwd)
    try:
        assert connects(port, rotated["MQTT_INGESTD_USER"], rotated["MQTT_INGESTD_PASSWORD"])
        assert connects(port, rotated["MQTT_DEVICE_USER"], rotated["MQTT_DEVICE_PASSWORD"])
        assert not connects(port, rotated["MQTT_INGESTD_USER"], first["MQTT_INGESTD_PASSWORD"])
    finally:
        broker.stop()
