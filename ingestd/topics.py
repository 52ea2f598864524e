"""MQTT topic-filter semantics, once (MQTT 3.1.1 section 4.7, MQTT 5 section 4.7): `+` is one
level, a final `#` is every level below and the parent itself. Used to check routes against
subscriptions, dead letters against subscriptions, and to name the filter a message came by."""

from __future__ import annotations


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic is delivered by both filters. A topic is a filter without wildcards,
    so with a topic as `second` this is whether a subscription to `first` delivers it."""
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
