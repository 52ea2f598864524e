"""Unit knowledge in one place: "degF -> degC" resolved once, by pint, into an exact affine map.

The hot path never touches pint: it applies `(value + offset) * numerator / denominator`, with the
three numbers computed from exact fractions so that 86 degF becomes exactly 30.0 degC.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING

from ingestd.errors import ConfigError

if TYPE_CHECKING:
    import pint


@dataclass(frozen=True, slots=True)
class Conversion:
    """y = (x + offset) * numerator / denominator."""

    source: str
    target: str
    offset: float
    numerator: float
    denominator: float

    def apply(self, value: float) -> float:
        return (value + self.offset) * self.numerator / self.denominator


@cache
def _registry() -> pint.UnitRegistry[Fraction]:
    # imported here, not at the top: pint costs ~12 MB of RSS, and a config without `units`
    # (the p4n4 default) never needs it
    import pint

    return pint.UnitRegistry(non_int_type=Fraction)


def parse_conversion(spec: str, key: str) -> Conversion:
    """Resolve "degF -> degC" (or "mV->V", "W*min -> Wh"); raise ConfigError naming `key`."""
    import pint

    parts = [p.strip() for p in spec.split("->")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(key, f"expected 'source -> target', got {spec!r}")
    source, target = parts
    registry = _registry()
    try:
        zero = Fraction(registry.Quantity(Fraction(0), source).to(target).magnitude)
        one = Fraction(registry.Quantity(Fraction(1), source).to(target).magnitude)
    except pint.UndefinedUnitError as exc:
        raise ConfigError(key, f"unknown unit in {spec!r}: {exc}") from exc
    except pint.DimensionalityError as exc:
        # not f"{exc}": pint cannot format its own message with Fraction magnitudes
        raise ConfigError(
            key, f"cannot convert {source} to {target}: different dimensions"
        ) from exc
    except (pint.errors.PintError, ValueError, TypeError, AttributeError, AssertionError) as exc:
        raise ConfigError(key, f"cannot parse {spec!r}: {exc}") from exc
    scale = one - zero
    if scale == 0:
        raise ConfigError(key, f"{spec!r} maps every value to one number")
    offset = zero / scale
    return Conversion(
        source=source,
        target=target,
        offset=float(offset),
        numerator=float(scale.numerator),
        denominator=float(scale.denominator),
    )
