"""Jittered exponential backoff, shared by the MQTT reconnect loop and the write retries."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, initial_s: float, max_s: float, floor_s: float | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (0-based): "equal jitter" between half and
    all of `initial_s * 2**attempt`, capped at `max_s`; never below `floor_s` (Retry-After)."""
    ceiling = min(max_s, initial_s * 2 ** min(attempt, 32))
    delay = random.uniform(ceiling / 2, ceiling)
    if floor_s is not None:
        delay = max(delay, min(floor_s, max_s))
    return delay
