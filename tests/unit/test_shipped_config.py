"""compose/ingest.toml is the stack's config and the reference: it loads and names every key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from ingestd.config import AlertSettings, RouteSettings, Settings, load_settings
from ingestd.routes import compile_routes

SHIPPED = Path(__file__).resolve().parents[2] / "compose" / "ingest.toml"


STACK_ENVIRONMENT = (
    "MQTT_INGESTD_USER",
    "MQTT_INGESTD_PASSWORD",
    "INFLUXDB_BUCKET",
    "INFLUXDB_INGESTD_USER",
    "INFLUXDB_INGESTD_PASSWORD",
)
HEADER = re.compile(r"^\[{1,2}([a-z_]+)\]{1,2}")
# a key as written, or commented out (`# ca_file = ...`), or offered as an alternative in a
# comment (`# or password_file = ...`)
KEY = re.compile(r"^\s*(?:#\s*)?([a-z_0-9]+)\s*=|#\s*or\s+([a-z_0-9]+)\s*=")


def sections(text: str) -> dict[str, list[str]]:
    """Each table's lines, by table name; the [[routes]] tables' lines together."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        header = HEADER.match(line)
        if header:
            current = header.group(1)
        out.setdefault(current, []).append(line[header.end() :] if header else line)
    return out


def named_keys(lines: list[str]) -> set[str]:
    out = set()
    for line in lines:
        for match in KEY.finditer(line):
            out.add(match.group(1) or match.group(2))
    return out


# the sections that are lists of tables ([[routes]], [[alerts]]): their keys are spread over
# the examples, and their values have no single default to compare with
TABLE_LISTS = {"routes", "alerts"}


def settings_sections() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {"routes": RouteSettings, "alerts": AlertSettings}
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out[name] = field.annotation
    return out


def test_the_shipped_config_loads_with_the_stack_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in zip(
        STACK_ENVIRONMENT, ("ingestd", "x", "sensors", "ingestd", "y"), strict=True
    ):
        monkeypatch.setenv(name, value)
    settings = load_settings(SHIPPED)
    assert settings.mqtt.host == "mosquitto" and settings.influx.database == "sensors"
    assert settings.mqtt.password() == "x"
    # ingestd's own InfluxDB account (compose/influxdb-init/accounts), never the admin token
    assert settings.influx.api == "v1" and settings.influx.username == "ingestd"
    assert settings.influx.password() == "y" and settings.influx.token_env is None
    assert len(compile_routes(settings).routes) == 4


@pytest.mark.parametrize("section", sorted(settings_sections()))
def test_the_shipped_config_names_every_key_in_its_own_section(section: str) -> None:
    """A key counts only where it belongs: a `# timezone = ...` under [mqtt] does not document
    routes' timezone. The routes' keys are spread over the example routes."""
    written = sections(SHIPPED.read_text())
    assert set(settings_sections()[section].model_fields) - named_keys(written[section]) == set()


@pytest.mark.parametrize("section", sorted(set(settings_sections()) - TABLE_LISTS))
def test_a_shipped_value_is_the_default_or_says_what_the_default_is(section: str) -> None:
    model = settings_sections()[section]
    table = tomllib.loads(SHIPPED.read_text())[section]
    lines = sections(SHIPPED.read_text())[section]
    for key, value in table.items():
        default = model.model_fields[key].get_default(call_default_factory=True)
        if default is None or "${" in str(value):
            continue  # no default to state, or the deployment's own value
        if value == (str(default) if isinstance(default, Path) else default):
            continue
        line = next(line for line in lines if re.match(rf"\s*{key}\s*=", line))
        assert "default" in line.partition("#")[2], (section, key, value, default)


def test_the_shipped_config_checks_without_the_stack_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingestd.cli import run_cli

    for name in STACK_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert run_cli(["check", "--config", str(SHIPPED), "--no-secrets"]) == 0
    out = capsys.readouterr().out
    assert all(
        name in out for name in STACK_ENVIRONMENT if not name.endswith(("PASSWORD", "TOKEN"))
    )


def test_every_shipped_route_tags_the_device_the_dashboards_filter_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingestd.service import check_message
    from ingestd.sim.fleet import Fleet

    for name in ("MQTT_INGESTD_USER", "INFLUXDB_BUCKET", "INFLUXDB_INGESTD_USER"):
        monkeypatch.setenv(name, "x")
    settings = load_settings(SHIPPED)
    formats = set()
    for message in Fleet(8, "mixed", dropout_share=0).take(8, 1_763_900_000_000):
        lines, reason, _ = check_message(settings, message.topic.decode(), message.payload)
        assert reason is None and lines, message
        assert all(",device=" in line.split(" ")[0] for line in lines), lines
        formats.add(message.format)
    assert len(formats) == 4
