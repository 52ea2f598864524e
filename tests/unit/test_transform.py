from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestd.buffer import MemoryBuffer
from ingestd.config import LimitSettings, parse_settings
from ingestd.errors import MessageRejected
from ingestd.fieldtypes import FieldTypes, coerce
from ingestd.pipeline import Pipeline
from ingestd.records import DeadLetter, RawMessage
from ingestd.routes import compile_routes
from ingestd.telemetry import Telemetry

SETTINGS = parse_settings(
    {
        "mqtt": {"topics": ["#"]},
        "influx": {"api": "v1", "database": "db"},
        "routes": [
            {"topic": "sensors/{device}/{measurement}"},
            {
                "topic": "obj/{device}",
                "format": "object",
                "measurement": "obj",
                "types": {"battery": "float", "count": "int", "relay": "bool"},
            },
        ],
    }
)


LIMITS = LimitSettings(
    max_payload_bytes=4096, max_series_per_route=50, max_tag_value_bytes=32, max_readings=20
)


def make_pipeline() -> tuple[Pipeline, MemoryBuffer, list[DeadLetter]]:
    letters: list[DeadLetter] = []
    buffer = MemoryBuffer(10_000)
    pipeline = Pipeline(compile_routes(SETTINGS), buffer, Telemetry(), letters.append, LIMITS)
    return pipeline, buffer, letters


def lines_for(pipeline: Pipeline, topic: str, payload: bytes) -> list[str] | None:
    encoded = pipeline.to_lines(RawMessage(topic, payload, 1))
    return None if encoded is None else encoded[0]


UNTIMED = parse_settings(
    {
        "mqtt": {"topics": ["#"]},
        "influx": {"api": "v1", "database": "db"},
        "routes": [
            {"topic": "sensors/{device}/{measurement}"},
            {"topic": "obj/{device}", "format": "object", "measurement": "obj", "time_key": "t"},
            {"topic": "bare/{device}/{measurement}", "time_key": ""},
        ],
    }
)


@pytest.mark.parametrize(
    ("topic", "payload", "missing"),
    [
        ("sensors/d/t", b'{"v": 1, "ts": 1700000000}', False),
        ("sensors/d/t", b'{"v": 1}', True),
        ("sensors/d/t", b'{"v": 1, "ts": null}', True),
        ("sensors/d/t", b"21.5", True),  # a bare value cannot carry the route's time_key
        ("obj/d", b'{"a": 1, "t": 1700000000}', False),
        ("obj/d", b'{"a": 1, "ts": 1700000000}', True),  # the route's key is "t"
        ("bare/d/t", b"21.5", False),  # time_key = "": these devices send no time
        ("bare/d/t", b'{"v": 1}', False),
    ],
)
def test_the_transform_says_when_the_payload_lacked_the_routes_time_key(
    topic: str, payload: bytes, missing: bool
) -> None:
    from ingestd.transform import to_points

    match = compile_routes(UNTIMED).match(topic)
    assert match is not None
    points, time_missing = to_points(match[0], match[1], payload, 7, types=FieldTypes())
    assert time_missing is missing
    if missing:
        assert points[0].time_ns == 7  # the receive time


def test_a_missing_time_is_counted_per_message_and_logged_once_per_route_and_interval() -> None:
    from structlog.testing import capture_logs

    telemetry = Telemetry(log_interval_s=3600)
    buffer = MemoryBuffer(10_000)
    pipeline = Pipeline(compile_routes(UNTIMED), buffer, telemetry, lambda _d: None, LIMITS)
    with capture_logs() as logs:
        for i in range(5):
            pipeline.handle(RawMessage(f"sensors/d{i}/t", b'{"v": 1}', 1))
            pipeline.handle(RawMessage("obj/d", b'{"a": 1}', 1))
            pipeline.handle(RawMessage("bare/d/t", b"1", 1))
            pipeline.handle(RawMessage("sensors/d/t", b'{"v": 1, "ts": 1700000000}', 1))
    assert telemetry.messages_without_time == 10
    assert buffer.fill == 20  # all stored: a missing time is a fact, not an error
    missing = [e for e in logs if e["event"] == "payload_time_missing"]
    assert [(e["route"], e["time_key"], e["topic"]) for e in missing] == [
        ("routes[0]", "ts", "sensors/d0/t"),
        ("routes[1]", "t", "obj/d"),
    ]
    assert all(e["log_level"] == "warning" for e in missing)


def test_a_field_keeps_float_type_when_a_device_sends_ints_after_floats() -> None:
    pipeline, _, _ = make_pipeline()
    assert lines_for(pipeline, "sensors/d/t", b"21.5") == ["t,device=d value=21.5 1"]
    assert lines_for(pipeline, "sensors/d/t", b"22") == [
        "t,device=d value=22 1"
    ]  # float 22.0, no 'i'


def test_a_field_first_seen_as_bool_rejects_numbers_later() -> None:
    pipeline, _, _ = make_pipeline()
    lines_for(pipeline, "sensors/d/door", b"true")
    with pytest.raises(MessageRejected) as info:
        lines_for(pipeline, "sensors/d/door", b"3.5")
    assert info.value.reason == "field_type_conflict"


