"""A scriptable fake database for fault injection: answers /write and /api/v2/write with the
status a test chooses, and 400 for any batch holding a line that contains a marker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeDatabase:
    bad_marker: str = "BAD"
    # statuses to answer, in order, before behaving normally: (status, headers)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    requests: list[web.Request] = field(default_factory=list)
    url: str = ""
    delay_s: float = 0.0  # a slow database

    async def write(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        body = (await request.read()).decode()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.script:
            status, headers = self.script.pop(0)
            return web.Response(status=status, headers=headers, text="scripted")
        lines = [line for line in body.split("\n") if line]
        if any(self.bad_marker in line for line in lines):
            return web.Response(status=400, text='{"error":"partial write: field type conflict"}')
        self.stored.extend(lines)
        return web.Response(status=204)


@asynccontextmanager
async def fake_database() -> AsyncIterator[FakeDatabase]:
    db = FakeDatabase()
    app = web.Application()
    app.router.add_post("/write", db.write)
    app.router.add_post("/api/v2/write", db.write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    db.url = f"http://127.0.0.1:{port}"
    try:
        yield db
    finally:
        await runner.cleanup()
