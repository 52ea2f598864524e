"""The n8n starter workflows: they parse, name only node types n8n ships (a snapshot of
n8n-nodes-base for the pinned image), connect and reference only their own nodes, use only the
credentials the import creates, and their Code nodes are valid JavaScript that does its job."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import COMPOSE, STACKS, load_yaml

WORKFLOWS = sorted((COMPOSE / "n8n" / "workflows").glob("*.json"))
SNAPSHOT = Path(__file__).parent / "n8n-nodes-base-2.41.2.txt"
NODE = shutil.which("node") or "node"


def node_types() -> set[str]:
    return {
        f"n8n-nodes-base.{line}"
        for line in SNAPSHOT.read_text().splitlines()
        if line and not line.startswith("#")
    }


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def test_the_snapshot_matches_the_pinned_image() -> None:
    image = load_yaml(STACKS["ai"])["services"]["n8n"]["image"]
    assert image == "n8nio/n8n:2.41.3"  # whose n8n-nodes-base is 2.41.2: refresh both together
    assert len(node_types()) > 400


def test_the_four_starter_workflows_of_the_design_are_there() -> None:
    names = {p.name for p in WORKFLOWS}
    assert names == {
        "alert-enrichment.json",
        "scheduled-digest.json",
        "device-onboarding.json",
        "incident-escalation.json",
    }


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_names_only_nodes_that_exist(path: Path) -> None:
    workflow = load(path)
    known = node_types()
    names = [n["name"] for n in workflow["nodes"]]
    assert len(names) == len(set(names))
    for node in workflow["nodes"]:
        assert node["type"] in known, node["type"]
    for source, outputs in workflow["connections"].items():
        assert source in names
        for branch in outputs["main"]:
            for link in branch:
                assert link["node"] in names, link
    text = path.read_text()
    for referenced in re.findall(r"\$\('([^']+)'\)", text):
        assert referenced in names, referenced
    # every node but the triggers is reachable from a connection, and every trigger leads on
    targets = {
        link["node"] for o in workflow["connections"].values() for b in o["main"] for link in b
    }
    triggers = {n["name"] for n in workflow["nodes"] if n["type"].endswith(("Trigger", "trigger"))}
    assert triggers and set(names) - targets == triggers
    assert triggers <= set(workflow["connections"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_use_only_imported_credentials_and_known_env(path: Path) -> None:
    created = set(re.findall(r'id: "(\w+)"', (COMPOSE / "n8n" / "credentials.js").read_text()))
    n8n_env = set(load_yaml(STACKS["ai"])["services"]["n8n"]["environment"])
    for node in load(path)["nodes"]:
        for credential in node.get("credentials", {}).values():
            assert credential["id"] in created
    for name in re.findall(r"\$env\.(\w+)", path.read_text()):
        assert name in n8n_env, name


def run_code_node(code: str, prelude: str) -> Any:
    script = f"{prelude}\nconst __result = (() => {{\n{code}\n}})();\nconsole.log(JSON.stringify(__result));"
    result = subprocess.run(
        [NODE, "-e", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def code_nodes(path: Path) -> dict[str, str]:
    return {
        n["name"]: n["parameters"]["jsCode"]
        for n in load(path)["nodes"]
        if n["type"].endswith(".code")
    }


def digest_prompt(answer: dict[str, Any]) -> dict[str, Any]:
    """The digest's "Summarise rows for the prompt" node, run under node on an InfluxQL answer."""
    code = code_nodes(COMPOSE / "n8n" / "workflows" / "scheduled-digest.json")
    prelude = f"const $input = {{ first: () => ({{ json: {json.dumps(answer)} }}) }};"
    (out,) = run_code_node(code["Summarise rows for the prompt"], prelude)
    result: dict[str, Any] = out["json"]
    return result


def test_the_digest_prompt_is_built_from_an_influxql_answer() -> None:
    answer = {
        "results": [
            {
                "statement_id": 0,
                "series": [
                    {
                        "name": "temperature",
                        "tags": {"device": "device-1"},
                        "columns": ["time", "mean_value", "min_value", "max_value"],
                        "values": [[0, 21.456, 19, 23.5]],
                    },
                    {
                        "name": "telemetry",
                        "tags": {"device": "edge-1"},
                        "columns": ["time", "mean_temp", "min_temp", "max_temp", "min_light"],
                        "values": [[0, 30, 29, 31, False]],
                    },
                ],
            }
        ]
    }
    out = digest_prompt(answer)
    assert out["series"] == 2
    assert "device-1 temperature.value: mean 21.46, min 19.00, max 23.50" in out["prompt"]
    assert "edge-1 telemetry.temp: mean 30.00, min 29.00, max 31.00" in out["prompt"]
    assert "light" not in out["prompt"]  # not numeric: no mean, not summarised


def test_the_digest_queries_influxql_on_the_sensor_bucket() -> None:
    workflow = load(COMPOSE / "n8n" / "workflows" / "scheduled-digest.json")
    (query,) = [n for n in workflow["nodes"] if n["name"] == "Query the last 24 h from InfluxDB"]
    parameters = {
        p["name"]: p["value"] for p in query["parameters"]["queryParameters"]["parameters"]
    }
    assert query["parameters"]["url"] == "http://influxdb:8086/query"
    assert parameters["db"] == "={{ $env.INFLUXDB_BUCKET }}"
    assert parameters["q"].startswith("SELECT ")


