from __future__ import annotations

import pytest

from ingestd.routes import TopicTemplate


@pytest.mark.parametrize(
    ("template", "topic", "segments"),
    [
        (
            "sensors/{device}/{measurement}",
            "sensors/d1/temp",
            {"device": "d1", "measurement": "temp"},
        ),
        ("sensors/{device}/{measurement}", "sensors/d1/temp/x", None),
        ("sensors/{device}/{measurement}", "sensors/d1", None),
        ("sensors/{device}/{measurement}", "sensors//temp", None),
        (
            "{site}/{system}/{device}/data",
            "paku/ruuvi/van/data",
            {"site": "paku", "system": "ruuvi", "device": "van"},
        ),
        ("{site}/{system}/{device}/data", "paku/ruuvi/van/state", None),
        ("tele/+/{name}/#", "tele/x/dev/SENSOR/more", {"name": "dev"}),
        ("tele/+/{name}/#", "tele/x/dev", {"name": "dev"}),  # as in MQTT, a/# matches a
        ("tele/+/{name}/#", "tele/x", None),
    ],
)
def test_template_matches_named_levels(
    template: str, topic: str, segments: dict[str, str] | None
) -> None:
    assert TopicTemplate.parse(template, "k").match(topic.split("/")) == segments


@pytest.mark.parametrize(
    ("template", "topic_filter", "covered"),
    [
        ("sensors/{d}/{m}", "sensors/#", True),
        ("sensors/{d}/{m}", "sensors/+/+", True),
        ("sensors/{d}/{m}", "sensors/+", False),
        ("sensors/{d}/{m}", "sensors/x/+", False),
        ("{a}/b", "+/b", True),
        ("{a}/b", "x/b", False),
        ("a/#", "a/#", True),
        ("a/#", "a/+", False),
    ],
)
def test_template_coverage_by_subscription(template: str, topic_filter: str, covered: bool) -> None:
    assert TopicTemplate.parse(template, "k").covered_by(topic_filter) is covered


def test_route_cache_is_bounded_and_keeps_answers_right() -> None:
    from ingestd.config import parse_settings
    from ingestd.routes import RouteTable, compile_routes

    routes = compile_routes(parse_settings({"influx": {"api": "v1", "database": "d"}})).routes
    table = RouteTable(routes, max_cached=3)
    for i in range(10):
        match = table.match(f"sensors/dev-{i}/t")
        assert match is not None and match[1] == {"device": f"dev-{i}", "measurement": "t"}
        assert len(table._cache) <= 3
    assert table.match("elsewhere/x") is None
    assert table.match("elsewhere/x") is None
