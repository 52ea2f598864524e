from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point as ReferencePoint

from ingestd.encode import LineEncoder, to_line
from ingestd.errors import MessageRejected
from ingestd.records import Point

# names InfluxDB takes: a trailing backslash is refused (tested below), as InfluxDB 1.6 does
names = st.text(min_size=1, max_size=12).filter(
    lambda s: s.strip() != "" and not s.startswith("#") and not s.endswith("\\")
)
field_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=4),
    time_ns=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_to_line_agrees_with_influxdb_client(
    measurement: str, tags: dict[str, str], fields: dict[str, object], time_ns: int
) -> None:
    reference = ReferencePoint(measurement)
    for key, value in tags.items():
        reference.tag(key, value)
    for key, reading in fields.items():
        reference.field(key, reading)
    reference.time(time_ns)
    ours = Point(measurement, tuple(tags.items()), tuple(fields.items()), time_ns)  # type: ignore[arg-type]
    assert to_line(ours) == reference.to_line_protocol()
    cached = LineEncoder(max_series=2)
    assert cached.to_line(ours) == cached.to_line(ours) == reference.to_line_protocol()


def test_to_line_escapes_spaces_commas_and_equals_in_tags_and_keys() -> None:
    point = Point("m m,x", (("t k", "a=b,c d"),), (("f=1", 1.5),), 5)
    assert to_line(point) == r"m\ m\,x,t\ k=a\=b\,c\ d f\=1=1.5 5"


def test_to_line_escapes_quotes_and_backslashes_in_string_fields() -> None:
    point = Point("m", (), (("s", 'say "hi" \\ bye'),), 1)
    assert to_line(point) == r'm s="say \"hi\" \\ bye" 1'


def test_to_line_writes_integers_with_i_and_whole_floats_without_fraction() -> None:
    point = Point("m", (), (("i", 7), ("f", 30.0), ("b", True)), 1)
    assert to_line(point) == "m b=true,f=30,i=7i 1"


def test_to_line_skips_empty_tag_values() -> None:
    assert to_line(Point("m", (("t", ""),), (("v", 1.0),), 1)) == "m v=1 1"


@pytest.mark.parametrize(
    "point",
    [
        Point("m", (), (("k\\", 1.0),), 1),  # a field key ending in a backslash
        Point("m", (), (("", 1.0),), 1),  # an empty field key
        Point("m", (("t\\", "v"),), (("k", 1.0),), 1),  # a tag key ending in a backslash
        Point("m\\", (), (("k", 1.0),), 1),  # a measurement ending in a backslash
    ],
)
def test_names_influxdb_refuses_are_refused_here(point: Point) -> None:
    """InfluxDB 1.6 answers 400 to each (checked by hand: `m b\\=1`, `m a\\\\=1`, `m =1`):
    refused here they cost one dead letter, not a bisection of their batch."""
    for encode in (to_line, LineEncoder().to_line):
        with pytest.raises(MessageRejected) as info:
            encode(point)
        assert info.value.reason == "schema_mismatch"
