"""The end-to-end benchmarks' shared set-up: a real Mosquitto and InfluxDB 1.6 on loopback,
and ingestd as a subprocess, configured per benchmark."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import ROUTES, TOPICS, Expected, workload


@contextmanager
def running_stack(broker_options: str = "") -> Iterator[tuple[Mosquitto, InfluxDB1, Path]]:
    """Broker and database started in a fresh directory, stopped afterwards."""
    workdir = Path(tempfile.mkdtemp())
    broker = Mosquitto(workdir, listener_options="allow_anonymous true\n" + broker_options)
    db = InfluxDB1(workdir)
    broker.start()
    db.start()
    try:
        yield broker, db, workdir
    finally:
        db.stop()
        broker.stop()


def quiet_ingestd(
    workdir: Path, broker: Mosquitto, influx: dict[str, Any], **overrides: Any
) -> Ingestd:
    """ingestd for the workload's routes, logging warnings only (not per batch)."""
    return Ingestd(
        workdir,
        broker,
        influx,
        TOPICS,
        ROUTES,
        log={"format": "json", "level": "warning"},
        **overrides,
    )


def value_messages(count: int) -> list[Expected]:
    """`count` p4n4 value messages (every fifth workload message is one)."""
    messages = [m for m in workload(count * 5, bad_ratio=0) if m.kind == "value"]
    assert len(messages) == count
    return messages
