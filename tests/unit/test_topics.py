"""MQTT filter semantics, once: what a subscription delivers, and what covers what."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.topics import filter_covers, filter_matches


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
    ("outer", "inner", "covers"),
    [
        ("sensors/#", "sensors/+/+", True),
        ("sensors/+/+", "sensors/#", False),
        ("+/b", "x/b", True),
        ("x/b", "+/b", False),
        ("a/+/#", "a/#", False),  # a/# delivers 'a', which a/+/# does not
        ("a/#", "a/+/#", True),
    ],
)
def test_filter_covers_is_the_subset_relation(outer: str, inner: str, covers: bool) -> None:
    assert filter_covers(outer, inner) is covers


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
