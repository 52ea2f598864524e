from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.errors import MessageRejected
from ingestd.timestamps import MAX_TIME_TEXT, _split_fraction, to_ns

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


# Bounded work on the read path (issue 12): one small message used to freeze the event loop.
HOSTILE = [
    '{"v": 1, "ts": "1e999999"}',  # 26 bytes: Decimal built a million-digit integer, 26 s
    '{"v": 1, "ts": "-1e999999"}',
    '{"v": 1, "ts": "2020-01-01T' + "1" * 60_000 + '"}',  # quadratic regex: minutes
    '{"v": 1, "ts": "' + "9" * 60_000 + '"}',
]


def test_hostile_timestamps_cost_bounded_cpu() -> None:
    """Each hostile message through the whole pipeline, in a child limited to 20 s of CPU: the
    old parser needed 26 s for the first alone (SIGXCPU kills the child), the bounded one needs
    milliseconds for all. CPU time, not wall time, and a margin of 1000x: not a timed
    assertion in the noisy sense."""
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (20, 20))\n"
        "from ingestd.service import check_messages\n"
        "from ingestd.config import parse_settings\n"
        "s = parse_settings({'influx': {'api': 'v1', 'database': 'd'}})\n"
        "payloads = [line.encode() for line in sys.stdin.read().split('\\n')]\n"
        "out = check_messages(s, [('sensors/d/t', p) for p in payloads])\n"
        "print([checked.reason.split(':')[0] for checked in out])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input="\n".join(HOSTILE),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == str(["invalid_timestamp"] * len(HOSTILE))


_OLD_ISO_FRACTION = re.compile(r"^([^.,]*T?[^.,]*?\d\d(?::?\d\d)?)[.,](\d+)(.*)$")


@settings(max_examples=500)
@given(st.text(alphabet="0123456789.,:T+-Zz ", max_size=MAX_TIME_TEXT))
def test_the_linear_fraction_split_agrees_with_the_old_regex(text: str) -> None:
    old = _OLD_ISO_FRACTION.match(text)
    assert _split_fraction(text) == (None if old is None else old.groups())


@settings(max_examples=300)
@given(
    st.text(max_size=200) | st.from_regex(r"-?\d{1,5}(\.\d{1,40})?[eE][+-]?\d{1,9}", fullmatch=True)
)
def test_any_string_is_a_time_or_invalid_timestamp(text: str) -> None:
    try:
        to_ns(text)
    except MessageRejected as exc:
        assert exc.reason == "invalid_timestamp"
