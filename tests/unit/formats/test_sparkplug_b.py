"""Sparkplug B as a host reads it: births define aliases, data resolves them, the memory
survives a restart (through StateFiles), and hostile bytes cost a dead letter, never a crash."""

from __future__ import annotations

import contextlib
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.buffer import MemoryBuffer
from ingestd.config import parse_settings
from ingestd.errors import MessageRejected
from ingestd.formats.sparkplug_b import State, metric_value
from ingestd.formats.sparkplug_b_pb2 import Payload  # type: ignore[attr-defined]
from ingestd.pipeline import Pipeline
from ingestd.records import Point, RawMessage
from ingestd.routes import compile_routes
from ingestd.statefiles import StateFiles
from ingestd.telemetry import Telemetry

DBIRTH = "spBv1.0/g/DBIRTH/n/d"
DDATA = "spBv1.0/g/DDATA/n/d"


def payload(*metrics: dict[str, Any], timestamp: int = 1_700_000_000_000) -> bytes:
    message = Payload(timestamp=timestamp, seq=1)
    for spec in metrics:
        message.metrics.add(**spec)
    return bytes(message.SerializeToString())


def pipeline(
    files: StateFiles | None = None, published: list[tuple[str, bytes]] | None = None
) -> Pipeline:
    route = {"format": "sparkplug_b", "request_rebirth": published is not None}
    config = parse_settings({"influx": {"api": "v1", "database": "d"}, "routes": [route]})
    made = Pipeline(
        compile_routes(config),
        MemoryBuffer(100),
        Telemetry(),
        lambda _d: None,
        config.limits,
        save_state=None if files is None else files.save,
        publish=None if published is None else lambda t, p: published.append((t, p)),
    )
    if files is not None:
        files.load(made.format_states)
    return made


def points(p: Pipeline, topic: str, data: bytes) -> list[Point]:
    found = p.to_points(RawMessage(topic, data, 1))
    assert found is not None
    return found[0]


BIRTH = payload(
    {"name": "temp", "alias": 1, "datatype": 9, "float_value": 21.5},
    {"name": "count", "alias": 2, "datatype": 3, "int_value": 7},
)


def test_alias_only_data_is_named_by_its_birth() -> None:
    p = pipeline()
    points(p, DBIRTH, BIRTH)
    got = points(p, DDATA, payload({"alias": 2, "int_value": (-5) & 0xFFFFFFFF}))
    assert got[0].fields == (("count", -5.0),)
    assert got[0].tags == (("group_id", "g"), ("edge_node_id", "n"), ("device_id", "d"))
    assert got[0].time_ns == 1_700_000_000_000 * 10**6


def test_an_alias_without_a_birth_is_a_dead_letter_that_names_it() -> None:
    with pytest.raises(MessageRejected) as info:
        points(pipeline(), DDATA, payload({"alias": 9, "boolean_value": True}))
    assert info.value.reason == "schema_mismatch" and "alias 9" in info.value.detail


def test_a_new_node_session_voids_its_devices_births() -> None:
    p = pipeline()
    points(p, DBIRTH, BIRTH)
    nbirth = payload({"name": "bdSeq", "datatype": 8, "long_value": 1})
    assert p.to_points(RawMessage("spBv1.0/g/NBIRTH/n", nbirth, 1)) is None  # bookkeeping only
    with pytest.raises(MessageRejected):
        points(p, DDATA, payload({"alias": 1, "float_value": 1.0}))


@pytest.mark.parametrize(
    ("datatype", "wire", "value"),
    [
        (1, 0xFB, -5),  # Int8
        (2, 0xFFFB, -5),  # Int16
        (3, 0xFFFFFFFB, -5),  # Int32
        (4, 2**64 - 5, -5),  # Int64, in long_value
        (6, 0xFFFB, 65531),  # UInt16 stays unsigned
        (5, 0x1FF, 255),  # UInt8: only its 8 bits count
    ],
)
def test_signed_integers_are_twos_complement(datatype: int, wire: int, value: int) -> None:
    field = "long_value" if datatype in (4, 8) else "int_value"
    metric = Payload().metrics.add(name="x", datatype=datatype, **{field: wire})
    assert metric_value(metric, datatype) == value


def test_null_metrics_and_non_series_types_are_not_readings() -> None:
    p = pipeline()
    got = points(
        p,
        DBIRTH,
        payload(
            {"name": "a", "alias": 1, "datatype": 9, "is_null": True},
            {"name": "blob", "alias": 2, "datatype": 17, "bytes_value": b"x"},
            {"name": "b", "alias": 3, "datatype": 11, "boolean_value": True},
        ),
    )
    assert [point.fields for point in got] == [(("b", True),)]


def test_deaths_commands_and_state_are_ignored() -> None:
    p = pipeline()
    for topic in ("spBv1.0/g/NDEATH/n", "spBv1.0/g/DDEATH/n/d", "spBv1.0/g/DCMD/n/d"):
        assert p.to_points(RawMessage(topic, payload(), 1)) is None
    assert p.to_points(RawMessage("spBv1.0/STATE/host", b'{"online": true}', 1)) is None


def test_the_alias_maps_survive_a_restart(tmp_path: Path) -> None:
    files = StateFiles(tmp_path / "state")
    points(pipeline(files), DBIRTH, BIRTH)
    saved = files.file_for("sparkplug_b")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    restarted = pipeline(StateFiles(tmp_path / "state"))
    assert points(restarted, DDATA, payload({"alias": 1, "float_value": 22.0}))[0].fields == (
        ("temp", 22.0),
    )


