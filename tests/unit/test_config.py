from __future__ import annotations

from pathlib import Path

import pytest

from ingestd.cli import EXIT_CONFIG, run_cli
from ingestd.config import load_settings, parse_settings
from ingestd.errors import ConfigError
from ingestd.routes import compile_routes

V1: dict[str, object] = {"influx": {"api": "v1", "database": "db"}}


def error_key(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        compile_routes(parse_settings(data))
    return info.value.key


def test_the_issue_example_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(
        '[mqtt]\nhost = "127.0.0.1"\nport = 1883\ntopics = ["sensors/#"]\nqos = 1\nclient_id = "ingestd"\n'
        '[influx]\nurl = "http://127.0.0.1:8086"\napi = "v2"\norg = "p4n4"\nbucket = "sensors"\n'
        'token_env = "INFLUXDB_TOKEN"\n[batch]\nmax_lines = 5000\nflush_interval_s = 1.0\n'
        '[[routes]]\ntopic = "sensors/{device}/{measurement}"\nformat = "value"\n'
    )
    settings = load_settings(path)
    assert settings.influx.bucket == "sensors"
    assert compile_routes(settings).match("sensors/d/t") is not None


def test_no_routes_means_the_p4n4_convention() -> None:
    route, segments = compile_routes(parse_settings(V1)).match("sensors/dev-1/humidity")  # type: ignore[misc]
    assert route.format == "value" and segments == {"device": "dev-1", "measurement": "humidity"}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({**V1, "mqtt": {"hots": "x"}}, "mqtt.hots"),
        ({**V1, "mqtt": {"qos": 3}}, "mqtt.qos"),
        ({"influx": {"api": "v2"}}, "influx"),
        (
            {**V1, "routes": [{"topic": "sensors/{d}/x", "format": "value"}]},
            "routes[0].measurement",
        ),
        (
            {**V1, "routes": [{"topic": "sensors/{d}/{measurement}", "units": {"v": "degF -> V"}}]},
            "routes[0].units.v",
        ),
        (
            {**V1, "routes": [{"topic": "sensors/{d}/{measurement}", "types": {"v": "double"}}]},
            "routes[0].types.v",
        ),
        ({**V1, "routes": [{"topic": "other/{measurement}"}]}, "routes[0].topic"),
        (
            {**V1, "routes": [{"topic": "sensors/{measurement}", "timezone": "Mars/Base"}]},
            "routes[0].timezone",
        ),
        ({**V1, "batch": {"max_lines": 10, "buffer_max_lines": 5}}, "batch"),
        ({**V1, "deadletter": {"mqtt_topic": "sensors/deadletters"}}, ""),
        ({**V1, "mqtt": {"transport": "paho", "qos": 2}}, "mqtt"),
        ({**V1, "mqtt": {"on_subscription_refused": "retry"}}, "mqtt.on_subscription_refused"),
    ],
)
def test_every_config_error_names_its_key(data: dict[str, object], key: str) -> None:
    assert error_key(data) == key


