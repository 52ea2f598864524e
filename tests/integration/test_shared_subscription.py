"""Scale-out (issue 12 item 6): three ingestd instances on one shared subscription
(`$share/ingestd/sensors/#`) against a real Mosquitto at QoS 1 share the load, and every message
is stored; one of them killed with SIGKILL and restarted loses nothing, because its persistent
session keeps what it had not acked (Mosquitto never moves a dead member's messages to the
others: mosquitto issue #2662) and hands it back when it returns. A message redelivered after
the kill is written again as the same point (same series and time): stored once by count."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingestd.devtools.daemon import Ingestd
from ingestd.devtools.servers import InfluxDB1, Mosquitto
from ingestd.devtools.workload import Expected, publish

pytestmark = pytest.mark.integration

SHARED = ["$share/ingestd/sensors/#"]
ROUTES = [{"topic": "sensors/{device}/{measurement}"}]
COUNT = 3000


def _messages(start: int, count: int) -> list[Expected]:
    return [
        Expected(
            f"sensors/dev-{i % 50}/t", f'{{"v": {i}, "ts": {1_700_000_000 + i}}}'.encode(), "m"
        )
        for i in range(start, start + count)
    ]


def test_three_members_store_every_message_once_across_a_sigkill(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    members = []
    for n in range(3):
        workdir = tmp_path / f"member-{n}"
        workdir.mkdir()
        member = Ingestd(
            workdir,
            mosquitto,
            influxdb1.influx_settings(),
            SHARED,
            ROUTES,
            mqtt={"client_id": f"ingestd-{n}"},  # stable ids: persistent sessions
        )
        member.start()
        members.append(member)
    try:
        publish(_messages(0, COUNT // 2), "127.0.0.1", mosquitto.port)
        members[1].kill()  # SIGKILL, mid-stream: what it held unacked stays in its session
        publish(_messages(COUNT // 2, COUNT // 2), "127.0.0.1", mosquitto.port)
        members[1].start()  # the same client id: its session, and what waited in it, returns
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(influxdb1.points()) < COUNT:
            time.sleep(0.5)
        received = [m.metrics().get("ingestd_messages_received_total", 0) for m in members]
    finally:
        for member in members:
            if member.proc is not None and member.proc.poll() is None:
                member.stop()
    stored = influxdb1.points()
    values = sorted(p["fields"]["value"] for p in stored)
    assert values == [float(i) for i in range(COUNT)]  # every one, once
    assert received[0] > 0 and received[2] > 0  # the group shared the load
