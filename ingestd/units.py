"""Unit knowledge in one place: "degF -> degC" resolved once, by pint, into an exact affine map.

The hot path never touches pint: it applies `(value + offset) * numerator / denominator`, with the
three numbers computed from exact fractions so that 86 degF becomes exactly 30.0 degC.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
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


# spec -> its conversion, or why it is invalid: filled by resolve_in_subprocess
_RESOLVED: dict[str, Conversion | str] = {}


def resolve_in_subprocess(specs: Iterable[str]) -> None:
    """Resolve these specs in a short-lived child process and remember the results, so the
    daemon never imports pint: pint and its registry cost ~16 MB of RSS (measured: 52.7 ->
    68.8 MB), for the process's lifetime, to compute a few numbers once."""
    todo = sorted(set(specs) - _RESOLVED.keys())
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        _RESOLVED.update(pool.submit(_resolve_all, todo).result(timeout=120))


def _resolve_all(specs: list[str]) -> dict[str, Conversion | str]:
    out: dict[str, Conversion | str] = {}
    for spec in specs:
        try:
            out[spec] = parse_conversion(spec, "")
        except ConfigError as exc:
            out[spec] = exc.message
    return out


def parse_conversion(spec: str, key: str) -> Conversion:
    """Resolve "degF -> degC" (or "mV->V", "W*min -> Wh"); raise ConfigError naming `key`."""
    known = _RESOLVED.get(spec)
    if isinstance(known, Conversion):
        return known
    if known is not None:
        raise ConfigError(key, known)
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
