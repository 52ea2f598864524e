"""MQTT topic-filter semantics, once (MQTT 3.1.1 section 4.7, MQTT 5 section 4.7): `+` is one
level, a final `#` is every level below and the parent itself. Used to check routes against
subscriptions, dead letters against subscriptions, and to name the filter a message came by."""

from __future__ import annotations


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether a message published to `topic` is delivered by a subscription to `topic_filter`."""
    return filter_covers(topic_filter, topic)


def filter_covers(outer: str, inner: str) -> bool:
    """Whether subscribing to `outer` delivers every topic that `inner` (a topic, or a filter)
    matches. A topic is a filter without wildcards, so this is also `filter_matches`."""
    outer_levels, inner_levels = outer.split("/"), inner.split("/")
    for i, wanted in enumerate(outer_levels):
        if wanted == "#":
            return True
        if i >= len(inner_levels):
            return False
        level = inner_levels[i]
        if level == "#":
            return False  # inner goes on below where outer stops
        if wanted not in ("+", level):
            return False  # a literal covers neither another literal nor a '+'
    return len(outer_levels) == len(inner_levels)
