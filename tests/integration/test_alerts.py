"""Alerts against a real Mosquitto and InfluxDB 1.6 (issue 14): a noisy crossing opens one alert
and resolves it once, both published on alerts/raw/<device>/<rule> and written as `alerts`
points; alerts keep flowing while InfluxDB is down; a restart does not send an open alert
again; a silence alert fires after silent_s, not because ingestd itself was stopped, and the
device's return publishes device_back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until
from ingestd.devtools.workload import ROUTES, TOPICS, Expected, publish

from .listener import Listener

pytestmark = pytest.mark.integration

RULES = [
    {"name": "too_hot", "measurement": "temperature", "above": 45.0, "hysteresis": 1.0},
    {"name": "quiet", "measurement": "humidity", "silent_s": 3.0},
]


@pytest.fixture
def listener(mosquitto: Mosquitto) -> Iterator[Listener]:
    got = Listener(mosquitto.port, ["alerts/raw/#", "ingestd/events/#"])
    yield got
    got.close()


@pytest.fixture
def daemon(tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1) -> Iterator[Ingestd]:
    process = Ingestd(
        tmp_path, mosquitto, influxdb1.influx_settings(), TOPICS, ROUTES, alerts=RULES,
        events={"retry_min_s": 0.2, "retry_max_s": 1.0},
    )  # fmt: skip
    process.start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


def temperatures(values: list[float], device: str = "dev-a") -> list[Expected]:
    return [
        Expected(f"sensors/{device}/temperature", f'{{"v": {v}}}'.encode(), "value") for v in values
    ]


def test_a_noisy_crossing_is_one_episode_published_and_stored(
    daemon: Ingestd, mosquitto: Mosquitto, influxdb1: InfluxDB1, listener: Listener
) -> None:
    noisy = [44.0, 46.0, 45.5, 44.8, 46.2, 44.5, 43.9, 44.2, 44.9]
    publish(temperatures(noisy), "127.0.0.1", mosquitto.port)
    wait_until(lambda: len(listener.states("too_hot")) >= 2, 20, "two transitions")
    daemon.wait_settled(len(noisy), timeout_s=20)
    time.sleep(1.0)  # anything more would have arrived by now
    assert listener.states("too_hot") == ["firing", "resolved"]
    firing = listener.got[0]
    assert firing["topic"] == "alerts/raw/dev-a/too_hot"
    assert (firing["value"], firing["threshold"], firing["tags"]) == (
        46.0,
        45.0,
        {"device": "dev-a"},
    )
    rows = influxdb1.query('SELECT "state", "value" FROM "alerts" GROUP BY "rule", "device"')
    (series,) = rows["results"][0]["series"]
    assert series["tags"] == {"rule": "too_hot", "device": "dev-a"}
    assert [(row[1], row[2]) for row in series["values"]] == [("firing", 46.0), ("resolved", 43.9)]
    assert daemon.stop() == 0


def test_alerts_flow_while_influxdb_is_down_and_a_restart_sends_no_duplicate(
    daemon: Ingestd, mosquitto: Mosquitto, influxdb1: InfluxDB1, listener: Listener
) -> None:
    influxdb1.stop()
    publish(temperatures([40.0, 50.0]), "127.0.0.1", mosquitto.port)
    wait_until(lambda: listener.states("too_hot") == ["firing"], 20, "the alert, database down")
    influxdb1.start()
    daemon.wait_settled(2, timeout_s=40)
    assert daemon.stop() == 0  # the open alert is saved
    daemon.start()
    publish(temperatures([51.0, 52.0]), "127.0.0.1", mosquitto.port)  # still above: still open
    daemon.wait_settled(2, timeout_s=20)
    time.sleep(1.0)
    assert listener.states("too_hot") == ["firing"]  # not sent again
    publish(temperatures([40.0]), "127.0.0.1", mosquitto.port)
    wait_until(lambda: listener.states("too_hot") == ["firing", "resolved"], 20, "resolved once")
    assert daemon.stop() == 0


def test_silence_fires_after_silent_s_but_not_for_ingestd_s_own_downtime(
    daemon: Ingestd, mosquitto: Mosquitto, listener: Listener
) -> None:
    humidity = Expected("sensors/dev-h/humidity", b'{"v": 50}', "value")
    publish([humidity], "127.0.0.1", mosquitto.port)
    daemon.wait_settled(1, timeout_s=20)
    assert daemon.stop() == 0
    time.sleep(4.0)  # longer than silent_s, while ingestd is stopped
    daemon.start()
    time.sleep(1.5)  # under silent_s since the start: no alert yet
    assert listener.states("quiet") == []
    wait_until(lambda: listener.states("quiet") == ["firing"], 15, "the silence alert")
    publish([humidity], "127.0.0.1", mosquitto.port)
    wait_until(lambda: listener.states("quiet") == ["firing", "resolved"], 15, "it spoke again")
    wait_until(
        lambda: any(m["topic"] == "ingestd/events/device_back" for m in listener.got), 15, "back"
    )
    assert daemon.stop() == 0
