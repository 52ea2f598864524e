"""Raw bytes to JSON values (orjson) and the pydantic envelope of the `value` format."""

from __future__ import annotations

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

# Bare text that means "no reading" in the ecosystems we ingest (ESPHome nan/None, HA unavailable).
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
        if text.lower() in NO_READING_TOKENS:
            raise MessageRejected(DropReason.INVALID_VALUE, f"no reading: {text!r}") from exc
        return text


class ValueEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    value: Scalar
    ts: TimeValue = None


def envelope_adapter(value_key: str, time_key: str | None) -> TypeAdapter[ValueEnvelope]:
    """A validator for `{"v": 22.5, "ts": 1700000000}` with this route's key names."""
    fields: dict[str, Any] = {"value": (Scalar, Field(alias=value_key))}
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
