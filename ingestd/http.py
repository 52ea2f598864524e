"""/metrics (Prometheus), /healthz (the process and its loop are alive), /readyz (connected to the
broker and the last write did not fail).

Bounded, since anyone who reaches the port can open connections: at most MAX_CONNECTIONS at
once (more are closed as they arrive), and none lives longer than MAX_CONNECTION_S, whatever it
sends. Before, idle connections piled up until the process ran out of file descriptors, which
killed the flush task. aiohttp alone does not close a connection that never sends a request
(aio-libs/aiohttp PR #13681).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingestd.telemetry import Telemetry

MAX_CONNECTIONS = 16  # a Prometheus, a healthcheck, a person with curl: plenty
MAX_CONNECTION_S = 30.0  # a scrape takes milliseconds; keep-alive reconnects after this


class _Slots:
    def __init__(self) -> None:
        self.open = 0


class _Bounded(asyncio.Protocol):
    """aiohttp's protocol for one connection, inside a slot and a lifetime."""

    def __init__(self, inner: Any, slots: _Slots) -> None:
        self._inner: Any = inner
        self._slots = slots
        self._expiry: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._slots.open >= MAX_CONNECTIONS:
            self._inner = None
            transport.abort()  # type: ignore[attr-defined]
            return
        self._slots.open += 1
        self._expiry = asyncio.get_running_loop().call_later(
            MAX_CONNECTION_S,
            transport.abort,  # type: ignore[attr-defined]
        )
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._slots.open -= 1
        if self._expiry is not None:
            self._expiry.cancel()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class _BoundedSite(web.TCPSite):
    async def start(self) -> None:
        await web.BaseSite.start(self)
        handler = self._runner.server
        assert handler is not None
        slots = _Slots()
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Bounded(handler(), slots), self._host, self._port
        )


class HttpEndpoints:
    def __init__(self, telemetry: Telemetry, ready: Callable[[], tuple[bool, str]]) -> None:
        self.telemetry = telemetry
        self.ready = ready
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        ok, why = self.ready()
        return web.Response(text=why + "\n", status=200 if ok else 503)

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = _BoundedSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
