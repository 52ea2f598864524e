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
- Skipped: NDEATH and DDEATH (the node or device goes offline), NCMD/DCMD commands, and the
  JSON `STATE` topic of Sparkplug 3.0 host applications.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.message import DecodeError

from ingestd.errors import DropReason, MessageRejected
from ingestd.formats.base import Format, FormatInput, Sample, Samples
from ingestd.formats.sparkplug_b_pb2 import Payload  # type: ignore[attr-defined]

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


class State:
    """The alias maps of every node and device seen, bounded: scope -> alias -> (name,
    datatype), and scope -> name -> datatype for metrics sent by name alone."""

    def __init__(self, max_scopes: int = MAX_SCOPES, max_aliases: int = MAX_ALIASES) -> None:
        self.aliases: dict[Scope, dict[int, tuple[str, int]]] = {}
        self.types: dict[Scope, dict[str, int]] = {}
        self.max_scopes = max_scopes
        self.max_aliases = max_aliases
        self.changed = False

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

    def resolve(self, scope: Scope, metric: Any) -> tuple[str, int]:
        if metric.name:
            known = self.types.get(scope, {}).get(metric.name, 0)
            return metric.name, metric.datatype or known
        found = self.aliases.get(scope, {}).get(metric.alias) if metric.HasField("alias") else None
        if found is None:
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


def _parse(payload: bytes) -> Any:
    message = Payload()
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
    if kind not in ("NBIRTH", "DBIRTH", "NDATA", "DDATA") or (device == "") != (kind[0] == "N"):
        return None  # deaths, commands, and malformed topics
    state = message.state
    assert isinstance(state, State)
    payload = _parse(message.payload)
    scope = (group, node, device)
    metrics = list(payload.metrics)
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
        name, datatype = state.resolve(scope, metric)
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
