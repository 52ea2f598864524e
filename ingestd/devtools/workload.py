"""A mixed workload shared by tests and by hand: every payload format, a share of bad messages,
and the exact points (or drop reasons) each message must become.

    python -m ingestd.devtools.workload --port 1883 --count 10000 --bad-ratio 0.05
publishes it at QoS 1 and prints what was sent, per format and per expected drop reason.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingestd.sim.fleet import BAD_MESSAGES

BASE_S = 1_700_000_000

# The routes the workload is written for (the same as in compose/ingest.toml).
ROUTES: list[dict[str, Any]] = [
    {"topic": "sensors/{device}/{measurement}", "format": "value"},
    {
        "topic": "iot/telemetry/{device}",
        "format": "object",
        "measurement": "telemetry",
        "readings": "data",
        "tag_keys": ["device_id"],
        "units": {"temp": "degF -> degC"},
    },
    {
        "topic": "devices/{device_id}/{metric}",
        "format": "value",
        "measurement": "{metric}",
        "time_key": "",  # bare values carry no time: receive time, not counted as missing
    },
    {
        "topic": "{site}/{system}/{device}/data",
        "format": "object",
        "measurement": "ruuvi",
        "units": {"battery_mv": "mV -> V"},
    },
]
TOPICS = ["sensors/#", "iot/telemetry/+", "devices/+/+", "+/+/+/data"]


@dataclass
class Expected:
    topic: str
    payload: bytes
    kind: str
    measurement: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, float | bool] = field(default_factory=dict)
    time_ns: int | None = None  # None: the receive time
    reason: str | None = None  # set for a message that must be dead-lettered


def _good(i: int, rng: random.Random) -> Expected:
    kind = ("value", "value_ms", "bare", "telemetry", "ruuvi")[i % 5]
    if kind == "value":
        v = round(rng.uniform(-20, 40), 2)
        return Expected(
            f"sensors/dev-{i % 50}/temperature",
            orjson.dumps({"v": v, "ts": BASE_S + i}),
            kind,
            "temperature",
            {"device": f"dev-{i % 50}"},
            {"value": v},
            (BASE_S + i) * 10**9,
        )
    if kind == "value_ms":
        v = rng.randint(0, 100)  # an int on the wire, stored as float: one type per field
        ms = BASE_S * 1000 + i
        return Expected(
            f"sensors/dev-{i % 50}/humidity",
            orjson.dumps({"v": v, "ts": ms}),
            kind,
            "humidity",
            {"device": f"dev-{i % 50}"},
            {"value": float(v)},
            ms * 10**6,
        )
    if kind == "bare":
        v = round(rng.uniform(0, 1000), 3)
        return Expected(
            f"devices/bare-{i}/pressure",
            str(v).encode(),
            kind,
            "pressure",
            {"device_id": f"bare-{i}"},
            {"value": v},
            None,
        )
    if kind == "telemetry":
        f = round(rng.uniform(50, 100), 1)
        mac = f"00:0f:00:70:91:{i % 256:02x}"
        data = {"temp": f, "humidity": 51.0, "co": 0.0045, "light": bool(i % 2), "motion": False}
        ts = BASE_S + i + 0.25
        return Expected(
            f"iot/telemetry/edge-{i % 20}",
            orjson.dumps({"device_id": mac, "ts": ts, "data": data}),
            kind,
            "telemetry",
            {"device": f"edge-{i % 20}", "device_id": mac},
            {
                "temp": (f - 32) * 5 / 9,
                "humidity": 51.0,
                "co": 0.0045,
                "light": bool(i % 2),
                "motion": False,
            },
            (BASE_S + i) * 10**9 + 250_000_000,
        )
    mv = rng.randint(2000, 3100)
    ms = BASE_S * 1000 + i
    body = {
        "temperature_c": 21.5,
        "humidity_percent": 40.0,
        "pressure_hpa": 1001.2,
        "battery_mv": mv,
        "ts": ms,
    }
    return Expected(
        f"paku/ruuvi/tag-{i % 10}/data",
        orjson.dumps(body),
        kind,
        "ruuvi",
        {"site": "paku", "system": "ruuvi", "device": f"tag-{i % 10}"},
        {
            "temperature_c": 21.5,
            "humidity_percent": 40.0,
            "pressure_hpa": 1001.2,
            "battery_mv": mv / 1000,
        },
        ms * 10**6,
    )


def workload(count: int, bad_ratio: float = 0.05, seed: int = 1) -> list[Expected]:
    rng = random.Random(seed)
    bad_every = round(1 / bad_ratio) if bad_ratio > 0 else 0
    out = []
    for i in range(count):
        if bad_every and i % bad_every == bad_every - 1:
            topic, payload, reason = BAD_MESSAGES[(i // bad_every) % len(BAD_MESSAGES)]
            out.append(Expected(topic, payload, "bad", reason=reason))
        else:
            out.append(_good(i, rng))
    return out


def publish(
    messages: list[Expected],
    host: str,
    port: int,
    qos: int = 1,
    *,
    timeout_s: float = 120,
    max_inflight: int = 200,
) -> None:
    """Publish in order and wait until the broker acknowledged every message (QoS 1).
    `max_inflight`: how many may await the broker's ack at once (stay within the broker's
    window at QoS 2: Mosquitto 2.0.11 stalls QoS 2 delivery beyond it)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"ingestd-workload-{random.random()}"
    )
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    try:
        # packet ids are 16-bit: keep well under 65,535 messages outstanding
        for start in range(0, len(messages), 20_000):
            infos = [
                client.publish(m.topic, m.payload, qos=qos)
                for m in messages[start : start + 20_000]
            ]
            for info in infos:
                info.wait_for_publish(timeout=timeout_s)
                if not info.is_published():
                    raise TimeoutError("the broker did not acknowledge every message")
    finally:
        client.disconnect()
        client.loop_stop()


def publish_paced(
    messages: list[Expected], host: str, port: int, rate_per_s: float, timeout_s: float = 300
) -> None:
    """Publish at QoS 1, `rate_per_s` messages a second, riding out broker restarts: a fixed client
    id and a persistent session, so paho resends what the broker had not acknowledged. Returns
    once the broker acknowledged every message (counted in on_publish: paho's wait_for_publish
    raises for messages queued while disconnected, though it sends them after reconnecting)."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    acked = 0
    all_acked = threading.Event()

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= len(messages):
            all_acked.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"ingestd-paced-{port}", clean_session=False
    )
    client.on_publish = on_publish
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    client.connect(host, port)
    client.loop_start()
    try:
        started = time.monotonic()
        for i, message in enumerate(messages):
            delay = started + i / rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            client.publish(message.topic, message.payload, qos=1)
        if not all_acked.wait(timeout_s):
            raise TimeoutError(f"the broker acknowledged {acked} of {len(messages)} messages")
    finally:
        client.disconnect()
        client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ingestd.devtools.workload", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--bad-ratio", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    messages = workload(args.count, args.bad_ratio, args.seed)
    publish(messages, args.host, args.port)
    kinds = Counter(m.kind for m in messages)
    reasons = Counter(m.reason for m in messages if m.reason)
    print(f"published {len(messages)} messages at QoS 1: {dict(kinds)}")
    print(f"expected dead letters by reason: {dict(reasons)}")


if __name__ == "__main__":
    main()
