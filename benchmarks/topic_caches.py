"""What the two topic caches (the source's bytes -> str, the routes' str -> match) hold at worst:
both full of invented topics of the longest length they cache, measured with tracemalloc.

    python -m benchmarks.topic_caches
"""

from __future__ import annotations

import tracemalloc

from ingestd.config import parse_settings
from ingestd.routes import compile_routes
from ingestd.source import TOPIC_CACHE_SIZE, MqttSource, SourceHooks
from ingestd.telemetry import Telemetry
from ingestd.topics import CACHED_TOPIC_MAX_BYTES


def main() -> None:
    settings = parse_settings(
        {
            "influx": {"api": "v1", "database": "d"},
            "mqtt": {"topics": ["#"]},
            "routes": [{"topic": "sensors/{device}/{measurement}"}],
        }
    )
    table = compile_routes(settings)
    delivered: list[object] = []

    async def never() -> None:
        raise AssertionError

    hooks = SourceHooks(
        delivered.append, lambda: False, never, delivered.append, lambda _why: None,
        lambda *_oversized: None,
    )  # fmt: skip
    source = MqttSource(settings.mqtt, hooks, Telemetry())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(TOPIC_CACHE_SIZE - 1):  # one short of a full cache: it is cleared when full
        # topics a route matches (each match keeps its segments), as long as the caches take
        padding = "x" * (CACHED_TOPIC_MAX_BYTES - len(f"sensors/{i:08d}/temperature"))
        topic = f"sensors/{i:08d}{padding}/temperature"
        source._deliver(topic.encode(), b"1", 0, False, 0)
        # as the pipeline does: the message's topic, the str object the source's cache holds
        (message,) = delivered
        table.match(message.topic)  # type: ignore[attr-defined]
        delivered.clear()
    held = tracemalloc.get_traced_memory()[0] - before
    print(
        f"{len(source._topics):,} and {len(table._cache):,} topics of {CACHED_TOPIC_MAX_BYTES} "
        f"characters cached: {held / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
