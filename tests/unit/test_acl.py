"""`ingestd check --acl`: does the broker's ACL let an account publish on a route as another
device? (issue 12: under the shipped `pattern write sensors/%u/#`, device-1 publishing
sensors/device-1/device-2/data was stored as device=device-2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestd.acl import account_write_patterns, disagreement
from ingestd.cli import run_cli as main
from ingestd.config import parse_settings
from ingestd.routes import Route, compile_routes

from .test_shipped_config import SHIPPED

ACL = Path(__file__).resolve().parents[2] / "mosquitto" / "acl"


def route(topic: str, **options: object) -> Route:
    settings = parse_settings(
        {
            "influx": {"api": "v1", "database": "db"},
            "mqtt": {"topics": ["#"]},
            "routes": [{"topic": topic, "format": "object", "measurement": "m", **options}],
        }
    )
    return compile_routes(settings).routes[0]


@pytest.mark.parametrize(
    ("pattern", "topic", "agrees"),
    [
        ("sensors/%u/#", "{site}/{system}/{device}/data", False),  # the reproduction
        ("sensors/%u/+", "{site}/{system}/{device}/data", True),  # cannot reach it
        ("sensors/%u/#", "sensors/{device}/{measurement}", True),  # the level is the account's
        ("sensors/%c/+", "sensors/{device}/{measurement}", True),  # client id, the same
        ("sensors/+/%u", "sensors/{device}/{measurement}", False),  # any device level
        ("sensors/%u/+", "sensors/{room}/{measurement}", False),  # no identity to hold to
        ("sensors/%u/+", "iot/{device}/{measurement}", True),  # no topic in common
        ("#", "sensors/{device}/#", False),
        ("home/%u", "home/{device}/#", True),  # '#' also matches its parent level
    ],
)
def test_a_pattern_and_a_route_disagree_where_an_account_chooses_the_identity(
    pattern: str, topic: str, agrees: bool
) -> None:
    assert (disagreement(pattern, route(topic)) is None) is agrees


def test_a_route_can_name_its_identity_level() -> None:
    assert disagreement("sensors/%u/+", route("sensors/{room}/{x}", identity="room")) is None


def test_only_per_account_write_patterns_are_read() -> None:
    acl = "user x\ntopic write a/#\npattern read c/%u/#\npattern write s/%u/+\npattern t/%u\n"
    assert account_write_patterns(acl) == ["s/%u/+", "t/%u"]


def test_the_shipped_acl_and_routes_agree_and_the_old_acl_did_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(SHIPPED), "--no-secrets", "--acl", str(ACL)]) == 0
    old = tmp_path / "acl"
    old.write_text(ACL.read_text().replace("write sensors/%u/+", "write sensors/%u/#"))
    assert main(["check", "--config", str(SHIPPED), "--no-secrets", "--acl", str(old)]) == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "'sensors/%u/#'" in warnings[0] and "'{site}/{system}/{device}/data'" in warnings[0]
