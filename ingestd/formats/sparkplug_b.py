"""Sparkplug B, read as a host application: protobuf payloads on `spBv1.0/<group>/<type>/<node>[/<device>]`.

- Topic: `spBv1.0/#`. Measurement `sparkplug`; tags `group_id`, `edge_node_id` and, for device
  messages, `device_id`. Each metric is a field named after the metric (`Inputs/A`,
  `Supply Voltage`); metrics with different timestamps become different points.
- NBIRTH and DBIRTH define each metric's alias and datatype for that node or device (an NBIRTH
  starts a new session: it clears the node's devices too). They are stored like data, since a
  birth carries current values. NDATA and DDATA metrics may name only their alias: it is
  resolved through the births. The alias maps are kept in `State`, which the service saves
  under `state.path` whenever a birth changes them, so a restart between a DBIRTH and its DDATA
  loses nothing. A metric whose alias no birth defined makes the message a dead letter
  (`schema_mismatch`, naming the alias), kept for replay once the birth has arrived.
- Values: signed integers (Int8/16/32 in `int_value`, Int64 in `long_value`) are read as two's
  complement; Float is float32, as sent; DateTime is epoch ms; String, Text and UUID are
  strings. `is_null` is no reading. DataSet, Template, Bytes, File, PropertySet and array
  metrics are not time series and are left out, and so are `bdSeq` and the boolean
  `Node Control/*` command endpoints (`Rebirth`, `Reboot`); `Node Control/Scan Rate` is kept.
- Time: the metric's `timestamp`, else the payload's (epoch ms), else the receive time.
  `is_historical` metrics are stored at their own time like any other.
- Sessions: an edge node is online from its NBIRTH to the NDEATH carrying the same `bdSeq` (a
  stale NDEATH, the broker's will of an older session, changes nothing). Every message of the
  session carries `seq` 0-255; one that does not follow the last is counted (`State.seq_gaps`).
  With `request_rebirth = true` on the route, an unknown alias, a seq gap or DATA from a node
  never born makes ingestd publish an NCMD `Node Control/Rebirth` (QoS 0, not retained) to
  that node, at most once per node every 30 s; the node answers with fresh births.
- Skipped: NDEATH and DDEATH (the node or device goes offline), NCMD/DCMD commands, and the
  JSON `STATE` topic of Sparkplug 3.0 host applications.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from ingestd.errors import DropReason, MessageRejected
from ingestd.formats.base import Format, FormatInput, Sample, Samples


@functools.cache
def payload_class() -> Any:
    """The generated protobuf Payload, imported on first use: protobuf costs ~2.5 MB of RSS,
    which a deployment without Sparkplug routes should not pay."""
    from ingestd.formats.sparkplug_b_pb2 import Payload  # type: ignore[attr-defined]

    return Payload


NAMESPACE = "spBv1.0"
MAX_SCOPES = 10_000  # nodes and devices remembered
MAX_ALIASES = 10_000  # aliases per node or device

# datatype -> (bits, signed) for the integer types; the spec carries them unsigned on the wire
_INTEGERS = {
    1: (8, True),
    2: (16, True),
    3: (32, True),
    4: (64, True),
    5: (8, False),
    6: (16, False),
    7: (32, False),
    8: (64, False),
    13: (64, False),
}
_SCALARS = {9, 10, 11, 12, 14, 15, *_INTEGERS}  # float, double, boolean, string, text, uuid
_COMMANDS = ("Node Control/", "Device Control/")
_BOOLEAN = 11

Scope = tuple[str, str, str]  # group, edge node, device ("" for the node itself)
Node = tuple[str, str]  # group, edge node
REBIRTH_INTERVAL_NS = 30 * 10**9  # at most one rebirth request per node this often


@dataclass(slots=True)
class Session:
    """An edge node's session as a host sees it: online from NBIRTH to the NDEATH carrying the
    same bdSeq, with `seq` counting every message of the session (0-255, wrapping)."""

    online: bool = True
    bd_seq: int | None = None
    next_seq: int | None = None
    last_rebirth_ns: int = -REBIRTH_INTERVAL_NS


class State:
    """The alias maps of every node and device seen, bounded: scope -> alias -> (name,
    datatype), and scope -> name -> datatype for metrics sent by name alone."""

    def __init__(self, max_scopes: int = MAX_SCOPES, max_aliases: int = MAX_ALIASES) -> None:
        self.aliases: dict[Scope, dict[int, tuple[str, int]]] = {}
        self.types: dict[Scope, dict[str, int]] = {}
        self.max_scopes = max_scopes
        self.max_aliases = max_aliases
        self.changed = False
        self.sessions: dict[Node, Session] = {}
        self.outbox: list[tuple[str, bytes]] = []
        self.seq_gaps = 0  # messages of a session that did not follow the one before

    def _session(self, node: Node) -> Session | None:
        session = self.sessions.get(node)
        if session is None and len(self.sessions) < self.max_scopes:
            session = self.sessions[node] = Session(online=False)
        return session

    def node_birth(self, node: Node, seq: int | None, bd_seq: int | None) -> None:
        session = self._session(node)
        if session is not None:
            session.online, session.bd_seq = True, bd_seq
            session.next_seq = None if seq is None else (seq + 1) % 256

    def node_death(self, node: Node, bd_seq: int | None) -> None:
        """Offline, unless the NDEATH is a stale one: the broker's will of an older session
        (its bdSeq is not this session's)."""
        session = self.sessions.get(node)
        if session is not None and (bd_seq is None or session.bd_seq in (None, bd_seq)):
            session.online = False

    def follow(self, node: Node, seq: int | None, now_ns: int) -> None:
        """A message of a session after its NBIRTH: a seq that does not follow the last one
        means messages were lost, and a node never born has no aliases: ask for a rebirth."""
        session = self._session(node)
        if session is None or seq is None:
            return
        if session.next_seq is None or seq != session.next_seq:
            self.seq_gaps += session.next_seq is not None
            self.want_rebirth(node, now_ns)
        session.next_seq = (seq + 1) % 256

    def want_rebirth(self, node: Node, now_ns: int) -> None:
        """Queue an NCMD `Node Control/Rebirth`, at most once per node per interval."""
        session = self._session(node)
        if session is None or now_ns - session.last_rebirth_ns < REBIRTH_INTERVAL_NS:
            return
        session.last_rebirth_ns = now_ns
        request = payload_class()(timestamp=now_ns // 1_000_000)
        request.metrics.add(name="Node Control/Rebirth", datatype=_BOOLEAN, boolean_value=True)
        self.outbox.append((f"{NAMESPACE}/{node[0]}/NCMD/{node[1]}", request.SerializeToString()))

    def birth(self, scope: Scope, metrics: list[Any]) -> None:
        if scope[2] == "":  # a node's new session: its devices' births are void
            for known in [s for s in self.aliases if s[:2] == scope[:2]]:
                del self.aliases[known]
                self.types.pop(known, None)
        if scope not in self.aliases and len(self.aliases) >= self.max_scopes:
            raise MessageRejected(
                DropReason.LIMIT_EXCEEDED, f"more than {self.max_scopes} Sparkplug nodes/devices"
            )
        aliases: dict[int, tuple[str, int]] = {}
        types: dict[str, int] = {}
        for metric in metrics[: self.max_aliases]:
            if metric.name:
                types[metric.name] = metric.datatype
                if metric.HasField("alias"):
                    aliases[metric.alias] = (metric.name, metric.datatype)
        if self.aliases.get(scope) != aliases or self.types.get(scope) != types:
            self.aliases[scope], self.types[scope] = aliases, types
            self.changed = True

    def resolve(self, scope: Scope, metric: Any, now_ns: int) -> tuple[str, int]:
        if metric.name:
            known = self.types.get(scope, {}).get(metric.name, 0)
            return metric.name, metric.datatype or known
        found = self.aliases.get(scope, {}).get(metric.alias) if metric.HasField("alias") else None
        if found is None:
            self.want_rebirth(scope[:2], now_ns)
            raise MessageRejected(
                DropReason.SCHEMA_MISMATCH,
                f"metric alias {metric.alias} of {'/'.join(s for s in scope if s)} has no birth "
                "yet (NBIRTH/DBIRTH defines it)",
            )
        return found[0], metric.datatype or found[1]

    def to_json(self) -> bytes:
        return orjson.dumps(
            [
                {
                    "scope": list(scope),
                    "aliases": [[a, n, t] for a, (n, t) in aliases.items()],
                    "types": self.types.get(scope, {}),
                }
                for scope, aliases in self.aliases.items()
            ]
        )

    def load_json(self, data: bytes) -> None:
        for entry in orjson.loads(data)[: self.max_scopes]:
            group, node, device = (str(part) for part in entry["scope"])
            scope = (group, node, device)
            self.aliases[scope] = {int(a): (str(n), int(t)) for a, n, t in entry["aliases"]}
            self.types[scope] = {str(n): int(t) for n, t in entry["types"].items()}


def metric_value(metric: Any, datatype: int) -> Any:
    """A metric's value as a reading, or None when it is not a time series value."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if kind is None or datatype not in _SCALARS:
        return None
    value = getattr(metric, kind)
    if datatype in _INTEGERS and isinstance(value, int):
        bits, signed = _INTEGERS[datatype]
        value &= (1 << bits) - 1
        if signed and value >= 1 << (bits - 1):
            value -= 1 << bits
    return value


_SESSION_MESSAGES = ("NBIRTH", "DBIRTH", "NDATA", "DDATA", "NDEATH", "DDEATH")


def _bd_seq(metrics: list[Any]) -> int | None:
    for metric in metrics:
        if metric.name == "bdSeq" and metric.WhichOneof("value") in ("long_value", "int_value"):
            return int(getattr(metric, metric.WhichOneof("value")))
    return None


def _parse(payload: bytes) -> Any:
    from google.protobuf.message import DecodeError

    message = payload_class()()
    try:
        message.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"not a Sparkplug B payload: {exc}"
        ) from exc
    return message


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if len(levels) < 4 or levels[0] != NAMESPACE:
        return None  # spBv1.0/STATE/<host> and anything else
    group, kind, node = levels[1], levels[2], levels[3]
    device = levels[4] if len(levels) > 4 else ""
    if kind not in _SESSION_MESSAGES or (device == "") != (kind[0] == "N"):
        return None  # commands, and malformed topics
    state = message.state
    assert isinstance(state, State)
    payload = _parse(message.payload)
    scope = (group, node, device)
    metrics = list(payload.metrics)
    seq = payload.seq if payload.HasField("seq") else None
    if kind == "NDEATH":
        state.node_death((group, node), _bd_seq(metrics))
        return None  # the node is offline: not a reading
    if kind == "NBIRTH":
        state.node_birth((group, node), seq, _bd_seq(metrics))
    else:
        state.follow((group, node), seq, message.received_ns)
    if kind == "DDEATH":
        return None
    if kind.endswith("BIRTH"):
        state.birth(scope, metrics)
    tags = (
        ("group_id", group),
        ("edge_node_id", node),
        *((("device_id", device),) if device else ()),
    )
    by_time: dict[int | None, list[tuple[str, Any]]] = {}
    default_ms = payload.timestamp if payload.HasField("timestamp") else None
    for metric in metrics:
        name, datatype = state.resolve(scope, metric, message.received_ns)
        if name == "bdSeq" or (name.startswith(_COMMANDS) and datatype == _BOOLEAN):
            continue  # session bookkeeping, and the command endpoints (Rebirth, Reboot, ...)
        value = metric_value(metric, datatype)
        if value is None and not metric.is_null:
            continue  # not a time series value
        stamp_ms = metric.timestamp if metric.HasField("timestamp") else default_ms
        by_time.setdefault(stamp_ms, []).append((name, value))
    if not by_time:
        return None  # bookkeeping only (a birth of bdSeq and commands): not a measurement
    return [
        Sample("sparkplug", tags, fields, None if ms is None else ms * 1_000_000)
        for ms, fields in by_time.items()
    ]


FORMAT = Format("sparkplug_b", ("spBv1.0/#",), samples, new_state=State)
