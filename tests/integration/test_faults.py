"""Fault injection with real processes: Mosquitto, InfluxDB 1.6 and ingestd as a subprocess,
each test bounded in time. Payload-timestamped messages only, so that at-least-once redelivery
overwrites a point with itself and counts stay exact."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ingestd.deadletter import read_dead_letters
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.servers import http as http_call
from ingestd.devtools.workload import Expected, publish, publish_paced, workload

pytestmark = pytest.mark.integration


def stamped(count: int) -> list[Expected]:
    """`count` good messages that all carry their own timestamp (no receive-time points)."""
    return [m for m in workload(count * 2, bad_ratio=0) if m.time_ns is not None][:count]


def wait_for_count(db: InfluxDB1, count: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    stored = db.count()
    while stored < count and time.monotonic() < deadline:
        time.sleep(1)
        stored = db.count()
    return stored


@pytest.fixture
def window_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto with the in-flight window and persistence ingestd's config asks for."""
    broker = Mosquitto(
        tmp_path,
        listener_options="allow_anonymous true\nmax_inflight_messages 1000\n",
        persistence=True,
    )
    broker.start()
    yield broker
    broker.stop()


FAST = {"mqtt": {"max_inflight": 1000, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0}}


def test_sigkill_mid_load_loses_nothing(
    window_broker: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    messages = stamped(6000)
    ingestd = ingestd_factory(window_broker, influxdb1.influx_settings(), **FAST)
    publisher = threading.Thread(
        target=publish_paced, args=(messages, "127.0.0.1", window_broker.port, 2000)
    )
    publisher.start()
    time.sleep(1.5)
    ingestd.kill()
    time.sleep(0.5)
    ingestd.start()
    publisher.join(timeout=120)
    assert wait_for_count(influxdb1, len(messages), timeout_s=60) == len(messages)
    assert ingestd.stop() == 0


def test_broker_restart_mid_load_loses_nothing(
    window_broker: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    messages = stamped(6000)
    ingestd = ingestd_factory(window_broker, influxdb1.influx_settings(), **FAST)
    publisher = threading.Thread(
        target=publish_paced, args=(messages, "127.0.0.1", window_broker.port, 2000)
    )
    publisher.start()
    time.sleep(1.5)
    window_broker.stop()  # SIGTERM: mosquitto saves its persistence file
    time.sleep(1)
    window_broker.start()
    publisher.join(timeout=120)
    assert wait_for_count(influxdb1, len(messages), timeout_s=60) == len(messages)
    log = ingestd.log.read_text()
    assert "mqtt_disconnected" in log and log.count("mqtt_connected") >= 2
    assert ingestd.stop() == 0


def test_database_down_for_60_s_under_paced_load_loses_nothing(
    window_broker: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    rate, seconds = 2000, 75
    messages = stamped(rate * seconds)
    ingestd = ingestd_factory(window_broker, influxdb1.influx_settings(), **FAST)
    publisher = threading.Thread(
        target=publish_paced, args=(messages, "127.0.0.1", window_broker.port, rate, 400)
    )
    publisher.start()
    time.sleep(5)
    influxdb1.stop()
    time.sleep(60)
    during = ingestd.metrics()
    influxdb1.start()
    publisher.join(timeout=300)
    assert wait_for_count(influxdb1, len(messages), timeout_s=180) == len(messages)
    after = ingestd.metrics()
    assert ingestd.stop() == 0
    assert during["ingestd_mqtt_connected"] == 1  # no disconnect loop while the database is away
    assert during["ingestd_buffer_lines"] <= 1000
    assert sum(v for k, v in after.items() if k.startswith("ingestd_messages_dropped_total")) == 0


class FaultyProxy(ThreadingHTTPServer):
    """Forwards /write to the real database, but answers a seeded-random 20% of requests 503 and
    10% 429 (Retry-After: 1) without forwarding them. Random, not every n-th: a fixed period
    phase-locks with the bisection's request sequence, which real outages do not."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests = 0
        self.injected: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.random = random.Random(7)
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: FaultyProxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.requests += 1
            draw = self.server.random.random()
        if draw < 0.3:
            status = 503 if draw < 0.2 else 429
            self.server.injected[status] += 1
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            return
        request = urllib.request.Request(self.server.target + self.path, data=body, method="POST")
        request.add_header("Content-Type", "text/plain")
        status, answer = http_forward(request)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: Any) -> None:
        pass


def http_forward(request: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_400_costs_only_bad_lines_and_429_503_only_delay(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, ingestd_factory: Any
) -> None:
    # a measurement whose `value` field already exists as a string: ingestd's floats conflict
    status, _ = http_call(
        "POST",
        f"{influxdb1.url}/write?db=sensors&precision=s",
        b'conflicted,device=seed value="text" 1700000000',
    )
    assert status == 204
    proxy = FaultyProxy(influxdb1.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        good = stamped(2000)
        bad = [
            Expected(
                f"sensors/dev-{i}/conflicted",
                f'{{"v": 1.5, "ts": {1700000000 + i}}}'.encode(),
                "bad",
                reason="rejected_by_sink",
            )
            for i in range(20)
        ]
        ingestd = ingestd_factory(
            mosquitto,
            {**influxdb1.influx_settings(), "url": proxy.url},
            batch={"max_lines": 500, "retry_initial_s": 0.05, "retry_max_s": 0.5},
        )
        publish(good[:1000] + bad + good[1000:], "127.0.0.1", mosquitto.port)
        metrics = ingestd.wait_settled(2020, timeout_s=120)
        assert ingestd.stop() == 0
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proxy.injected[503] > 0 and proxy.injected[429] > 0
    # each failed write was retried in place or moved to the spool and replayed from there
    retried = metrics['ingestd_write_batches_total{outcome="retried"}']
    assert retried + metrics["ingestd_points_spooled_total"] > 0
    stored = Counter(p["measurement"] for p in influxdb1.points())
    # the seed, alone in its measurement: none of the refused float lines got in
    assert stored == Counter(m.measurement for m in good) + Counter(conflicted=1)
    seed = influxdb1.query("SELECT count(value) FROM conflicted")["results"][0]["series"][0]
    assert seed["values"][0][1] == 1
    letters = read_dead_letters(ingestd.deadletters)
    assert sorted(letter.topic for letter in letters) == sorted(m.topic for m in bad)
    assert {letter.reason for letter in letters} == {"rejected_by_sink"}
