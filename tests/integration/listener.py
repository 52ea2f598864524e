"""A QoS 1 MQTT subscriber for tests that check what ingestd publishes (events, alerts): every
message it gets, as the JSON payload with its topic, never retained."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class Listener:
    def __init__(self, port: int, filters: list[str], login: tuple[str, str] | None = None) -> None:
        self.got: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{time.time_ns()}")
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f, 1) for f in filters])
        self.client.loop_start()
        time.sleep(0.3)  # subscribed before anything is published

    def _on_message(self, _c: object, _u: object, message: paho.MQTTMessage) -> None:
        assert not message.retain
        with self._lock:
            self.got.append(
                {"topic": message.topic, "at": time.monotonic(), **json.loads(message.payload)}
            )

    def states(self, rule: str) -> list[str]:
        """The alert transitions of `rule`, in order."""
        return [m["state"] for m in self.got if m.get("rule") == rule and "state" in m]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
