"""Benchmarks run with `pytest benchmarks/`; never part of `pytest` (tests/)."""
