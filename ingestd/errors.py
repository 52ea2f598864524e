"""One exception tree, and the bounded set of reasons a message can be dropped for."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingestd.records import WriteProgress


class DropReason(StrEnum):
    """Why a message (or one of its lines) was not written. Bounded: used as a metric label."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_TOPIC = "invalid_topic"
    UNKNOWN_TOPIC = "unknown_topic"
    INVALID_JSON = "invalid_json"
    SCHEMA_MISMATCH = "schema_mismatch"
    INVALID_VALUE = "invalid_value"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FIELD_TYPE_CONFLICT = "field_type_conflict"
    NO_FIELDS = "no_fields"
    LIMIT_EXCEEDED = "limit_exceeded"
    CARDINALITY_LIMIT = "cardinality_limit"
    REJECTED_BY_SINK = "rejected_by_sink"
    UNWRITTEN_AT_SHUTDOWN = "unwritten_at_shutdown"
    SPOOL_FULL = "spool_full"
    SPOOL_EXPIRED = "spool_expired"
    INTERNAL_ERROR = "internal_error"


class IngestdError(Exception):
    """Base of every error ingestd raises on purpose."""


class ConfigError(IngestdError):
    """The configuration is invalid. `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


class MessageRejected(IngestdError):
    """A message cannot become points. Raised by pure stages, caught by the pipeline."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Suppressed(IngestdError):
    """Every point of a message was left out by its route's report-by-exception rule: nothing
    wrong, nothing to write; the message is settled as stored. Raised by the pipeline."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class SinkError(IngestdError):
    """A write to the database failed."""


class RetryableSinkError(SinkError):
    """The write may succeed later (network, timeout, 5xx, 429, auth not ready)."""

    def __init__(
        self,
        detail: str,
        retry_after_s: float | None = None,
        progress: WriteProgress | None = None,
    ) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        # where a write of many requests stopped, to resume from
        self.progress = progress


class RejectedBySink(SinkError):
    """The database refused the content of the batch (HTTP 400/422): some line is bad."""


class BatchTooLarge(SinkError):
    """The database refused the batch for its size (HTTP 413): split it."""


class DeliveryError(IngestdError):
    """An event, alert or webhook call did not get through now: the outbox retries it."""


class MqttConnectionError(DeliveryError):
    """The MQTT connection failed, was refused or was lost; the source reconnects."""
