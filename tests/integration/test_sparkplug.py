"""Sparkplug B against a real Mosquitto and InfluxDB 1.6: the corpus' Tahu sequence (DBIRTH, then
alias-only DDATA) is stored by name even when ingestd restarts between the birth and the data,
because the alias maps are saved under state.path before the birth is acked."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestd.deadletter import read_dead_letters
from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import Expected, publish
from tests.corpus import case_payload, corpus_cases

pytestmark = pytest.mark.integration


def test_alias_only_data_after_a_restart_is_stored_by_name(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    cases = {case["name"]: case for name, case in corpus_cases() if name == "sparkplug"}
    if not cases:
        pytest.skip("no corpus")
    birth = cases["spb_dbirth_tahu_example_with_aliases"]
    data = [
        cases["spb_ddata_tahu_alias_only_with_property"],
        cases["spb_ddata_tahu_negative_int16_twos_complement"],
    ]
    routes = [{"format": "sparkplug_b"}]
    overrides = {"state": {"path": str(tmp_path / "state")}}
    ingestd = Ingestd(
        tmp_path, mosquitto, influxdb1.influx_settings(), ["sensors/#"], routes, **overrides
    )
    ingestd.start()
    try:
        publish(
            [Expected(birth["topic"], case_payload(birth), "birth")], "127.0.0.1", mosquitto.port
        )
        ingestd.wait_settled(1, timeout_s=30)
    finally:
        assert ingestd.stop() == 0
    assert (tmp_path / "state" / "sparkplug_b.json").exists()

    restarted = Ingestd(
        tmp_path, mosquitto, influxdb1.influx_settings(), ["sensors/#"], routes, **overrides
    )
    restarted.start()
    try:
        publish(
            [Expected(c["topic"], case_payload(c), "data") for c in data],
            "127.0.0.1",
            mosquitto.port,
        )
        metrics = restarted.wait_settled(2, timeout_s=30)
    finally:
        assert restarted.stop() == 0
    assert read_dead_letters(restarted.deadletters) == []
    assert metrics["ingestd_points_written_total"] == 2
    stored = {
        (p["time_ns"], name): value
        for p in influxdb1.points()
        for name, value in p["fields"].items()
        if p["tags"].get("device_id") == "Emulated Device"
    }
    at = 1486144502122 * 10**6
    assert stored[(at, "input/Device Metric1")] is True
    assert stored[(at, "output/Device Metric2")] == -5  # Int16 65531 on the wire
    assert stored[(at, "input/Device Metric0")] == "hello device"  # from the birth itself
