from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest

from ingestd.config import InfluxSettings, parse_settings
from ingestd.errors import RetryableSinkError
from ingestd.records import RawMessage
from ingestd.service import Service
from ingestd.sink import InfluxSink

from .fakedb import fake_database


def v1(url: str) -> InfluxSettings:
    return InfluxSettings(url=url, api="v1", database="db", username="u", password_env="TEST_PW")


async def test_a_400_costs_only_the_bad_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PW", "pw")
    async with fake_database() as db:
        sink = InfluxSink(v1(db.url))
        lines = [f"m v={i} {i}" for i in range(100)]
        lines[17] = "m BAD=1 17"
        lines[80] = "m BAD=1 80"
        rejected = await sink.write(lines)
        await sink.close()
    assert [r.index for r in rejected] == [17, 80]
    assert sorted(db.stored, key=lambda line: int(line.split()[-1])) == [
        line for i, line in enumerate(lines) if i not in (17, 80)
    ]
    assert sink.requests <= 2 * 2 * 7 + 1  # about 2k*log2(n)


async def test_v1_sends_basic_auth_and_v2_sends_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PW", "pw")
    monkeypatch.setenv("TEST_TOKEN", "tok")
    async with fake_database() as db:
        sink1 = InfluxSink(v1(db.url))
        await sink1.write(["m v=1 1"])
        sink2 = InfluxSink(
            InfluxSettings(url=db.url, api="v2", org="o", bucket="b", token_env="TEST_TOKEN")
        )
        await sink2.write(["m v=1 1"])
        await sink1.close()
        await sink2.close()
        first, second = db.requests
        assert (
            first.path == "/write"
            and first.query["db"] == "db"
            and first.query["precision"] == "ns"
        )
        assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"u:pw").decode()
        assert (
            second.path == "/api/v2/write"
            and second.query["bucket"] == "b"
            and second.query["org"] == "o"
        )
        assert second.headers["Authorization"] == "Token tok"


@pytest.mark.parametrize("status", [429, 500, 503, 401, 404])
async def test_retryable_statuses_raise_retryable_with_retry_after(status: int) -> None:
    async with fake_database() as db:
        db.script = [(status, {"Retry-After": "7"})]
        sink = InfluxSink(InfluxSettings(url=db.url, api="v2", bucket="b"))
        with pytest.raises(RetryableSinkError) as info:
            await sink.write(["m v=1 1"])
        await sink.close()
    assert info.value.retry_after_s == 7.0


async def test_a_413_splits_the_batch() -> None:
    async with fake_database() as db:
        db.script = [(413, {})]
        sink = InfluxSink(InfluxSettings(url=db.url, api="v2", bucket="b"))
        assert await sink.write(["m v=1 1", "m v=2 2"]) == []
        await sink.close()
    assert db.stored == ["m v=1 1", "m v=2 2"]


async def test_unreachable_database_is_retryable() -> None:
    sink = InfluxSink(InfluxSettings(url="http://127.0.0.1:9", api="v2", bucket="b", timeout_s=2))
    with pytest.raises(RetryableSinkError):
        await sink.write(["m v=1 1"])
    await sink.close()


async def test_flusher_keeps_the_batch_through_503s_and_dead_letters_only_rejected_lines(
    tmp_path: Path,
) -> None:
    async with fake_database() as db:
        db.script = [(503, {"Retry-After": "0"}), (429, {})]
        settings = parse_settings(
            {
                "influx": {"url": db.url, "api": "v2", "bucket": "b"},
                "batch": {
                    "max_lines": 50,
                    "flush_interval_s": 0.05,
                    "retry_initial_s": 0.01,
                    "retry_max_s": 0.05,
                },
                "deadletter": {"path": str(tmp_path / "dl.jsonl")},
                "spool": {"enabled": False},  # retried in place, which is what this test is about
                "mqtt": {"topics": ["#"]},
                "routes": [{"topic": "s/{device}/{measurement}"}],
            }
        )
        service = Service(settings)
        for i in range(20):
            measurement = "BAD" if i == 5 else "t"
            service.pipeline.handle(
                RawMessage(f"s/d{i}/{measurement}", f'{{"v": {i}, "ts": {i + 1}}}'.encode(), 1)
            )
        flush = asyncio.create_task(service.flusher.run())
        deadline = time.monotonic() + 5
        while len(db.stored) < 19 and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.01)
        service.buffer.close_intake()
        await asyncio.wait_for(flush, 5)
        await service.sink.close()
        service.dead_letters.close()
    assert len(db.stored) == 19
    assert service.telemetry.batches["retried"] == 2
    assert service.telemetry.dropped == {"rejected_by_sink": 1}
    letters = (tmp_path / "dl.jsonl").read_text().splitlines()
    assert (
        len(letters) == 1
        and '"topic":"s/d5/BAD"' in letters[0]
        and '"line":"BAD,device=d5' in letters[0]
    )


