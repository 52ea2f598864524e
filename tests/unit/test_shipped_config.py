"""compose/ingest.toml is the stack's config and the reference: it loads and names every key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from ingestd.config import Settings, load_settings
from ingestd.routes import compile_routes

SHIPPED = Path(__file__).resolve().parents[2] / "compose" / "ingest.toml"


def keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out |= keys(annotation, f"{prefix}{name}.")
        elif name != "routes":
            out.add(prefix + name)
    return out


def written(data: dict[str, object], prefix: str = "") -> set[str]:
    out = set()
    for name, value in data.items():
        if isinstance(value, dict) and name != "units":
            out |= written(value, f"{prefix}{name}.")
        elif name != "routes":
            out.add(prefix + name)
    return out


def test_the_shipped_config_loads_with_the_stack_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "MQTT_INGESTD_USER": "ingestd",
        "MQTT_INGESTD_PASSWORD": "x",
        "INFLUXDB_ORG": "p4n4",
        "INFLUXDB_BUCKET": "sensors",
        "INFLUXDB_ADMIN_TOKEN": "t",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(SHIPPED)
    assert settings.mqtt.host == "mosquitto" and settings.influx.bucket == "sensors"
    assert settings.mqtt.password() == "x"
    assert len(compile_routes(settings).routes) == 4


def test_the_shipped_config_names_every_settings_key() -> None:
    data = tomllib.loads(SHIPPED.read_text())
    documented = written(data)
    missing = {k for k in keys(Settings) if k not in documented}
    # commented-out keys count: alternatives like password_file are documented in comments
    text = SHIPPED.read_text()
    missing = {k for k in missing if f"# {k.rsplit('.', 1)[1]} =" not in text}
    missing -= {k for k in missing if f"or {k.rsplit('.', 1)[1]}" in text}
    assert not missing


def test_every_shipped_route_tags_the_device_the_dashboards_filter_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingestd.service import check_message
    from ingestd.sim.fleet import Fleet

    for name in ("MQTT_INGESTD_USER", "INFLUXDB_ORG", "INFLUXDB_BUCKET"):
        monkeypatch.setenv(name, "x")
    settings = load_settings(SHIPPED)
    formats = set()
    for message in Fleet(8, "mixed", dropout_share=0).take(8, 1_763_900_000_000):
        lines, reason = check_message(settings, message.topic.decode(), message.payload)
        assert reason is None and lines, message
        assert all(",device=" in line.split(" ")[0] for line in lines), lines
        formats.add(message.format)
    assert len(formats) == 4