def test_an_unchanged_rebirth_writes_nothing(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    p = pipeline(files)
    points(p, DBIRTH, BIRTH)
    points(p, DBIRTH, BIRTH)
    assert files.saves == 1


def test_a_corrupt_state_file_is_set_aside_and_births_refill_it(tmp_path: Path) -> None:
    (tmp_path / "sparkplug_b.json").write_bytes(b"[{not json")
    p = pipeline(StateFiles(tmp_path))
    assert (tmp_path / "sparkplug_b.json.corrupt").exists()
    points(p, DBIRTH, BIRTH)
    assert (tmp_path / "sparkplug_b.json").exists()


def test_the_state_file_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    (tmp_path / "sparkplug_b.json.tmp").symlink_to(target)
    files = StateFiles(tmp_path)
    points(pipeline(files), DBIRTH, BIRTH)
    assert target.read_bytes() == b"keep" and files.failures == 1


def test_the_state_is_bounded() -> None:
    state = State(max_scopes=2)
    for device in ("a", "b"):
        state.birth(("g", "n", device), [])
    with pytest.raises(MessageRejected) as info:
        state.birth(("g", "n", "c"), [])
    assert info.value.reason == "limit_exceeded"


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_are_a_dead_letter_or_nothing_never_a_crash(data: bytes) -> None:
    p = pipeline()
    for topic in (DBIRTH, DDATA, "spBv1.0/g/NDATA/n"):
        with contextlib.suppress(MessageRejected):
            p.to_points(RawMessage(topic, data, 1))


def _rebirths(published: list[tuple[str, bytes]]) -> list[str]:
    topics = []
    for topic, data in published:
        request = Payload()
        request.ParseFromString(data)
        assert [(m.name, m.boolean_value) for m in request.metrics] == [
            ("Node Control/Rebirth", True)
        ]
        topics.append(topic)
    return topics


def test_an_unknown_alias_asks_the_node_for_a_rebirth_once_per_interval() -> None:
    published: list[tuple[str, bytes]] = []
    p = pipeline(published=published)
    unknown = payload({"alias": 9, "boolean_value": True})
    for received_s in (100, 110, 131):
        with pytest.raises(MessageRejected):
            p.to_points(RawMessage(DDATA, unknown, received_s * 10**9))
    assert _rebirths(published) == ["spBv1.0/g/NCMD/n", "spBv1.0/g/NCMD/n"]  # 100 s and 131 s


def test_without_request_rebirth_nothing_is_published() -> None:
    p = pipeline()
    with pytest.raises(MessageRejected):
        p.to_points(RawMessage(DDATA, payload({"alias": 9, "boolean_value": True}), 1))
    assert p.format_states["sparkplug_b"].outbox == []


def _with_seq(seq: int, *metrics: dict[str, Any]) -> bytes:
    message = Payload(timestamp=1_700_000_000_000, seq=seq)
    for spec in metrics:
        message.metrics.add(**spec)
    return bytes(message.SerializeToString())


def test_a_seq_gap_is_counted_and_asks_for_a_rebirth() -> None:
    published: list[tuple[str, bytes]] = []
    p = pipeline(published=published)
    bd = {"name": "bdSeq", "datatype": 8, "long_value": 3}
    p.to_points(RawMessage("spBv1.0/g/NBIRTH/n", _with_seq(0, bd), 10**9))
    p.to_points(
        RawMessage(
            DBIRTH,
            _with_seq(1, {"name": "t", "alias": 1, "datatype": 9, "float_value": 1.0}),
            10**9,
        )
    )
    p.to_points(RawMessage(DDATA, _with_seq(2, {"alias": 1, "float_value": 2.0}), 10**9))
    assert published == []
    p.to_points(
        RawMessage(DDATA, _with_seq(5, {"alias": 1, "float_value": 3.0}), 10**9)
    )  # 3, 4 lost
    state = p.format_states["sparkplug_b"]
    assert isinstance(state, State) and state.seq_gaps == 1
    assert _rebirths(published) == ["spBv1.0/g/NCMD/n"]


def test_a_stale_ndeath_does_not_take_the_new_session_offline() -> None:
    p = pipeline()
    state = p.format_states["sparkplug_b"]
    assert isinstance(state, State)
    p.to_points(
        RawMessage(
            "spBv1.0/g/NBIRTH/n", _with_seq(0, {"name": "bdSeq", "datatype": 8, "long_value": 4}), 1
        )
    )
    stale = payload({"name": "bdSeq", "datatype": 8, "long_value": 3})  # the will of session 3
    assert p.to_points(RawMessage("spBv1.0/g/NDEATH/n", stale, 2)) is None
    assert state.sessions[("g", "n")].online
    current = payload({"name": "bdSeq", "datatype": 8, "long_value": 4})
    p.to_points(RawMessage("spBv1.0/g/NDEATH/n", current, 3))
    assert not state.sessions[("g", "n")].online


def test_protobuf_is_loaded_only_by_a_sparkplug_route() -> None:
    """protobuf costs ~2.5 MB of RSS: the daemon pays it only when it decodes Sparkplug."""
    script = (
        "import sys\n"
        "from ingestd.service import check_messages\n"
        "from ingestd.config import parse_settings\n"
        "s = parse_settings({'influx': {'api': 'v1', 'database': 'd'}})\n"
        "check_messages(s, [('sensors/d/t', b'1')])\n"
        "assert 'google.protobuf' not in sys.modules, 'imported without a Sparkplug route'\n"
        "s = parse_settings({'influx': {'api': 'v1', 'database': 'd'},"
        " 'routes': [{'format': 'sparkplug_b'}]})\n"
        "check_messages(s, [('spBv1.0/g/NDATA/n', b'')])\n"
        "assert 'google.protobuf' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-500:]
