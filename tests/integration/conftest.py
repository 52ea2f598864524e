from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import (
    Database,
    InfluxDB1,
    Mosquitto,
    VictoriaMetrics,
    docker_available,
)
from ingestd.devtools.workload import ROUTES, TOPICS

pytestmark = pytest.mark.integration


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(params=["v1", "v2"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """v1: InfluxDB 1.6 from Debian. v2: InfluxDB 2.7 in a container where a Docker engine
    answers, else VictoriaMetrics from Debian (it takes /api/v2/write)."""
    db: Database
    if request.param == "v1":
        db = InfluxDB1(tmp_path)
    elif docker_available():
        from .containers import InfluxDB2Container

        db = InfluxDB2Container()
    else:
        db = VictoriaMetrics(tmp_path)
    db.start()
    yield db
    db.stop()


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[InfluxDB1]:
    db = InfluxDB1(tmp_path)
    db.start()
    yield db
    db.stop()


# Tests that take a `transport` parameter run ingestd with each MQTT transport; the rest use the
# default (native).
TRANSPORTS = ["native", "paho"]


@pytest.fixture
def ingestd_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Ingestd] = []
    callspec = getattr(request.node, "callspec", None)
    transport = callspec.params.get("transport") if callspec else None

    def make(
        broker: Mosquitto, influx: dict[str, Any], ready_timeout_s: float = 30, **overrides: Any
    ) -> Ingestd:
        if transport is not None:
            overrides["mqtt"] = {"transport": transport, **overrides.get("mqtt", {})}
        process = Ingestd(tmp_path, broker, influx, TOPICS, ROUTES, **overrides)
        started.append(process)
        process.start(ready_timeout_s)
        return process

    yield make
    for process in started:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=10)