def test_configured_types_coerce_numeric_strings_and_on_off() -> None:
    pipeline, _, _ = make_pipeline()
    lines = lines_for(pipeline, "obj/d", b'{"battery": "100.00", "count": 3.0, "relay": "ON"}')
    assert lines == ["obj,device=d battery=100,count=3i,relay=true 1"]
    with pytest.raises(MessageRejected):
        lines_for(pipeline, "obj/d", b'{"count": 3.5}')


def test_strings_that_look_like_numbers_stay_strings_unless_configured() -> None:
    pipeline, _, _ = make_pipeline()
    assert lines_for(pipeline, "obj/m", b'{"ADCO": "021528603314"}') == [
        'obj,device=m ADCO="021528603314" 1'
    ]


def test_nested_objects_and_arrays_flatten_with_dots_and_nulls_are_skipped() -> None:
    pipeline, _, _ = make_pipeline()
    lines = lines_for(
        pipeline, "obj/t", b'{"ENERGY": {"Power": [23.63, 67.17], "Total": 1.5}, "x": null}'
    )
    assert lines == ["obj,device=t ENERGY.Power.0=23.63,ENERGY.Power.1=67.17,ENERGY.Total=1.5 1"]


def test_field_types_memory_is_bounded() -> None:
    types = FieldTypes(max_remembered=2)
    for i in range(10):
        types.type_for("m", f"f{i}", 1.0, None)
    assert len(types) == 2


@pytest.mark.parametrize(
    ("value", "wanted", "expected"),
    [
        (1, "float", 1.0),
        ("2.5", "float", 2.5),
        (4.0, "int", 4),
        ("7", "int", 7),
        ("off", "bool", False),
        (1, "bool", True),
        (True, "string", "true"),
        (2.5, "string", "2.5"),
    ],
)
def test_coerce_is_lossless(value: object, wanted: str, expected: object) -> None:
    got = coerce("k", value, wanted)  # type: ignore[arg-type]
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (True, "float"),
        ("abc", "float"),
        (1.5, "int"),
        (2**64, "int"),
        ("maybe", "bool"),
        (2, "bool"),
    ],
)
def test_coerce_refuses_lossy_conversions(value: object, wanted: str) -> None:
    with pytest.raises(MessageRejected):
        coerce("k", value, wanted)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    topic=st.sampled_from(["sensors/d/t", "obj/d", "nowhere", "sensors/\udcff/t"]),
    payload=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b'{"v": 1', b'{"v": 1e999}', b"[" * 500, b'{"v": "\xff"}', b"9" * 400]),
    ),
)
def test_no_input_escapes_the_pipeline(topic: str, payload: bytes) -> None:
    """Every message is buffered, dead-lettered with a known reason, or counted as holding no
    reading; nothing raises."""
    pipeline, buffer, letters = make_pipeline()
    pipeline.handle(RawMessage(topic, payload, 1))
    assert buffer.fill + len(letters) + pipeline.telemetry.messages_ignored == 1
    assert all(letter.reason != "internal_error" for letter in letters)


def test_retained_replays_are_skipped_counted_and_settled() -> None:
    settled: list[RawMessage] = []
    buffer = MemoryBuffer(100)
    pipeline = Pipeline(
        compile_routes(SETTINGS),
        buffer,
        Telemetry(),
        lambda _d: None,
        LIMITS,
        settled=settled.append,
        skip_retained=True,
    )
    retained = RawMessage("sensors/d/t", b"1.5", 1, retain=True, mid=7, qos=1)
    pipeline.handle(retained)
    pipeline.handle(RawMessage("sensors/d/t", b"2.5", 2))
    assert settled == [retained] and buffer.fill == 1
    assert pipeline.telemetry.retained_skipped == 1


def test_new_series_beyond_the_route_limit_are_dead_lettered_old_ones_still_flow() -> None:
    pipeline, buffer, letters = make_pipeline()
    for i in range(60):  # a publisher inventing device ids
        pipeline.handle(RawMessage(f"sensors/dev-{i}/t", b"1.5", 1))
    pipeline.handle(RawMessage("sensors/dev-0/t", b"2.5", 2))  # a known series still flows
    assert buffer.fill == 51
    assert [letter.reason for letter in letters] == ["cardinality_limit"] * 10


def test_one_device_inventing_series_spends_its_own_budget_not_the_routes() -> None:
    """Issue 12: one device inventing measurements used to exhaust the route's series budget,
    and every other device's new series were dead-lettered. Now it stops at its own."""
    letters: list[DeadLetter] = []
    buffer = MemoryBuffer(10_000)
    limits = LIMITS.model_copy(update={"max_series_per_device": 5})
    pipeline = Pipeline(compile_routes(SETTINGS), buffer, Telemetry(), letters.append, limits)
    for i in range(60):
        pipeline.handle(RawMessage(f"sensors/noisy/m{i}", b"1.5", 1))
    for i in range(40):  # the rest of the fleet, one new series each
        pipeline.handle(RawMessage(f"sensors/dev-{i}/t", b"1.5", 1))
    pipeline.handle(RawMessage("sensors/noisy/m0", b"2.5", 2))  # its known series still flow
    assert buffer.fill == 5 + 40 + 1
    assert [letter.topic for letter in letters] == [f"sensors/noisy/m{i}" for i in range(5, 60)]
    assert "max_series_per_device = 5" in letters[0].detail


