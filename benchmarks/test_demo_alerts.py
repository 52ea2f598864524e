"""What the demo stack shows on MQTT (issue 14's Done-when): with the shipped config and the
compose simulator, `mosquitto_sub -t 'alerts/#' -t 'ingestd/events/#'` sees device_new events at
start, then a threshold alert and its resolution within five minutes. Run on the stack as the
rehearsal starts it (tests/stack/demo.py), listening as n8n's account does.

    pytest benchmarks/test_demo_alerts.py -s    # up to 5 minutes; writes results/demo_alerts.json
    BENCH_SMOKE=1 ...                           # 30 s: the device_new events only
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ingestd.devtools.servers import wait_until
from tests.integration.listener import Listener
from tests.stack.demo import DemoStack, demo_stack

from .harness import RESULTS, SMOKE

WITHIN_S = 30 if SMOKE else 300


def announced(got: Listener) -> set[str]:
    return {m["device"] for m in got.got if m.get("event") == "device_new"}


def test_the_demo_stack_announces_devices_and_an_alert_opens_and_closes_in_five_minutes() -> None:
    listeners: list[Listener] = []

    def listen(stack: DemoStack) -> None:
        login = (stack.env["MQTT_N8N_USER"], stack.env["MQTT_N8N_PASSWORD"])
        listeners.append(Listener(stack.mqtt_port, ["alerts/#", "ingestd/events/#"], login))

    with demo_stack(Path(tempfile.mkdtemp()), before_simulator=listen):
        started = time.monotonic()
        (got,) = listeners
        try:
            wait_until(lambda: len(announced(got)) >= 10, 30, "the fleet announced")
            if not SMOKE:
                wait_until(
                    lambda: "resolved" in got.states("too_hot"), WITHIN_S, "an alert and its end"
                )
        finally:
            got.close()

    def first(match: str) -> float | None:
        at = [m["at"] for m in got.got if match in (m.get("event"), m.get("state"))]
        return round(min(at) - started, 1) if at else None

    devices = announced(got)
    result = {
        "device_new_events": len(devices),
        "first_device_new_s": first("device_new"),
        "first_firing_s": first("firing"),
        "first_resolved_s": first("resolved"),
        "transitions": [(m["topic"], m["state"]) for m in got.got if "state" in m][:10],
    }
    print(f"\ndemo stack on MQTT: {result}")
    assert len(devices) >= 10  # the demo fleet's 20 devices, as they first speak
    if not SMOKE:
        assert got.states("too_hot")[:2] == ["firing", "resolved"]
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "demo_alerts.json").write_text(json.dumps(result, indent=2) + "\n")
