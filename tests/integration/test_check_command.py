"""`ingestd check --connect` against real servers: what a user runs before starting the daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingestd.devtools.servers import InfluxDB1, Mosquitto

from .conftest import TRANSPORTS

pytestmark = pytest.mark.integration


def check(
    tmp_path: Path, broker: Mosquitto, influx: str, transport: str = "native"
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "check.toml"
    config.write_text(
        f'[mqtt]\nport = {broker.port}\ntransport = "{transport}"\n[influx]\n{influx}\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "ingestd", "check", "--config", str(config), "--connect"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_check_connect_reaches_broker_and_database(
    transport: str, tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    influx = f'api = "v1"\nurl = "{influxdb1.url}"\ndatabase = "sensors"'
    result = check(tmp_path, mosquitto, influx, transport)
    assert result.returncode == 0, result.stderr
    assert "database: reachable" in result.stdout and "broker: connected" in result.stdout
    assert result.stderr == ""  # no asyncio "Future exception was never retrieved"


def test_check_connect_names_a_missing_database(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1
) -> None:
    result = check(tmp_path, mosquitto, f'api = "v1"\nurl = "{influxdb1.url}"\ndatabase = "nope"')
    assert result.returncode == 1
    assert "database not found" in result.stderr