def test_long_measurement_names_and_keys_are_dead_lettered_and_never_cached() -> None:
    """Issue 12: bounds counted items, not bytes. A measurement from a 60 KB topic level, or a
    60 KB field key, went into the series index and every line. Now names over
    limits.max_key_bytes are dead-lettered, and long topics stay out of the topic caches."""
    pipeline, buffer, letters = make_pipeline()
    long = "m" * 300
    pipeline.handle(RawMessage(f"sensors/dev-1/{long}", b"1.5", 1))
    pipeline.handle(RawMessage("obj/dev-1", b'{"' + long.encode() + b'": 1.5}', 2))
    pipeline.handle(RawMessage("obj/dev-1", '{"ключ": 1.5}'.encode(), 3))  # 8 bytes: fine
    assert [letter.reason for letter in letters] == ["limit_exceeded"] * 2
    assert "measurement" in letters[0].detail and "field key" in letters[1].detail
    assert buffer.fill == 1
    assert f"sensors/dev-1/{long}" not in pipeline.routes._cache
    assert "obj/dev-1" in pipeline.routes._cache


def test_long_tag_values_and_too_many_readings_exceed_limits() -> None:
    pipeline, _, _ = make_pipeline()
    with pytest.raises(MessageRejected) as info:
        lines_for(pipeline, "sensors/" + "d" * 40 + "/t", b"1")
    assert info.value.reason == "limit_exceeded"
    many = "{" + ",".join(f'"f{i}": {i}' for i in range(21)) + "}"
    with pytest.raises(MessageRejected) as info:
        lines_for(pipeline, "obj/d", many.encode())
    assert info.value.reason == "limit_exceeded"


def test_no_reading_markers_never_decide_a_fields_type() -> None:
    """Issue 11: `unavailable, 21.5, 22, unknown, 23.25` on one field was stored as strings,
    because the first sighting fixed the type and the markers were readings then."""
    pipeline, buffer, letters = make_pipeline()
    sequence = [b'{"v": "unavailable"}', b"21.5", b'{"v": 22}', b"unknown", b'{"v": 23.25}']
    for i, payload in enumerate(sequence):
        pipeline.handle(RawMessage("sensors/d/t", payload, i + 1))
    batch = buffer.take(100)
    assert batch is not None
    assert [line.split(" ")[1] for line in batch.lines] == ["value=21.5", "value=22", "value=23.25"]
    assert letters == [] and pipeline.telemetry.messages_ignored == 2


def test_what_the_database_holds_beats_the_first_sighting() -> None:
    pipeline, buffer, letters = make_pipeline()
    pipeline.field_types.learn_database({("t", "value"): "integer"})
    pipeline.handle(RawMessage("sensors/d/t", b'{"v": 2}', 1))
    pipeline.handle(RawMessage("sensors/d/t", b'{"v": 2.5}', 2))
    batch = buffer.take(10)
    assert batch is not None and batch.lines == ["t,device=d value=2i 1"]
    assert [letter.reason for letter in letters] == ["field_type_conflict"]
    assert "2.5 (float) is not a valid int" in letters[0].detail


@pytest.mark.parametrize(
    "detail",
    [
        # InfluxDB 1.x, and 2.x's JSON answer with its escaped quotes
        'HTTP 400: {"error":"partial write: field type conflict: input field \\"value\\" on '
        'measurement \\"t\\" is type float, already exists as type integer dropped=1"}',
        'HTTP 400: partial write: field type conflict: input field "value" on measurement "t" '
        "is type float, already exists as type integer dropped=1",
    ],
)
def test_a_refused_conflict_teaches_the_field_its_type(detail: str) -> None:
    pipeline, buffer, _letters = make_pipeline()
    pipeline.handle(RawMessage("sensors/d/t", b'{"v": 1}', 1))  # first sighting: float
    pipeline.reject(RawMessage("sensors/d/t", b'{"v": 1}', 1), "rejected_by_sink", detail)
    pipeline.handle(RawMessage("sensors/d/t", b'{"v": 3}', 2))
    batch = buffer.take(10)
    assert batch is not None and batch.lines[-1] == "t,device=d value=3i 2"


def test_the_type_memory_round_trips_and_a_configured_type_that_disagrees_is_named() -> None:
    types = FieldTypes()
    types.type_for("m", "a", 1.5, None)
    types.learn_database({("m", "b"): "boolean", ("m", "c"): "weird"})
    assert types.changed
    again = FieldTypes()
    again.load_json(types.to_json())
    assert again.type_for("m", "a", "x", None) == "float"
    assert again.type_for("m", "b", 1.0, None) == "bool"
    assert again.configured_conflicts({("m", "b"): "int", ("m", "z"): "int"}) == [
        ("m", "b", "int", "bool")
    ]