def test_the_enriched_alert_carries_the_alert_and_the_answer() -> None:
    code = code_nodes(COMPOSE / "n8n" / "workflows" / "alert-enrichment.json")
    prelude = (
        "const $env = { OLLAMA_MODEL: 'llama3.2:1b' };"
        "const $json = { response: ' Battery low. ' };"
        "const $ = () => ({ item: { json: { topic: 'alerts/raw/d1/battery', message: {v: 3.1} } } });"
    )
    out = run_code_node(code["Build enriched alert"], prelude)
    assert out["json"]["root_cause"] == "Battery low."
    assert out["json"]["topic"] == "alerts/raw/d1/battery"
    assert out["json"]["alert"] == {"v": 3.1}


# -- the workflows that read what ingestd publishes (issue 14): their triggers subscribe to its
# topics, and their Code nodes run under node on payloads ingestd itself made


def trigger_topics(name: str) -> str:
    workflow = load(COMPOSE / "n8n" / "workflows" / name)
    (trigger,) = [n for n in workflow["nodes"] if n["type"].endswith(".mqttTrigger")]
    topics: str = trigger["parameters"]["topics"]
    return topics


def device_new_event() -> dict[str, Any]:
    """A device_new payload as ingestd's DeviceRegistry builds it."""
    from ingestd.events import DeviceRegistry
    from ingestd.outbox import Outbox
    from ingestd.records import Point

    outbox = Outbox()
    DeviceRegistry(outbox).seen(
        "sensors/{device}/{measurement}",
        "dev-7",
        Point("temperature", (("device", "dev-7"),), (("value", 21.5),), 1_700_000_000 * 10**9),
    )
    ((topic, payload, _),) = outbox._pending
    assert topic == trigger_topics("device-onboarding.json")
    result: dict[str, Any] = json.loads(payload)
    return result


def alert_transitions() -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of a firing and a resolved alert, as ingestd's Alerts builds them."""
    from ingestd.alerts import Alerts
    from ingestd.config import AlertSettings
    from ingestd.outbox import Outbox
    from ingestd.records import Point

    outbox = Outbox()
    rules = Alerts([AlertSettings(name="too_hot", measurement="t", above=30)], outbox, 10)
    for t, value in ((1, 20.0), (2, 40.0), (3, 20.0)):
        rules.observe([Point("t", (("device", "dev-7"),), (("value", value),), t * 10**9)])
    return [(topic, json.loads(payload)) for topic, payload, _ in outbox._pending]


def trigger_items(*messages: tuple[str, dict[str, Any]]) -> str:
    """A Code node's `$input` (run once for all items), as an MQTT trigger with jsonParseBody
    hands it on: each item's json holds the topic and the parsed message."""
    items = [{"json": {"topic": topic, "message": message}} for topic, message in messages]
    return f"const $input = {{ all: () => {json.dumps(items)} }};"


def test_device_onboarding_registers_and_tags_what_ingestd_announces() -> None:
    code = code_nodes(COMPOSE / "n8n" / "workflows" / "device-onboarding.json")
    prelude = trigger_items(("ingestd/events/device_new", device_new_event()))
    (out,) = run_code_node(code["Register and tag the device"], prelude)
    registered = out["json"]
    assert (registered["device"], registered["kind"]) == ("dev-7", "p4n4")
    assert registered["first_fields"] == {"value": 21.5}
    assert registered["line"] == (
        'devices,device=dev-7,kind=p4n4 route="sensors/{device}/{measurement}",'
        'measurement="temperature",fields="value" 1700000000000000000'
    )


def test_incident_escalation_escalates_only_what_opens() -> None:
    code = code_nodes(COMPOSE / "n8n" / "workflows" / "incident-escalation.json")
    (firing_topic, firing), (resolved_topic, resolved) = alert_transitions()
    assert firing_topic == "alerts/raw/dev-7/too_hot"
    assert trigger_topics("incident-escalation.json") == "alerts/raw/#"
    prelude = trigger_items((firing_topic, firing), (resolved_topic, resolved))
    (kept,) = run_code_node(code["Keep what opens"], prelude)  # the resolved one left out
    decide = code["Decide the escalation"]
    context = f"const $ = () => ({{ item: {{ json: {json.dumps(kept['json'])} }} }});"
    by_ollama = run_code_node(decide, context + "const $json = { response: ' Critical.' };")
    decided = by_ollama["json"]
    assert (decided["severity"], decided["decided_by"], decided["escalate"]) == (
        "critical",
        "ollama",
        True,
    )
    assert decided["topic"] == firing_topic and decided["alert"]["value"] == 40.0
    # Ollama away: 40 is a third past 30, so the rule says critical
    by_rule = run_code_node(decide, context + "const $json = {};")
    assert (by_rule["json"]["severity"], by_rule["json"]["decided_by"]) == ("critical", "rule")
