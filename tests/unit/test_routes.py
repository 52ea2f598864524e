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
    ("template", "topic_filter", "reachable"),
    [
        ("sensors/{d}/{m}", "sensors/#", True),
        ("sensors/{d}/{m}", "sensors/x/+", True),  # only device x, but that is a topic
        ("sensors/{d}/{m}", "sensors/+", False),
        ("{node}/status", "heater/#", True),
        ("{a}/b", "x/b", True),
        ("{a}/b", "x/c", False),
        ("a/#", "a/+", True),
        ("a/#", "b/#", False),
    ],
)
def test_a_template_is_reachable_through_a_filter_that_delivers_one_of_its_topics(
    template: str, topic_filter: str, reachable: bool
) -> None:
    assert TopicTemplate.parse(template, "k").reachable_through(topic_filter) is reachable


@pytest.mark.parametrize(
    ("topics", "template", "refused"),
    [
        (["heater/#"], "{node}/status", False),  # the README's rule: heater/status reaches it
        (["sensors/#", "heater/+"], "{node}/status", False),
        (["sensors/#"], "{node}/status/{x}/y", False),
        (["sensors/#"], "devices/{node}/status", True),
        (["sensors/+"], "sensors/{d}/{m}", True),
    ],
)
def test_startup_refuses_a_route_only_when_no_subscription_can_deliver_its_topics(
    topics: list[str], template: str, refused: bool
) -> None:
    from ingestd.config import parse_settings
    from ingestd.errors import ConfigError
    from ingestd.routes import compile_routes

    settings = parse_settings(
        {
            "mqtt": {"topics": topics},
            "influx": {"api": "v1", "database": "d"},
            "routes": [{"topic": template, "measurement": "m"}],
        }
    )
    if not refused:
        assert compile_routes(settings).routes[0].template.text == template
        return
    with pytest.raises(ConfigError, match=r"routes\[0\]\.topic: .* can never match a topic"):
        compile_routes(settings)


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
