"""The whole IoT stack, rehearsed without Docker (issue 13): what `docker compose up` starts, run
from the shipped files against local servers, then every dashboard query executed.

- Mosquitto with the shipped mosquitto.conf and ACL (listener ports rewritten) and a passwd
  written by `compose/setup_secrets.py` from `.env.example`.
- ingestd with the shipped compose/ingest.toml; only host names and ports change, through
  the ${VAR:-default} references the file holds. InfluxDB 1.6 stands in for 2.7 on the v1 API:
  the InfluxQL the dashboards speak is the same. Authentication is on, and each service logs
  in with its own account as compose/influxdb-init/accounts grants it: ingestd writes with
  its own, the dashboards are queried as Grafana's (read only), the digest as n8n's.
- The demo simulator with the exact arguments of the compose `simulator` service.
- Then every panel and template variable of both dashboards, expanded as Grafana expands them
  (tests/stack/grafana.py), with "All" and with one value selected: each must return rows
  with the columns its panel reads.

On the layout before this issue (ingestd's counters in the sensor database) the sensor
dashboard's measurement list and latest readings hold ingestd's counters, which this test
refuses; the Flux it had cannot run here at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingestd.devtools.servers import InfluxDB1, free_port, http, wait_until

from .conftest import COMPOSE, REPO, STACKS, influx_accounts, load_yaml
from .demo import demo_stack, interpolate
from .grafana import ALL, expand, resolve
from .ollama_stub import OllamaStub, ollama_stub

pytestmark = pytest.mark.integration

DASHBOARDS = REPO / "grafana" / "dashboards"
# what InfluxDB 3 Core's InfluxQL lacks (its feature-support page), which no query may use
NOT_IN_INFLUXDB_3 = re.compile(
    r"SHOW SERIES|SHOW DATABASES|CARDINALITY|SLIMIT|SOFFSET|INTEGRAL\(|SAMPLE\(|\btz\(",
    re.IGNORECASE,
)
REPORTS = 3  # self-metrics reports to wait for: rates need two, and one more for margin


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with demo_stack(tmp_path_factory.mktemp("stack")) as demo:
        reports_s = 10.0 * REPORTS + 2  # self_metrics.interval_s in the shipped config: 10 s
        wait_until(
            lambda: reports(demo.db, demo.metrics_db) >= REPORTS,
            reports_s + 20,
            "self-metrics reports",
        )
        yield {"db": demo.db, "sensors": demo.sensors, "work": demo.work, "demo": demo}


def reports(db: InfluxDB1, database: str) -> int:
    result = db.query('SELECT count("uptime_s") FROM "ingestd"', database)["results"][0]
    series = result.get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def run(
    db: InfluxDB1, database: str, query: str, login: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """A query's series, as `login` (Grafana's account, in the dashboard tests)."""
    result = db.query(query, database, login)["results"][0]
    assert "error" not in result, (query, result["error"])
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def database_of(panel_or_variable: dict[str, Any], sensors: str) -> str:
    return {"p4n4-influxdb": sensors, "p4n4-ingestd": "ingestd"}[
        panel_or_variable["datasource"]["uid"]
    ]


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return loaded


def queries_of(board: dict[str, Any]) -> list[str]:
    out = [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return out + [t["query"] for p in board["panels"] for t in p["targets"]]


@pytest.mark.parametrize("name", ["sensor-overview.json", "ingestd-health.json"])
def test_no_query_uses_what_influxdb_3_lacks(name: str) -> None:
    for query in queries_of(dashboard(name)):
        assert not NOT_IN_INFLUXDB_3.search(query), query


# the columns each panel reads, by panel id: a prefix every value column has, and the tag
# columns it groups by (in table format they come back as columns)
SENSOR_PANELS = {1: ("mean_", []), 2: ("last_", ["device"]), 3: ("last_", ["device"]),
                 4: ("count_", [])}  # fmt: skip
HEALTH_PANELS = {
    1: ["last"], 2: ["last"], 3: ["last"], 4: ["last"], 5: ["last"], 6: ["last"],
    7: ["received", "written", "dropped"], 8: ["non_negative_derivative"],
    9: ["write latency"], 10: ["buffer fill %", "spool_bytes"],
    11: ["written", "partial", "retried", "rejected"], 12: ["connected", "paused"],
}  # fmt: skip


@pytest.mark.parametrize("selection", ["all", "one"])
def test_every_sensor_panel_shows_the_fleet_and_nothing_of_ingestd(
    stack: dict[str, Any], selection: str
) -> None:
    db, sensors, grafana = stack["db"], stack["sensors"], stack["demo"].login("GRAFANA")
    board = dashboard("sensor-overview.json")
    shown_measurements = run(db, sensors, "SHOW MEASUREMENTS", grafana)
    measurements = [row[0] for s in shown_measurements for row in s["values"]]
    assert measurements and not [m for m in measurements if m.startswith("ingestd")]

    def choose(variable: dict[str, Any], options: list[str]) -> list[str] | object:
        return ALL if selection == "all" else [options[0]]

    values = resolve(board["templating"]["list"], choose, lambda q: run(db, sensors, q, grafana))
    shown = {}
    for panel in board["panels"]:
        prefix, tags = SENSOR_PANELS[panel["id"]]
        repeats = [values["measurement"]]
        if panel.get("repeat") == "measurement":  # one panel per measurement, each alone
            repeats = measurements if selection == "all" else [values["measurement"]]
            repeats = [re.sub(r"([.^$*+?()|])", r"\\\1", m) for m in repeats]
        rows = 0
        for measurement in repeats:
            query = expand(panel["targets"][0]["query"], {**values, "measurement": measurement})
            for series in run(db, sensors, query, grafana):
                assert not series["name"].startswith("ingestd"), (panel["title"], series)
                columns = series["columns"]
                assert any(c.startswith(prefix) for c in columns), (panel["title"], columns)
                for tag in tags:
                    assert tag in (series.get("tags") or {}) or tag in columns, panel["title"]
                rows += sum(1 for row in series["values"] if any(v is not None for v in row[1:]))
        assert rows > 0, f"panel {panel['title']!r} shows nothing: {repeats}"
        shown[panel["title"]] = rows
    print(f"\nsensor panels, {selection}: rows {shown}")


@pytest.mark.parametrize("selection", ["all", "one"])
def test_every_health_panel_shows_ingestd(stack: dict[str, Any], selection: str) -> None:
    db, grafana = stack["db"], stack["demo"].login("GRAFANA")
    board = dashboard("ingestd-health.json")

    def choose(variable: dict[str, Any], options: list[str]) -> list[str] | object:
        return ALL if selection == "all" else [options[0]]

    values = resolve(board["templating"]["list"], choose, lambda q: run(db, "ingestd", q, grafana))
    shown = {}
    for panel in board["panels"]:
        assert database_of(panel, stack["sensors"]) == "ingestd"
        columns_seen: set[str] = set()
        rows = 0
        for target in panel["targets"]:
            for series in run(db, "ingestd", expand(target["query"], values), grafana):
                columns_seen |= set(series["columns"])
                rows += sum(1 for row in series["values"] if any(v is not None for v in row[1:]))
        wanted = set(HEALTH_PANELS[panel["id"]])
        if panel["id"] == 8:  # drops by reason: the simulator's fleet sends no bad messages
            assert columns_seen in (set(), {"time", *wanted}), panel["title"]
            continue
        assert wanted <= columns_seen, (panel["title"], columns_seen)
        assert rows > 0, f"panel {panel['title']!r} shows nothing"
        shown[panel["title"]] = rows
    print(f"\nhealth panels, {selection}: rows {shown}")


def test_the_alerts_annotation_query_runs(stack: dict[str, Any]) -> None:
    """ingestd writes each alert transition as an `alerts` point; the sensor dashboard shows
    them as annotations. The rehearsal is too short for the demo fleet's rules to fire, so this
    checks that the query runs and reads the columns ingestd writes."""
    board = dashboard("sensor-overview.json")
    (annotation,) = [a for a in board["annotations"]["list"] if a.get("query")]
    assert annotation["datasource"]["uid"] == "p4n4-influxdb"
    assert not NOT_IN_INFLUXDB_3.search(annotation["query"])
    grafana = stack["demo"].login("GRAFANA")
    for series in run(stack["db"], stack["sensors"], expand(annotation["query"], {}), grafana):
        assert {"state", "value"} <= set(series["columns"])


def test_the_n8n_digest_query_runs_and_its_code_node_summarises_the_answer(
    stack: dict[str, Any],
) -> None:
    """The scheduled digest's InfluxQL, run on the sensor data, and its Code node under node on
    the real answer (before, a Flux query with an ingestd filter it needed for the mix)."""
    from .test_n8n import digest_prompt, load

    workflow = load(COMPOSE / "n8n" / "workflows" / "scheduled-digest.json")
    (node,) = [n for n in workflow["nodes"] if n["name"] == "Query the last 24 h from InfluxDB"]
    parameters = {
        p["name"]: p["value"] for p in node["parameters"]["queryParameters"]["parameters"]
    }
    assert not NOT_IN_INFLUXDB_3.search(parameters["q"])
    answer = stack["db"].query(parameters["q"], stack["sensors"], stack["demo"].login("N8N"))
    assert "error" not in answer["results"][0], answer
    out = digest_prompt(answer)
    print(f"\ndigest: {out['series']} series summarised")
    assert out["series"] > 20  # 20 devices, several fields each
    assert "ingestd" not in out["prompt"]


def test_each_service_may_read_and_write_what_its_account_says_and_no_more(
    stack: dict[str, Any],
) -> None:
    """The accounts as granted: each service's login, on each database, may read (SHOW
    MEASUREMENTS answers, not 403) and write (a line that cannot parse is refused as bad, 400, not as
    forbidden, 403, so nothing is stored) exactly where compose/influxdb-init/accounts says.
    That they suffice is what the tests above show: ingestd stored the fleet and its metrics
    with its own, every panel answered Grafana's, the digest answered n8n's."""
    demo = stack["demo"]
    seen = {}
    for name, account in influx_accounts().items():
        login = account.login(demo.env)
        for bucket, database in demo.buckets.items():
            params = {"q": "SHOW MEASUREMENTS", "db": database}
            status, body = demo.db.request("POST", "/query", params, login)
            assert status in (200, 403), (name, bucket, status, body)
            may_read = status == 200 and "error" not in json.loads(body)["results"][0]
            status, body = demo.db.request("POST", "/write", {"db": database}, login, b"bad line")
            assert status in (400, 403), (name, bucket, status, body)
            seen[(name, bucket)] = (may_read, status == 400)
            assert seen[(name, bucket)] == (bucket in account.read, bucket in account.write)
    assert seen[("GRAFANA", "sensors")] == (True, False)  # the dashboards only read
    assert seen[("N8N", "ingestd")] == (False, False)
    print(f"\naccounts (read, write): {seen}")


N8N = REPO / "tests" / "stack" / "n8n"
N8N_BIN = N8N / "node_modules" / ".bin"


@dataclass
class N8nRehearsal:
    """n8n with the starter workflows imported, its environment, and the Ollama stand-in."""

    base: dict[str, str]  # PATH to Node 24 and n8n, and n8n's own folder
    service: dict[str, str]  # the compose n8n service's environment, from .env
    ollama: OllamaStub
    import_log: str


@pytest.fixture(scope="module")
def n8n(stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[N8nRehearsal]:
    """compose's n8n-import script, run with n8n's own CLI (tests/stack/n8n: 2.41.1 on Node 24,
    from the npm registry) on a copy of compose/n8n where only the service host names change
    (influxdb, ollama, mosquitto: the rehearsal's, on loopback)."""
    if not (N8N_BIN / "n8n").exists():
        raise RuntimeError(f"n8n is not installed: run {N8N / 'install.sh'}")
    demo, work = stack["demo"], tmp_path_factory.mktemp("n8n")
    seed = work / "seed"
    shutil.copytree(COMPOSE / "n8n", seed)
    with ollama_stub() as ollama:
        for path in (seed / "workflows").glob("*.json"):
            text = path.read_text().replace("http://influxdb:8086", demo.db.url)
            path.write_text(text.replace("http://ollama:11434", ollama.url))
        ai = load_yaml(STACKS["ai"])["services"]
        env = {**demo.env, "DIGEST_WEBHOOK_URL": f"{ollama.url}/digest"}

        def service_env(name: str) -> dict[str, str]:
            return {k: interpolate(str(v), env) for k, v in ai[name]["environment"].items()}

        base = {
            "PATH": f"{N8N_BIN}:{os.environ['PATH']}",
            "HOME": str(work),
            "N8N_USER_FOLDER": str(work / "home"),
        }
        imported = subprocess.run(
            ["sh", str(seed / "import.sh")],
            env={**base, **service_env("n8n-import"), "P4N4_SEED": str(seed),
                 "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(demo.mqtt_port)},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        log = imported.stdout + imported.stderr
        assert imported.returncode == 0, log[-6000:]
        yield N8nRehearsal(base, service_env("n8n"), ollama, log)


def mqtt_subscribe(demo: Any, topic: str, count: int, wait_s: int) -> subprocess.Popen[str]:
    """mosquitto_sub as the n8n MQTT account, for `count` messages within `wait_s`."""
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(demo.mqtt_port), "-u",
         demo.env["MQTT_N8N_USER"], "-P", demo.env["MQTT_N8N_PASSWORD"], "-t", topic,
         "-v", "-C", str(count), "-W", str(wait_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_n8n_imports_the_four_starter_workflows_and_both_credentials(n8n: N8nRehearsal) -> None:
    assert "Successfully imported 2 credentials" in n8n.import_log
    assert "Successfully imported 4 workflows" in n8n.import_log


def test_n8n_runs_the_digest_on_the_stack(stack: dict[str, Any], n8n: N8nRehearsal) -> None:
    """`n8n execute` runs the digest from its manual trigger: it queries the rehearsal's
    InfluxDB as n8n's account, asks the Ollama stand-in, posts the digest to the webhook and
    publishes it (retained) on alerts/digest through the shipped broker as n8n's MQTT account."""
    from .ollama_stub import ANSWER

    demo = stack["demo"]
    executed = subprocess.run(
        [str(N8N_BIN / "n8n"), "execute", "--id", "p4n4DailyDigest1"],
        env={**n8n.base, **n8n.service},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert executed.returncode == 0, executed.stdout[-3000:] + executed.stderr[-3000:]
    generate = [body for path, body in n8n.ollama.requests if path == "/api/generate"]
    posted = [body for path, body in n8n.ollama.requests if path == "/digest"]
    (asked,) = generate
    assert asked["model"] == demo.env["OLLAMA_MODEL"] and asked["stream"] is False
    assert "ingestd" not in asked["prompt"] and asked["prompt"].count(": mean ") > 20
    (digest,) = posted
    assert digest["digest"] == ANSWER and digest["series"] > 20
    received = mqtt_subscribe(demo, "alerts/digest", 1, 20)
    out, err = received.communicate(timeout=60)
    assert received.returncode == 0, err
    published = json.loads(out.partition(" ")[2])
    assert published["digest"] == ANSWER and published["series"] == digest["series"]
    print(f"\nn8n: digest of {digest['series']} series, asked {len(asked['prompt'])} chars")


def test_n8n_onboards_a_device_ingestd_announces(
    stack: dict[str, Any], n8n: N8nRehearsal, tmp_path: Path
) -> None:
    """`n8n start` with the device-onboarding workflow published: a device new to ingestd
    (sent by the simulator's account) makes ingestd publish ingestd/events/device_new, n8n's
    MQTT trigger takes it, writes the device into the registry (the `devices` measurement of
    the sensor database, as n8n's InfluxDB account) and notifies on alerts/onboarding/<device>.
    Last in this module: the registry point joins the sensor database."""
    demo = stack["demo"]
    environment = {**n8n.base, **n8n.service}
    published = subprocess.run(
        [str(N8N_BIN / "n8n"), "publish:workflow", "--id=p4n4DeviceOnboard1"],
        env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert published.returncode == 0, published.stdout[-3000:] + published.stderr[-3000:]
    port, broker_port = free_port(), free_port()
    log_path = tmp_path / "n8n.log"
    server = subprocess.Popen(
        [str(N8N_BIN / "n8n"), "start"],
        env={**environment, "N8N_PORT": str(port), "N8N_LISTEN_ADDRESS": "127.0.0.1",
             "N8N_RUNNERS_BROKER_PORT": str(broker_port)},
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(
            lambda: http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200, 180, "n8n start"
        )
        notified = mqtt_subscribe(demo, "alerts/onboarding/#", 1, 150)
        # a new device every 2 s until one is onboarded: the trigger subscribes some time after
        # n8n answers /healthz, and ingestd announces each device once
        devices = []
        for attempt in range(60):
            if notified.poll() is not None:
                break
            devices.append(f"n8n-onboarded-{attempt}")
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(demo.mqtt_port), "-u",
                 demo.env["MQTT_SIMULATOR_USER"], "-P", demo.env["MQTT_SIMULATOR_PASSWORD"],
                 "-q", "1", "-t", f"sensors/{devices[-1]}/temperature", "-m", '{"v": 21.5}'],
                check=True, timeout=30,
            )  # fmt: skip
            time.sleep(2)
        out, err = notified.communicate(timeout=160)
        assert notified.returncode == 0, (err, log_path.read_text()[-4000:])
        topic, _, payload = out.strip().partition(" ")
        device = topic.removeprefix("alerts/onboarding/")
        assert device in devices
        announced = json.loads(payload)
        assert announced["device"] == device and announced["kind"] == "p4n4"
        assert announced["route"] == "sensors/{device}/{measurement}"

        def registered() -> list[dict[str, Any]]:
            query = f'SELECT * FROM "devices" WHERE "device" = \'{device}\''
            return run(demo.db, demo.sensors, query, demo.login("N8N"))

        wait_until(lambda: bool(registered()), 30, "the registry point")
        (series,) = registered()
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        assert row["route"] == "sensors/{device}/{measurement}" and row["kind"] == "p4n4"
        assert row["measurement"] == "temperature"
        print(f"\nn8n: onboarded {device} after {len(devices)} new devices")
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