def test_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text('[influx]\napi = "v1"\ndatabase = "x"\n[mqtt]\nport = "abc"\n')
    assert run_cli(["--config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mqtt.port" in err


def test_secrets_come_from_env_and_a_missing_one_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = parse_settings({"influx": {"bucket": "b", "token_env": "TEST_INGESTD_TOKEN"}})
    monkeypatch.delenv("TEST_INGESTD_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        settings.influx.token()
    assert info.value.key == "influx.token_env"
    monkeypatch.setenv("TEST_INGESTD_TOKEN", "s3cret")
    assert settings.influx.token() == "s3cret"
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    assert (
        parse_settings({**V1, "mqtt": {"password_file": str(secret_file)}}).mqtt.password()
        == "from-file"
    )


def test_secrets_cannot_be_written_in_the_toml() -> None:
    assert error_key({**V1, "mqtt": {"password": "x"}}) == "mqtt.password"
    assert error_key({"influx": {"bucket": "b", "token": "x"}}) == "influx.token"


def test_env_references_expand_with_defaults_and_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ORG", "acme")
    monkeypatch.delenv("TEST_UNSET", raising=False)
    path = tmp_path / "ingest.toml"
    path.write_text(
        '[mqtt]\nhost = "${TEST_UNSET:-mosquitto}"\nclient_id = "$${literal}"\n'
        '[influx]\norg = "${TEST_ORG}"\nbucket = "b-${TEST_ORG}-${TEST_UNSET:-}"\n'
        'token_env = "TEST_ORG"\n'
    )
    settings = load_settings(path)
    assert settings.mqtt.host == "mosquitto"
    assert settings.mqtt.client_id == "${literal}"
    assert settings.influx.org == "acme"
    assert settings.influx.bucket == "b-acme-"


def test_an_unset_env_reference_names_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_UNSET", raising=False)
    path = tmp_path / "ingest.toml"
    path.write_text('[influx]\napi = "v1"\ndatabase = "d"\n[[routes]]\ntopic = "${TEST_UNSET}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.key == "routes[0].topic"
    assert "TEST_UNSET" in info.value.message


def test_every_unset_variable_and_every_missing_secret_is_named_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TEST_A", "TEST_B", "TEST_PW", "TEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ingest.toml"
    path.write_text(
        '[mqtt]\nusername = "${TEST_A}"\npassword_env = "TEST_PW"\n'
        '[influx]\norg = "${TEST_B}"\nbucket = "${TEST_A}"\ntoken_env = "TEST_TOKEN"\n'
    )
    assert run_cli(["check", "--config", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err.strip() == (
        "ingestd: config error: environment variables not set: TEST_A (mqtt.username), "
        "TEST_B (influx.org)"
    )
    monkeypatch.setenv("TEST_A", "a")
    monkeypatch.setenv("TEST_B", "b")
    assert run_cli(["check", "--config", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err.strip() == (
        "ingestd: config error: mqtt.password_env: environment variable TEST_PW is not set; "
        "influx.token_env: environment variable TEST_TOKEN is not set"
    )


def test_check_no_secrets_validates_without_the_environment_and_says_what_it_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("TEST_A", "TEST_PW", "TEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ingest.toml"
    path.write_text(
        '[mqtt]\nusername = "${TEST_A}"\npassword_env = "TEST_PW"\n'
        '[influx]\norg = "o"\nbucket = "b"\ntoken_env = "TEST_TOKEN"\n'
    )
    assert run_cli(["check", "--config", str(path), "--no-secrets"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        "not resolved (--no-secrets): environment variables TEST_A (mqtt.username); "
        "secrets mqtt.password, influx.token"
    )
    path.write_text(path.read_text() + '[batch]\nmax_lines = "lots"\n')  # still validated
    assert run_cli(["check", "--config", str(path), "--no-secrets"]) == EXIT_CONFIG
    assert capsys.readouterr().err.startswith("ingestd: config error: batch.max_lines: ")
    with pytest.raises(SystemExit):
        run_cli(["check", "--config", str(path), "--no-secrets", "--connect"])


def test_qos2_with_paho_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="PUBREC before ingestd has stored"):
        parse_settings({**V1, "mqtt": {"transport": "paho", "qos": 2}})


def test_the_ack_watchdog_bound_follows_flush_interval_and_write_timeout() -> None:
    settings = parse_settings(
        {
            **V1,
            "batch": {"flush_interval_s": 2},
            "influx": {"api": "v1", "database": "db", "timeout_s": 5},
        }
    )
    assert settings.ack_overdue_s == 14.0
    assert parse_settings({**V1, "mqtt": {"ack_overdue_s": 3}}).ack_overdue_s == 3.0


def test_every_cli_option_has_help_text_and_the_help_no_code_comment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from ingestd.cli import _parser

    parsers = [_parser()]
    undocumented = []
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.help in (None, "") and action.dest != "args":
                undocumented.append(f"{parser.prog} {'/'.join(action.option_strings)}")
    assert undocumented == []
    with pytest.raises(SystemExit):
        run_cli(["--help"])
    assert "sys.exit" not in capsys.readouterr().out


def test_replay_refuses_a_misspelt_reason_instead_of_selecting_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli(["deadletter", "replay", "--config", "x.toml", "--reason", "invalid_jsn"])
    assert exit_.value.code == 2
    assert "invalid choice: 'invalid_jsn'" in capsys.readouterr().err