async def test_a_503_while_isolating_a_400_resumes_where_it_stopped() -> None:
    async with fake_database() as db:
        sink = InfluxSink(InfluxSettings(url=db.url, api="v2", bucket="b"))
        lines = [f"m v={i} {i}" for i in range(8)]
        lines[1] = "m BAD=1 1"
        # whole batch 400, [0:4] 400, [0:2] 400, [0] written, [1] 400, then [2:4] meets a 503
        db.script = [(400, {}), (400, {}), (400, {}), (204, {}), (400, {}), (503, {})]
        with pytest.raises(RetryableSinkError) as info:
            await sink.write(lines)
        sent_before = len(db.requests)
        rejected = await sink.write(lines, info.value.progress)
        await sink.close()
    assert [r.index for r in rejected] == [1]
    # the resumed write sends only [2:4] and [4:8]; nothing before the failure again
    assert len(db.requests) - sent_before == 2
    assert sorted(db.stored) == sorted(lines[2:])


async def test_a_missing_v1_database_this_user_may_not_create_is_an_error_with_the_fix() -> None:
    from ingestd.config import InfluxSettings
    from ingestd.errors import IngestdError
    from ingestd.sink import InfluxSink

    async with fake_database() as db:
        db.may_create = False
        db.databases = ["_internal"]
        sink = InfluxSink(InfluxSettings(url=db.url, api="v1", database="sensors", username="u"))
        try:
            with pytest.raises(IngestdError) as error:
                await sink.prepare()
            db.databases.append("sensors")  # an admin created it: startup goes on
            assert await sink.prepare() == "already there"
        finally:
            await sink.close()
    assert "'sensors' does not exist and u may not create it" in str(error.value)
    assert 'CREATE DATABASE "sensors"' in str(error.value)


async def test_a_service_whose_v1_database_cannot_exist_stops_at_startup(tmp_path: Path) -> None:
    from ingestd.config import parse_settings
    from ingestd.devtools.fakes import FakeSource
    from ingestd.errors import IngestdError
    from ingestd.service import Service

    async with fake_database() as db:
        db.may_create = False
        settings = parse_settings(
            {
                "influx": {"url": db.url, "api": "v1", "database": "sensors"},
                "deadletter": {"path": str(tmp_path / "dl.jsonl")},
                "spool": {"enabled": False},
                "http": {"enabled": False},
            }
        )
        service = Service(settings, source=FakeSource.feeding([]))
        with pytest.raises(IngestdError, match="does not exist"):
            await asyncio.wait_for(service.run(), 10)
    assert not service.tasks  # nothing was started


async def test_a_batch_of_bad_lines_costs_a_bounded_number_of_requests() -> None:
    """Issue 12: every line refused made the bisection send 2n - 1 requests (1,999 for these
    1,000 lines; 9,999 for a 5,000-line batch). Now the budget caps them; the parts refused
    after it are dead-lettered whole, so nothing is lost and every good line still lands."""
    async with fake_database() as db:
        settings = InfluxSettings(url=db.url, api="v2", bucket="b", max_bisect_requests=32)
        sink = InfluxSink(settings)
        lines = [f"m BAD=1 {i}" for i in range(1000)]
        lines[3] = "m v=1 3"
        rejected = await sink.write(lines)
        await sink.close()
    assert sink.requests <= 32 + 10 + 1  # the budget, plus one request per part pending at it
    assert [r.index for r in rejected] == [i for i in range(1000) if i != 3]
    assert db.stored == ["m v=1 3"]
    assert any("not isolated" in r.detail for r in rejected)


async def test_a_few_bad_lines_are_still_isolated_exactly_within_the_default_budget() -> None:
    async with fake_database() as db:
        sink = InfluxSink(InfluxSettings(url=db.url, api="v2", bucket="b"))
        lines = [f"m v={i} {i}" for i in range(5000)]
        bad = [7, 700, 1234, 2500, 2501, 3999, 4000, 4998]
        for i in bad:
            lines[i] = f"m BAD=1 {i}"
        rejected = await sink.write(lines)
        await sink.close()
    assert [r.index for r in rejected] == bad
    assert len(db.stored) == 5000 - len(bad)
