"""Edge Impulse inference results: the JSON the Linux runner answers (`/api/infer`, or
`edge-impulse-linux-runner`'s results) published on `edgeimpulse/<device>/inference`.

The runner serves its results over HTTP; whatever publishes them to MQTT (an n8n flow, a
script beside the runner) puts the runner's JSON on that topic unchanged, so the p4n4 Edge AI
path lands in InfluxDB like the sensors.

- Topic: `edgeimpulse/{device}/+`. Measurement `edge_impulse`; tags `device` and the `model`
  (the topic's last level, e.g. `inference`, or the payload's `model`/`project` name).
- Fields: `classification.<label>` for each label's score, `anomaly`, `visual_anomaly_max` and
  `visual_anomaly_mean`, and for object detection `objects.<label>` (how many boxes) and
  `score.<label>` (the best box's score); the runner's `timing.*` in ms.
- Time: `timestamp` (epoch ms) when the publisher adds one, else the receive time.
- Refused: a `success: false` answer (the runner's error) is dead-lettered as
  `schema_mismatch` with the runner's error, and a payload without `result`.
"""

from __future__ import annotations

from typing import Any

from ingestd.errors import DropReason, MessageRejected
from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    json_object,
    payload_time,
    tags_of,
)


def _boxes(boxes: list[Any], fields: list[tuple[str, Any]], max_boxes: int) -> None:
    counts: dict[str, int] = {}
    best: dict[str, float] = {}
    for box in boxes[:max_boxes]:
        if not isinstance(box, dict) or not isinstance(box.get("label"), str):
            continue
        label, score = box["label"], box.get("value")
        counts[label] = counts.get(label, 0) + 1
        if isinstance(score, int | float) and not isinstance(score, bool):
            best[label] = max(best.get(label, float(score)), float(score))
    fields.extend((f"objects.{label}", count) for label, count in counts.items())
    fields.extend((f"score.{label}", score) for label, score in best.items())


def samples(message: FormatInput) -> Samples:
    data = json_object(message.payload)
    if data.get("success") is False:
        raise MessageRejected(
            DropReason.SCHEMA_MISMATCH, f"the runner failed: {str(data.get('error'))[:200]}"
        )
    result = data.get("result")
    if not isinstance(result, dict):
        raise MessageRejected(DropReason.SCHEMA_MISMATCH, "no 'result' object")
    fields: list[tuple[str, Any]] = []
    classification = result.get("classification")
    if isinstance(classification, dict):
        fields.extend((f"classification.{label}", score) for label, score in classification.items())
    for key in ("anomaly", "visual_anomaly_max", "visual_anomaly_mean"):
        if key in result:
            fields.append((key, result[key]))
    boxes = result.get("bounding_boxes")
    if isinstance(boxes, list):
        _boxes(boxes, fields, message.max_readings)
    timing = data.get("timing")
    if isinstance(timing, dict):
        fields.extend(
            (f"timing.{key}", value)
            for key, value in timing.items()
            if not isinstance(value, dict | list)
        )
    model = data.get("model") or data.get("project") or message.levels[-1]
    tags = tags_of(("device", message.segments.get("device")), ("model", model))
    return [
        Sample(
            "edge_impulse",
            tags,
            fields,
            payload_time(data.get("timestamp"), message.timezone, "ms"),
        )
    ]


FORMAT = Format("edge_impulse", ("edgeimpulse/{device}/+",), samples)
