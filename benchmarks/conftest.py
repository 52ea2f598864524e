"""Benchmarks run with `pytest benchmarks/`; never part of `pytest` (tests/)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import RESULTS, SMOKE
from .report import write


@pytest.fixture(scope="session", autouse=True)
def end_to_end_report() -> Iterator[None]:
    yield
    out = Path(tempfile.mkdtemp()) if SMOKE else RESULTS
    for path in write(out):
        print(f"\nwrote {path}")
