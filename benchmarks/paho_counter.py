"""A paho-mqtt subscriber that only counts: the reference for what a Python MQTT client costs
before it does any work. Run by reference.py as its own process, like ingestd:

    python -m benchmarks.paho_counter --port 1883 --qos 1 --topic 'sensors/#'

Every 50 ms it prints `<received> <monotonic time of the last message>` when the count moved.
It runs until stdin closes."""

from __future__ import annotations

import argparse
import sys
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="the broker's port on 127.0.0.1")
    parser.add_argument("--qos", type=int, default=0, help="subscription QoS")
    parser.add_argument("--topic", action="append", required=True, help="a filter (repeatable)")
    args = parser.parse_args()
    state = {"received": 0, "last": 0.0}

    def on_message(_c: object, _u: object, _m: paho.MQTTMessage) -> None:
        state["received"] += 1
        state["last"] = time.monotonic()

    def on_connect(client: paho.Client, *_args: object) -> None:
        client.subscribe([(topic, args.qos) for topic in args.topic])

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-counter-{time.time_ns()}")
    client.max_inflight_messages_set(1000)
    client.on_message = on_message
    client.on_connect = on_connect
    client.connect("127.0.0.1", args.port)
    stop = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    client.loop_start()
    shown = -1
    while not stop.wait(0.05):
        if state["received"] != shown:
            shown = int(state["received"])
            print(shown, state["last"], flush=True)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
