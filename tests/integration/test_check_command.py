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


@pytest.mark.parametrize(("protocol", "max_inflight", "window"), [("3.1.1", 20, 7), ("5", 5, 5)])
def test_check_connect_measures_the_brokers_in_flight_window(
    protocol: str, max_inflight: int, window: int, tmp_path: Path, influxdb1: InfluxDB1
) -> None:
    """On 3.1.1 a broker window below mqtt.max_inflight makes every batch wait out the flush
    interval: check says so and names the fix. On MQTT 5 ingestd sends max_inflight as Receive
    Maximum, and the broker (whose own window is 7 here) sends exactly that many."""
    broker = Mosquitto(tmp_path, listener_options="allow_anonymous true\nmax_inflight_messages 7\n")
    broker.start()
    try:
        config = tmp_path / "check.toml"
        config.write_text(
            f'[mqtt]\nport = {broker.port}\nprotocol = "{protocol}"\nmax_inflight = {max_inflight}\n'
            f'[influx]\napi = "v1"\nurl = "{influxdb1.url}"\ndatabase = "sensors"\n'
        )
        result = subprocess.run(
            [sys.executable, "-m", "ingestd", "check", "--config", str(config), "--connect"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        broker.stop()
    assert f"broker: in-flight window {window} unacked QoS 1 messages" in result.stdout
    if window < max_inflight:
        assert result.returncode == 1
        assert f"set mqtt.max_inflight = {window}" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
