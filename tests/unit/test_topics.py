"""MQTT filter semantics, once: what a subscription delivers, and what covers what."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.topics import filter_matches, filters_overlap


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("sensors/#", "sensors", True),  # '#' includes the parent level
        ("sensors/#", "sensors/a/b", True),
        ("sensors/+", "sensors/a", True),
        ("sensors/+", "sensors/a/b", False),
        ("sensors/+", "sensors", False),
        ("+/+", "/x", True),  # an empty level is a level
        ("#", "a/b/c", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_filter_matches_follows_the_spec(topic_filter: str, topic: str, matches: bool) -> None:
    assert filter_matches(topic_filter, topic) is matches


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("sensors/#", "sensors/+/+", True),
        ("heater/#", "+/status", True),  # heater/status: the route `{node}/status` gets it
        ("+/status", "heater/#", True),
        ("heater/+", "+/status", True),
        ("heater/+", "+/status/x", False),
        ("a/b", "a/+/#", True),  # a/b, through the parent rule of the '#'
        ("a", "a/+/#", False),  # a/+/# needs a level below 'a'
        ("a", "a/#", True),
        ("x/b", "y/+", False),
        ("a/b/c", "a/b", False),
        ("#", "", True),
    ],
)
def test_filters_overlap_when_one_topic_is_delivered_by_both(
    first: str, second: str, overlap: bool
) -> None:
    assert filters_overlap(first, second) is overlap
    assert filters_overlap(second, first) is overlap


def reference(topic_filter: str, topic: str) -> bool:
    levels = topic_filter.split("/")
    multi = levels[-1] == "#"
    body = "/".join("[^/]*" if level == "+" else re.escape(level) for level in levels[:-1] if multi)
    if not multi:
        body = "/".join("[^/]*" if level == "+" else re.escape(level) for level in levels)
    pattern = (".*" if len(levels) == 1 else body + "(/.*)?") if multi else body
    return re.fullmatch(pattern, topic) is not None


LEVEL = st.sampled_from(["a", "b", ""])
FILTER_LEVEL = st.sampled_from(["a", "b", "", "+"])


@given(
    st.lists(FILTER_LEVEL, min_size=1, max_size=4),
    st.booleans(),
    st.lists(LEVEL, min_size=1, max_size=5),
)
def test_filter_matches_agrees_with_a_regular_expression(
    levels: list[str], hash_end: bool, topic_levels: list[str]
) -> None:
    topic_filter = "/".join([*levels, "#"] if hash_end else levels)
    topic = "/".join(topic_levels)
    assert filter_matches(topic_filter, topic) is reference(topic_filter, topic)


TOPICS = [
    "/".join(levels)
    for size in range(1, 6)
    for levels in itertools.product(["a", "b", ""], repeat=size)
]


@given(
    st.lists(FILTER_LEVEL, min_size=1, max_size=4),
    st.booleans(),
    st.lists(FILTER_LEVEL, min_size=1, max_size=4),
    st.booleans(),
)
def test_filters_overlap_agrees_with_a_search_for_a_common_topic(
    first_levels: list[str], first_hash: bool, second_levels: list[str], second_hash: bool
) -> None:
    # the filters use only the levels 'a', 'b' and '', so a common topic, if there is one, is
    # among those of at most 5 such levels
    first = "/".join([*first_levels, "#"] if first_hash else first_levels)
    second = "/".join([*second_levels, "#"] if second_hash else second_levels)
    common = any(filter_matches(first, t) and filter_matches(second, t) for t in TOPICS)
    assert filters_overlap(first, second) is common


@pytest.mark.parametrize(
    ("subscription", "topic", "delivered"),
    [
        ("$share/ingestd/sensors/#", "sensors/a/t", True),
        ("$share/ingestd/sensors/+/t", "sensors/a/t", True),
        ("$share/ingestd/sensors/#", "other/a", False),
        ("$share/g", "$share/g", True),  # no filter after the group: taken as written
    ],
)
def test_a_shared_subscription_delivers_from_the_filter_after_its_group(
    subscription: str, topic: str, delivered: bool
) -> None:
    """Issue 12: `$share/ingestd/sensors/#` was refused at startup as covering no route."""
    assert filter_matches(subscription, topic) is delivered
