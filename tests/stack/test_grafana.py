"""Grafana provisioning: the InfluxQL datasources are built from .env through the Grafana
container's environment, dashboards parse, UIDs are unique, and every panel and variable queries
its provisioned datasource (sensors, or ingestd's own metrics) with variables that exist. The
queries themselves run against a real database in test_rehearsal.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, STACKS, load_yaml

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
BUILTIN_VARIABLES = {
    "__interval", "__interval_ms", "__from", "__to", "__range", "__timeFilter", "timeFilter"
}  # fmt: skip


def datasources() -> dict[str, dict[str, Any]]:
    provisioned = load_yaml(GRAFANA / "provisioning" / "datasources" / "influxdb.yaml")
    return {ds["uid"]: ds for ds in provisioned["datasources"]}


# which datasource each dashboard reads: sensor data, or ingestd's own metrics, never both
DASHBOARD_DATASOURCE = {
    "sensor-overview.json": "p4n4-influxdb",
    "ingestd-health.json": "p4n4-ingestd",
}


def test_the_datasources_speak_influxql_and_their_variables_reach_grafana() -> None:
    found = datasources()
    assert set(found) == {"p4n4-influxdb", "p4n4-ingestd"}
    for ds in found.values():
        assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
        assert ds["url"] == "http://influxdb:8086"
        # Grafana's own account, read only (compose/influxdb-init/accounts), as basic auth:
        # never the admin token, and nothing in a header the rehearsal would not send
        assert ds["user"] == "$INFLUXDB_GRAFANA_USER"
        assert ds["secureJsonData"] == {"password": "$INFLUXDB_GRAFANA_PASSWORD"}
        assert not ds.get("basicAuth") and "httpHeaderName1" not in ds["jsonData"]
        assert ds["jsonData"]["dbName"] == ds["database"]
    assert found["p4n4-influxdb"]["database"] == "$INFLUXDB_BUCKET"
    assert found["p4n4-ingestd"]["database"] == "ingestd"  # self_metrics.database
    text = (GRAFANA / "provisioning" / "datasources" / "influxdb.yaml").read_text()
    used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
    assert used == {"INFLUXDB_BUCKET", "INFLUXDB_GRAFANA_USER", "INFLUXDB_GRAFANA_PASSWORD"}
    grafana = load_yaml(STACKS["iot"])["services"]["grafana"]
    assert used <= set(grafana["environment"])
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "../grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "p4n4.yaml")
    assert provider["providers"][0]["options"]["path"] in mounts
    assert (
        grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        == "/etc/grafana/dashboards/sensor-overview.json"
    )


def test_dashboards_parse_and_have_unique_uids() -> None:
    assert {p.name for p in DASHBOARDS} >= {"sensor-overview.json", "ingestd-health.json"}
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)) and all(uids)


def queried(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(where, datasource, query) for every panel target and query variable."""
    out = []
    for panel in dashboard["panels"]:
        out.append((f"panel {panel['title']}", panel["datasource"], ""))
        out.extend(
            (f"panel {panel['title']}", t["datasource"], t["query"]) for t in panel["targets"]
        )
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            out.append((f"variable {variable['name']}", variable["datasource"], variable["query"]))
    return out


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_resolves_to_its_provisioned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    uid = DASHBOARD_DATASOURCE[path.name]
    variables = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for where, ds, query in queried(dashboard):
        assert ds == {"type": "influxdb", "uid": uid}, where
        for name in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", query):
            assert (name[0] or name[1]) in variables, (where, name)
    for panel in dashboard["panels"]:
        for name in re.findall(r"\$(\w+)", panel["title"]):
            assert name in variables, panel["title"]
        assert panel["targets"], panel["title"]


def test_the_health_dashboard_reads_only_fields_ingestd_writes() -> None:
    from ingestd.selfmetrics import report_lines
    from ingestd.telemetry import Telemetry

    lines = report_lines(Telemetry(), "ingestd", "i", 1.0, 0)
    written = {key for line in lines for key in re.findall(r"(?:^|,)(\w+)=", line.split(" ")[1])}
    dashboard = json.loads((GRAFANA / "dashboards" / "ingestd-health.json").read_text())
    read = set()
    for _, _, query in queried(dashboard):
        read |= set(re.findall(r'(?:last|max)\("(\w+)"\)', query))
    assert read and read <= written, read - written
