"""A fleet of simulated devices: who publishes what, on which topic, with which readings.

Deterministic from a seed. Every device speaks one payload format ingestd reads (the routes in
compose/ingest.toml and `ingestd.devtools.workload.ROUTES`):

  p4n4       sensors/<device>/<measurement>   {"v": 21.4, "ts": 1763900000.123}
  telemetry  iot/telemetry/<device>           {"device_id", "ts", "data": {temp (°F), humidity, co,
                                               lpg, smoke, light, motion}}
  ruuvi      <site>/ruuvi/<device>/data        {"temperature_c", "humidity_percent",
                                               "pressure_hpa", "battery_mv", "ts"}
  bare       devices/<device>/<metric>         412.5

Readings follow a daily cycle with noise and occasional spikes; a device sometimes misses a
reading (a dropout: nothing is published for that slot). Timestamps are strictly increasing per
series (at least 1 ms apart), so no point overwrites another in the database. A share of
messages can be replaced by malformed ones, each with the drop reason ingestd must give it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import orjson

BAD_MESSAGES = [  # (topic, payload, the drop reason ingestd must give it)
    ("sensors/dev-1/temperature", b'{"v": 22.5', "invalid_json"),
    ("sensors/dev-1/temperature", b'{"value": 22.5}', "schema_mismatch"),
    ("sensors/dev-1/temperature", b"\xff\xfe", "invalid_value"),  # not UTF-8
    ("sensors/dev-1/temperature", b'{"v": 1, "ts": "soon"}', "invalid_timestamp"),
    ("sensors/dev-1", b"22.5", "unknown_topic"),
    ("iot/telemetry/edge-1", b'{"device_id": "x", "data": "not an object"}', "schema_mismatch"),
    ("iot/telemetry/edge-1", b'{"data": {"temp": "hot"}}', "field_type_conflict"),
]


FORMATS = ("p4n4", "telemetry", "ruuvi", "bare")
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Signal:
    """base + amplitude · daily sine + noise, with a rare spike."""

    base: float
    amplitude: float
    noise: float
    phase: float
    digits: int = 2

    def at(self, t_s: float, rng: random.Random, spike_share: float) -> float:
        value = self.base + self.amplitude * math.sin(2 * math.pi * (t_s / DAY_S + self.phase))
        value += rng.gauss(0.0, self.noise)
        if rng.random() < spike_share:
            value += self.amplitude * rng.choice((-4.0, 4.0))
        return round(value, self.digits)


# measurement -> (base, daily amplitude, noise, digits)
SIGNALS = {
    "temperature": (21.0, 3.0, 0.15, 2),
    "humidity": (48.0, 8.0, 0.8, 1),
    "pressure": (1008.0, 4.0, 0.3, 1),
    "co2": (620.0, 180.0, 15.0, 0),
    "temp_f": (72.0, 5.0, 0.3, 1),
    "co": (0.004, 0.001, 0.0002, 5),
    "lpg": (0.007, 0.002, 0.0004, 5),
    "smoke": (0.019, 0.004, 0.001, 5),
    "battery_mv": (2950.0, 5.0, 3.0, 0),
}
P4N4_MEASUREMENTS = ("temperature", "humidity", "pressure")
BARE_METRICS = ("co2", "pressure")
TELEMETRY_READINGS = ("temp_f", "humidity", "co", "lpg", "smoke")
RUUVI_READINGS = ("temperature", "humidity", "pressure", "battery_mv")


@dataclass(slots=True)
class Device:
    name: str
    format: str
    signals: dict[str, Signal]
    topics: list[bytes]  # p4n4 / bare: one per measurement, used in turn
    turn: int = 0
    last_ms: int = 0  # the newest timestamp given to any of its series

    def timestamp_ms(self, now_ms: int) -> int:
        # one clock per device keeps every series of it strictly increasing
        self.last_ms = max(now_ms, self.last_ms + 1)
        return self.last_ms


@dataclass(frozen=True, slots=True)
class Message:
    topic: bytes
    payload: bytes
    format: str  # a device format, or "malformed"
    reason: str | None = None  # the drop reason ingestd must give a malformed message


def _device(index: int, fmt: str, rng: random.Random) -> Device:
    def signal(name: str) -> Signal:
        base, amplitude, noise, digits = SIGNALS[name]
        return Signal(base * rng.uniform(0.95, 1.05), amplitude, noise, rng.random(), digits)

    if fmt == "p4n4":
        name = f"dev-{index:05d}"
        topics = [f"sensors/{name}/{m}".encode() for m in P4N4_MEASUREMENTS]
        return Device(name, fmt, {m: signal(m) for m in P4N4_MEASUREMENTS}, topics)
    if fmt == "telemetry":
        name = f"edge-{index:05d}"
        topic = f"iot/telemetry/{name}".encode()
        return Device(name, fmt, {m: signal(m) for m in TELEMETRY_READINGS}, [topic])
    if fmt == "ruuvi":
        name = f"tag-{index:05d}"
        site = ("home", "garage", "barn")[index % 3]
        topic = f"{site}/ruuvi/{name}/data".encode()
        return Device(name, fmt, {m: signal(m) for m in RUUVI_READINGS}, [topic])
    name = f"bare-{index:05d}"
    topics = [f"devices/{name}/{m}".encode() for m in BARE_METRICS]
    return Device(name, fmt, {m: signal(m) for m in BARE_METRICS}, topics)


def _json(body: object) -> bytes:
    # orjson's result keeps its 4 KB working buffer (tracemalloc: 4,089 B per 30-byte payload);
    # a pre-encoded million-message run would need 4 GB. An exact-size copy costs 0.1 µs.
    return memoryview(orjson.dumps(body)).tobytes()


class Fleet:
    """`devices` devices; `fmt` one of FORMATS or "mixed" (formats in turn by device index)."""

    def __init__(
        self,
        devices: int,
        fmt: str = "mixed",
        *,
        seed: int = 1,
        malformed_share: float = 0.0,
        dropout_share: float = 0.001,
        spike_share: float = 0.0005,
        outage_every_s: float = 0.0,
        outage_s: float = 0.0,
    ) -> None:
        if not 1 <= devices <= 100_000:
            raise ValueError("devices must be between 1 and 100,000")
        if fmt != "mixed" and fmt not in FORMATS:
            raise ValueError(f"format must be mixed or one of {', '.join(FORMATS)}")
        self.rng = random.Random(seed)
        self.devices = [
            _device(i, FORMATS[i % len(FORMATS)] if fmt == "mixed" else fmt, self.rng)
            for i in range(devices)
        ]
        self.malformed_share = malformed_share
        # A type conflict needs the field seen first with its real type: only with telemetry
        # devices in the fleet, and malformed messages only after every device spoke once.
        formats = {d.format for d in self.devices}
        self.bad = [
            bad for bad in BAD_MESSAGES if bad[2] != "field_type_conflict" or "telemetry" in formats
        ]
        self.dropout_share = dropout_share
        self.spike_share = spike_share
        self.cursor = 0
        self.dropouts = 0
        # outages: every outage_every_s one device goes quiet for outage_s (the demo's silence
        # alert needs one within minutes); p4n4 devices first, whose measurements it watches
        self.outage_every_ms = int(outage_every_s * 1000)
        self.outage_ms = int(outage_s * 1000)
        self.outages = 0
        self.silenced = 0  # messages not sent for an outage
        self._quiet_until: dict[int, int] = {}
        self._next_outage_ms: int | None = None
        p4n4 = [i for i, d in enumerate(self.devices) if d.format == "p4n4"]
        self._outage_candidates = p4n4 or list(range(len(self.devices)))
        self._encoders: dict[str, Callable[[Device, int], tuple[bytes, bytes]]] = {
            "p4n4": self._p4n4,
            "telemetry": self._telemetry,
            "ruuvi": self._ruuvi,
            "bare": self._bare,
        }

    def take(self, count: int, now_ms: int) -> list[Message]:
        """The next `count` messages, devices in turn; dropouts are skipped, not replaced."""
        out: list[Message] = []
        rng = self.rng
        devices = self.devices
        n = len(devices)
        if self.outage_every_ms:
            self._start_outage(now_ms)
        quiet = self._quiet_until
        for _ in range(count):
            index = self.cursor % n
            device = devices[index]
            self.cursor += 1
            if quiet and quiet.get(index, 0) > now_ms:
                self.silenced += 1
                continue
            draw = rng.random()
            if draw < self.dropout_share:
                self.dropouts += 1
                continue
            if draw < self.dropout_share + self.malformed_share and self.cursor > n:
                bad_topic, bad_payload, reason = self.bad[rng.randrange(len(self.bad))]
                out.append(Message(bad_topic.encode(), bad_payload, "malformed", reason))
                continue
            topic, payload = self._encoders[device.format](device, now_ms)
            out.append(Message(topic, payload, device.format))
        return out

    def _start_outage(self, now_ms: int) -> None:
        if self._next_outage_ms is None:
            self._next_outage_ms = now_ms + self.outage_every_ms
        elif now_ms >= self._next_outage_ms:
            candidates = self._outage_candidates
            victim = candidates[self.outages % len(candidates)]
            self._quiet_until[victim] = now_ms + self.outage_ms
            self.outages += 1
            self._next_outage_ms = now_ms + self.outage_every_ms

    def take_published(self, count: int, now_ms: int) -> list[Message]:
        """Exactly `count` messages: dropouts are made up by the next devices in turn."""
        out: list[Message] = []
        while len(out) < count:
            out += self.take(count - len(out), now_ms)
        return out

    def _value(self, device: Device, name: str, t_s: float) -> float:
        return device.signals[name].at(t_s, self.rng, self.spike_share)

    def _p4n4(self, device: Device, now_ms: int) -> tuple[bytes, bytes]:
        turn = device.turn % len(P4N4_MEASUREMENTS)
        device.turn += 1
        ms = device.timestamp_ms(now_ms)
        value = self._value(device, P4N4_MEASUREMENTS[turn], ms / 1000)
        return device.topics[turn], _json({"v": value, "ts": ms / 1000})

    def _telemetry(self, device: Device, now_ms: int) -> tuple[bytes, bytes]:
        ms = device.timestamp_ms(now_ms)
        t_s = ms / 1000
        data = {name: self._value(device, name, t_s) for name in device.signals}
        data["temp"] = data.pop("temp_f")
        data["light"] = math.sin(2 * math.pi * (t_s / DAY_S - 0.25)) > 0  # daylight
        data["motion"] = self.rng.random() < 0.05
        body = {"device_id": device.name, "ts": t_s, "data": data}
        return device.topics[0], _json(body)

    def _ruuvi(self, device: Device, now_ms: int) -> tuple[bytes, bytes]:
        ms = device.timestamp_ms(now_ms)
        t_s = ms / 1000
        body = {
            "temperature_c": self._value(device, "temperature", t_s),
            "humidity_percent": self._value(device, "humidity", t_s),
            "pressure_hpa": self._value(device, "pressure", t_s),
            "battery_mv": int(self._value(device, "battery_mv", t_s)),
            "ts": ms,
        }
        return device.topics[0], _json(body)

    def _bare(self, device: Device, now_ms: int) -> tuple[bytes, bytes]:
        turn = device.turn % len(BARE_METRICS)
        device.turn += 1
        value = self._value(device, BARE_METRICS[turn], now_ms / 1000)
        return device.topics[turn], repr(value).encode()
