"""Alert transitions POSTed to a webhook as JSON (`events.webhook_url`), through their own
outbox (ingestd/outbox.py): in order, each until the endpoint answers 2xx, retried with
backoff otherwise, never blocking ingest. One small aiohttp session, closed at shutdown."""

from __future__ import annotations

import aiohttp

from ingestd.errors import DeliveryError


class Webhook:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, payload: bytes) -> None:
        """POST `payload` (JSON) to `url`; DeliveryError unless the answer is 2xx."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                url, data=payload, headers={"Content-Type": "application/json"}
            ) as answer:
                if answer.status // 100 != 2:
                    text = (await answer.text())[:200]
                    raise DeliveryError(f"the webhook answered {answer.status}: {text}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"the webhook cannot be reached: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
