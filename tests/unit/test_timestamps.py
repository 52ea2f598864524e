from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.errors import MessageRejected
from ingestd.timestamps import to_ns

NS = 1_700_000_000_123_456_789


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1_700_000_000, "auto", 1_700_000_000 * 10**9),
        (1_700_000_000_123, "auto", 1_700_000_000_123 * 10**6),
        (1_700_000_000_123_456, "auto", 1_700_000_000_123_456 * 10**3),
        (NS, "auto", NS),
        (1_700_000_000.123, "auto", 1_700_000_000_123_000_000),
        (1_594_512_000.0, "auto", 1_594_512_000 * 10**9),
        (1_700_000, "ms", 1_700_000 * 10**6),
        ("1653668027", "auto", 1_653_668_027 * 10**9),
        ("2023-11-14T22:13:20.123456789Z", "auto", NS),
        ("2023-11-14T23:13:20.123456789+01:00", "auto", NS),
        ("2023-11-14T22:13:20Z", "auto", 1_700_000_000 * 10**9),
    ],
)
def test_to_ns_keeps_full_precision(value: object, unit: str, expected: int) -> None:
    assert to_ns(value, unit) == expected


def test_milliseconds_never_land_in_1970() -> None:
    assert to_ns(1_700_000_000_000) // 10**9 == 1_700_000_000


@pytest.mark.parametrize("value", [True, "yesterday", -1, float("inf"), 10**30, None, [1]])
def test_invalid_timestamps_are_rejected(value: object) -> None:
    with pytest.raises(MessageRejected):
        to_ns(value)


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=999),
)
def test_iso_strings_round_trip_to_the_nanosecond(moment: datetime, extra_ns: int) -> None:
    moment = moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}{extra_ns:03d}Z"
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    ) * 1000 + extra_ns
    assert to_ns(text) == expected


@given(st.integers(min_value=10**9, max_value=9 * 10**9), st.integers(min_value=0, max_value=999))
def test_float_seconds_with_milliseconds_are_exact(seconds: int, millis: int) -> None:
    value = float(f"{seconds}.{millis:03d}")
    assert to_ns(value) == seconds * 10**9 + millis * 10**6
