"""The HTTP endpoints are bounded (issue 12 item 5): idle connections cannot exhaust the
process's file descriptors (before, they piled up until the flush task died)."""

from __future__ import annotations

import asyncio

import pytest

from ingestd import http
from ingestd.http import HttpEndpoints
from ingestd.telemetry import Telemetry


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        async with asyncio.timeout(within_s):
            return await reader.read(1) == b""
    except (TimeoutError, ConnectionResetError):
        return False


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    return data


async def test_connections_beyond_the_cap_are_closed_and_the_endpoints_stay_up() -> None:
    endpoints = HttpEndpoints(Telemetry(), lambda: (True, "ready"))
    await endpoints.start("127.0.0.1", 0)
    idle = [
        await asyncio.open_connection("127.0.0.1", endpoints.port)
        for _ in range(http.MAX_CONNECTIONS)
    ]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoints.port)
        assert await _closed_by_server(reader, 5)  # one too many
        writer.close()
    finally:
        for _reader, writer in idle:
            writer.close()
            await writer.wait_closed()
    await asyncio.sleep(0.1)  # the server sees them go
    assert b"200 OK" in await _get(endpoints.port, "/healthz")
    await endpoints.stop()


async def test_an_idle_connection_is_closed_after_its_lifetime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "MAX_CONNECTION_S", 0.2)
    endpoints = HttpEndpoints(Telemetry(), lambda: (True, "ready"))
    await endpoints.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoints.port)
    assert await _closed_by_server(reader, 5)
    writer.close()
    assert b"ready" in await _get(endpoints.port, "/readyz")
    await endpoints.stop()
