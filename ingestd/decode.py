"""Raw bytes to JSON values (orjson), what counts as no reading, and the pydantic envelope of
the `value` format."""

from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    create_model,
)

from ingestd.errors import DropReason, MessageRejected

FiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Scalar = (
    Annotated[bool, Strict()] | Annotated[int, Strict()] | FiniteFloat | Annotated[str, Strict()]
)
TimeValue = Annotated[int, Strict()] | FiniteFloat | Annotated[str, Strict()] | None

# The one list of what means "no reading" (ESPHome nan/None, Home Assistant unavailable/unknown,
# an empty payload, JSON null). A field holding one is skipped, never stored and never allowed to
# decide the field's type; a message holding nothing else is ignored, not an error.
NO_READING_TOKENS = frozenset(
    {
        "",
        "nan",
        "-nan",
        "none",
        "null",
        "inf",
        "-inf",
        "+inf",
        "infinity",
        "-infinity",
        "unavailable",
        "unknown",
    }
)
_LONGEST_TOKEN = max(len(token) for token in NO_READING_TOKENS)
MAX_DEPTH = 8


def is_absent(value: object) -> bool:
    """Whether a payload value means "no reading" rather than being one."""
    if value is None:
        return True
    if isinstance(value, str):
        return len(value) <= _LONGEST_TOKEN + 2 and value.strip().lower() in NO_READING_TOKENS
    return isinstance(value, float) and not math.isfinite(value)


def flatten(
    node: dict[str, Any] | list[Any],
    prefix: str,
    out: list[tuple[str, Any]],
    max_readings: int,
    depth: int = 1,
) -> None:
    """Nested objects and arrays as dotted names (`a.b`, `a.0`) into `out`, at most
    `max_readings` of them and MAX_DEPTH deep, so a hostile payload costs bounded work."""
    if depth > MAX_DEPTH:
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"nesting deeper than {MAX_DEPTH} at {prefix!r}"
        )
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict | list):
            flatten(value, name, out, max_readings, depth + 1)
        else:
            out.append((name, value))
            if len(out) > max_readings:
                raise MessageRejected(
                    DropReason.LIMIT_EXCEEDED, f"more than limits.max_readings = {max_readings}"
                )


def parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MessageRejected(DropReason.INVALID_JSON, str(exc)) from exc


def parse_bare(payload: bytes) -> Any:
    """A `value` payload: JSON, or a bare token such as `23.5`, `ON` or `nan` as devices send it."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        stripped = payload.strip()
        if stripped[:1] in (b"{", b"[", b'"'):
            raise MessageRejected(DropReason.INVALID_JSON, str(exc)) from exc
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise MessageRejected(DropReason.INVALID_VALUE, "payload is not UTF-8") from uexc
        return text


class ValueEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    value: Scalar | None  # null: no reading
    ts: TimeValue = None


def envelope_adapter(value_key: str, time_key: str | None) -> TypeAdapter[ValueEnvelope]:
    """A validator for `{"v": 22.5, "ts": 1700000000}` with this route's key names."""
    fields: dict[str, Any] = {"value": (Scalar | None, Field(alias=value_key))}
    if time_key is not None:
        fields["ts"] = (TimeValue, Field(None, alias=time_key))
    model = create_model("ValuePayload", __base__=ValueEnvelope, **fields)
    return TypeAdapter(model)


def validate_envelope(adapter: TypeAdapter[ValueEnvelope], data: dict[str, Any]) -> ValueEnvelope:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(
            str(p) for p in first["loc"] if not str(p).startswith(("function", "json"))
        )
        reason = DropReason.SCHEMA_MISMATCH
        if first["type"] in ("finite_number",):
            reason = DropReason.INVALID_VALUE
        raise MessageRejected(reason, f"{where}: {first['msg']}") from exc
