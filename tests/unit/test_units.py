from __future__ import annotations

import math
from typing import Any

import pint
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.errors import ConfigError
from ingestd.units import parse_conversion

REFERENCE: Any = pint.UnitRegistry()  # pint ships no type hints


def test_fahrenheit_to_celsius_is_exact_at_known_points() -> None:
    c = parse_conversion("degF -> degC", "k")
    assert c.apply(86.0) == 30.0
    assert c.apply(32.0) == 0.0
    assert c.apply(212.0) == 100.0


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("mV -> V", 2950.0, 2.95),
        ("Pa -> hPa", 100120.0, 1001.2),
        ("kPa -> hPa", 101.3, 1013.0),
        ("W*min -> Wh", 60.0, 1.0),
        ("degC->K", 0.0, 273.15),
    ],
)
def test_conversion_matches_known_values(spec: str, value: float, expected: float) -> None:
    assert parse_conversion(spec, "k").apply(value) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("spec", ["frobs -> m", "degF -> V", "degF", "-> V", "degF -> degC -> K"])
def test_bad_unit_spec_is_a_config_error_naming_the_key(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_conversion(spec, "routes[0].units.temp")
    assert info.value.key == "routes[0].units.temp"


@given(
    st.sampled_from(
        ["degF -> degC", "mV -> V", "Pa -> hPa", "degC -> degF", "kWh -> Wh", "inch -> mm"]
    ),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
)
def test_conversion_agrees_with_pint(spec: str, value: float) -> None:
    conversion = parse_conversion(spec, "k")
    source, target = (s.strip() for s in spec.split("->"))
    expected = REFERENCE.Quantity(value, source).to(target).magnitude
    assert math.isclose(conversion.apply(value), expected, rel_tol=1e-12, abs_tol=1e-9)


def test_conversions_resolved_in_a_subprocess_keep_pint_out_of_the_daemon() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from ingestd.errors import ConfigError\n"
        "from ingestd.units import parse_conversion, resolve_in_subprocess\n"
        "resolve_in_subprocess(['degF -> degC', 'mV -> V', 'furlong -> V'])\n"
        "print(parse_conversion('degF -> degC', 'k').apply(86.0))\n"
        "print(parse_conversion('mV -> V', 'k').apply(3000.0))\n"
        "try:\n"
        "    parse_conversion('furlong -> V', 'routes[0].units.x')\n"
        "except ConfigError as exc:\n"
        "    print(exc.key, 'different dimensions' in exc.message)\n"
        "print('pint' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split("\n")[:4] == ["30.0", "3.0", "routes[0].units.x True", "False"]
