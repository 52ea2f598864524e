"""`ingestd check` for any payload: text, hex, a file, and a sequence where a Sparkplug DBIRTH
precedes its DDATA (issue 11 item 5). In-process through cli.main, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingestd.cli import run_cli as main
from tests.corpus import corpus_cases

CONFIG = """
[influx]
api = "v1"
database = "d"

[[routes]]
format = "sparkplug_b"

[[routes]]
format = "zigbee2mqtt"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(CONFIG)
    return path


def _tahu() -> list[dict[str, str]]:
    cases = {case["name"]: case for name, case in corpus_cases() if name == "sparkplug"}
    if not cases:
        pytest.skip("no corpus")
    names = (
        "spb_dbirth_tahu_example_with_aliases",
        "spb_ddata_tahu_negative_int16_twos_complement",
    )
    return [{"topic": cases[n]["topic"], "payload_hex": cases[n]["payload_hex"]} for n in names]


def test_a_sequence_carries_the_birth_to_its_data(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = tmp_path / "m.jsonl"
    messages.write_text("".join(json.dumps(m) + "\n" for m in _tahu()))
    assert main(["check", "--config", str(config), "--messages", str(messages)]) == 0
    out = capsys.readouterr().out
    assert "# spBv1.0/Sparkplug B Devices/DDATA/Python Edge Node 1/Emulated Device" in out
    assert "output/Device\\ Metric2=-5 1486144502122000000" in out


def test_alias_only_data_alone_is_a_dead_letter_and_exit_1(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ddata = _tahu()[1]
    argv = ["check", "--config", str(config), "--topic", ddata["topic"]]
    assert main([*argv, "--payload-hex", ddata["payload_hex"]]) == 1
    assert "dead-letter: schema_mismatch: metric alias 10" in capsys.readouterr().out


def test_a_payload_file_is_read_as_bytes(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    birth = _tahu()[0]
    payload = tmp_path / "birth.bin"
    payload.write_bytes(bytes.fromhex(birth["payload_hex"]))
    argv = ["check", "--config", str(config), "--topic", birth["topic"]]
    assert main([*argv, "--payload-file", str(payload)]) == 0
    assert 'input/Device\\ Metric0="hello device"' in capsys.readouterr().out


def test_a_dead_letter_file_is_a_sequence(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    letters = tmp_path / "deadletters.jsonl"
    letters.write_text(
        json.dumps({"topic": "zigbee2mqtt/plug", "payload": '{"power": 5}', "reason": "x"})
        + "\n"
        + json.dumps({"topic": "zigbee2mqtt/plug", "payload_b64": "e30="})  # {}
        + "\n"
    )
    assert main(["check", "--config", str(config), "--messages", str(letters)]) == 1
    out = capsys.readouterr().out
    assert "zigbee2mqtt,device=plug power=5" in out and "dead-letter: no_fields" in out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--payload-hex", "zz"], "--payload-hex"),
        (["--payload-file", "/nonexistent/x"], "--payload-file"),
    ],
)
def test_bad_payload_options_are_config_errors(
    config: Path, argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(config), "--topic", "t", *argv]) == 2
    assert error in capsys.readouterr().err


def test_a_payload_without_a_topic_is_refused(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(config), "--payload-hex", "00"]) == 2
    assert "needs --topic" in capsys.readouterr().err
