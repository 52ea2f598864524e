"""The sink against a real InfluxDB 1.6."""

from __future__ import annotations

import pytest

from ingestd.config import InfluxSettings
from ingestd.devtools.servers import InfluxDB1
from ingestd.sink import InfluxSink

pytestmark = pytest.mark.integration


async def test_a_missing_v1_database_is_created_at_startup_and_written_to(
    influxdb1: InfluxDB1,
) -> None:
    """Before, a fresh InfluxDB 1.x answered every write with 404 'database not found', which
    ingestd retried forever."""
    sink = InfluxSink(InfluxSettings(url=influxdb1.url, api="v1", database="fresh db"))
    try:
        assert await sink.prepare() == "created or already there"
        assert await sink.prepare() == "created or already there"  # idempotent
        assert await sink.write(["m,d=a v=1 1000000000"]) == []
    finally:
        await sink.close()
    shown = influxdb1.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
    assert ["fresh db"] in shown
    answer = influxdb1.query('SELECT v FROM "fresh db".."m"')
    assert answer["results"][0]["series"][0]["values"] == [[1000000000, 1]]
