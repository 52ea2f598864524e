"""MQTT topic-filter semantics, once (MQTT 3.1.1 section 4.7, MQTT 5 section 4.7): `+` is one
level, a final `#` is every level below and the parent itself, and a shared subscription
delivers from the filter after its group. Used to check routes against subscriptions, dead
letters against subscriptions, and to name the filter a message came by."""

from __future__ import annotations

SHARED_PREFIX = "$share/"
# the broker's counters ingestd reads (mqtt.broker_stats): Mosquitto's $SYS topics for messages it
# dropped and messages it holds. Never routed: the source hands them to the telemetry.
BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"
BROKER_STORED = "$SYS/broker/store/messages/count"
BROKER_STATS = (BROKER_DROPPED, BROKER_STORED)
# the longest topic the topic caches (source, routes) hold: longer ones are decoded and matched
# each time. Both caches full of invented 128-character topics (50,000 each) hold 44 MB
# (python -m benchmarks.topic_caches); unbounded, a topic may be 64 KiB each
CACHED_TOPIC_MAX_BYTES = 128


def delivered_filter(topic_filter: str) -> str:
    """What a subscription delivers from: a shared subscription `$share/<group>/<filter>`
    (MQTT 5 section 4.8.2; Mosquitto, EMQX, HiveMQ and VerneMQ also take it from 3.1.1 clients)
    delivers from `<filter>`, each message to one member of the group."""
    if topic_filter.startswith(SHARED_PREFIX):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3 and parts[1] and parts[2]:
            return parts[2]
    return topic_filter


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic is delivered by both filters. A topic is a filter without wildcards,
    so with a topic as `second` this is whether a subscription to `first` delivers it."""
    first, second = delivered_filter(first), delivered_filter(second)
    first_levels, second_levels = first.split("/"), second.split("/")
    for a, b in zip(first_levels, second_levels, strict=False):
        if a == "#" or b == "#":
            return True  # '#' takes whatever the other one asks for below this level
        if a != b and "+" not in (a, b):
            return False
    shorter = min(len(first_levels), len(second_levels))
    longer = first_levels if len(first_levels) > shorter else second_levels
    # equal lengths, or the longer one ends in a '#' that also delivers its parent level
    return len(longer) == shorter or longer[shorter:] == ["#"]


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether a message published to `topic` is delivered by a subscription to `topic_filter`."""
    return filters_overlap(topic_filter, topic)
