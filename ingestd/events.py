"""Device events (issue 14 item 3): the first sighting of a device publishes
`ingestd/events/device_new` with its route, tags and first fields, once per device, across
restarts. That is the input of n8n's device-onboarding workflow.

A device is a value of a route's identity level (its `identity`, {device} by default) that the
route has not announced before. Detection costs nothing per message: the cardinality guard
reports the first series of an identity in this process, and only then is the registry asked.
An announcement is remembered once the broker acked its publication (through the outbox), and
the registry is saved at most once a second and at shutdown: a crash before that announces the
device again after the restart (at least once, never lost). It holds at most one entry per
device a route admitted, so the series limits bound it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from ingestd.outbox import Outbox
from ingestd.records import Point
from ingestd.timestamps import ns_to_iso

DEVICE_NEW = "ingestd/events/device_new"


class DeviceRegistry:
    """The devices each route announced (statefiles.Remembered: `changed`, JSON)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.announced: dict[str, set[str]] = {}  # route's topic template -> identities
        self._pending: set[tuple[str, str]] = set()  # queued, not acked yet
        self.changed = False
        self.on_change: Callable[[], None] | None = None  # the service's save trigger

    def seen(self, route: str, identity: str, point: Point) -> None:
        """A route admitted the first series of `identity` in this process: announce it unless
        it was announced before (or is being)."""
        key = (route, identity)
        if identity in self.announced.get(route, ()) or key in self._pending:
            return
        self._pending.add(key)
        event = {
            "event": "device_new",
            "route": route,
            "device": identity,
            "measurement": point.measurement,
            "tags": dict(point.tags),
            "fields": dict(point.fields),
            "time": ns_to_iso(point.time_ns),
            "published_ns": time.time_ns(),
        }
        self.outbox.put(DEVICE_NEW, orjson.dumps(event), lambda: self._announced(key))

    def _announced(self, key: tuple[str, str]) -> None:
        self._pending.discard(key)
        self.announced.setdefault(key[0], set()).add(key[1])
        self.changed = True
        if self.on_change is not None:
            self.on_change()

    # -- persistence (statefiles.Remembered) ----------------------------------------------------

    def to_json(self) -> bytes:
        return orjson.dumps({route: sorted(ids) for route, ids in self.announced.items()})

    def load_json(self, data: bytes) -> None:
        for route, identities in orjson.loads(data).items():
            self.announced.setdefault(str(route), set()).update(str(i) for i in identities)
