"""Alert transitions POSTed to events.webhook_url, through an outbox of their own: a failing
endpoint (500, or down) is retried until it answers 2xx, in order, and nothing is lost."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ingestd.alerts import Alerts
from ingestd.config import AlertSettings
from ingestd.outbox import Outbox
from ingestd.records import Point
from ingestd.webhook import Webhook


async def test_transitions_reach_a_flaky_webhook_in_order() -> None:
    answers = [500, 503]  # then 204s
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        if answers:
            return web.Response(status=answers.pop(0), text="busy")
        received.append(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    webhook_outbox = Outbox()
    rules = Alerts(
        [AlertSettings(name="too_hot", measurement="t", above=30)],
        Outbox(),
        10,
        webhook=(webhook_outbox, url),
    )
    for t, value in ((1, 40.0), (2, 20.0)):
        rules.observe([Point("t", (("device", "d"),), (("value", value),), t * 10**9)])
    webhook = Webhook(timeout_s=5)
    task = asyncio.create_task(webhook_outbox.run(webhook.post, 0.01, 0.02))
    try:
        async with asyncio.timeout(10):
            while len(received) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await webhook.close()
        await runner.cleanup()
    assert [r["state"] for r in received] == ["firing", "resolved"]
    assert webhook_outbox.failures == 2 and webhook_outbox.published == 2
