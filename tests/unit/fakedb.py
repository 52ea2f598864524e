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
    # /query: the databases SHOW DATABASES lists, and whether CREATE DATABASE is allowed
    databases: list[str] = field(default_factory=list)
    may_create: bool = True

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

    async def query(self, request: web.Request) -> web.Response:
        statement = str((await request.post()).get("q", ""))
        if statement.startswith("CREATE DATABASE"):
            if not self.may_create:
                return web.json_response(
                    {"error": "error authorizing query: not admin"}, status=403
                )
            self.databases.append(statement.split('"')[1])
            return web.json_response({"results": [{"statement_id": 0}]})
        values = [[name] for name in self.databases]
        series = [{"name": "databases", "columns": ["name"], "values": values}]
        return web.json_response({"results": [{"statement_id": 0, "series": series}]})


@asynccontextmanager
async def fake_database() -> AsyncIterator[FakeDatabase]:
    db = FakeDatabase()
    app = web.Application()
    app.router.add_post("/write", db.write)
    app.router.add_post("/api/v2/write", db.write)
    app.router.add_post("/query", db.query)
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
