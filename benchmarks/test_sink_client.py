"""Why the sink posts line protocol with aiohttp instead of influxdb-client's async write API:
the same 5,000-line batches to the same server, CPU time per batch on the client side.

    pytest benchmarks/test_sink_client.py -s
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import pytest

from ingestd.config import InfluxSettings
from ingestd.devtools.servers import VictoriaMetrics
from ingestd.sink import InfluxSink

from .harness import SMOKE

BATCHES = 3 if SMOKE else 40
LINES = 5000


@pytest.fixture(scope="module")
def victoria() -> object:
    db = VictoriaMetrics(Path(tempfile.mkdtemp()))
    db.start()
    yield db
    db.stop()


def batches() -> list[list[str]]:
    return [
        [
            f"temperature,device=dev-{i % 50} value={i * 0.5} {1_700_000_000_000_000_000 + b * LINES + i}"
            for i in range(LINES)
        ]
        for b in range(BATCHES)
    ]


async def ours(url: str, data: list[list[str]]) -> None:
    sink = InfluxSink(InfluxSettings(url=url, api="v2", org="p4n4", bucket="sensors"))
    for batch in data:
        assert await sink.write(batch) == []
    await sink.close()


async def reference(url: str, data: list[list[str]]) -> None:
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

    async with InfluxDBClientAsync(url=url, token="", org="p4n4") as client:
        api = client.write_api()
        for batch in data:
            await api.write(bucket="sensors", record=batch)


def cpu_ms_per_batch(fn: object, url: str) -> float:
    runs = []
    for _ in range(1 if SMOKE else 3):
        data = batches()
        start = time.process_time()
        asyncio.run(fn(url, data))  # type: ignore[operator]
        runs.append((time.process_time() - start) / BATCHES * 1000)
    return statistics.median(runs)


def test_sink_client_cost(victoria: VictoriaMetrics) -> None:
    ms_ours = cpu_ms_per_batch(ours, victoria.url)
    ms_ref = cpu_ms_per_batch(reference, victoria.url)
    print(
        f"\nclient CPU per {LINES}-line batch: ingestd sink {ms_ours:.2f} ms, "
        f"influxdb-client async {ms_ref:.2f} ms ({ms_ref / ms_ours:.1f}x)"
    )
    assert ms_ours > 0 and ms_ref > 0
