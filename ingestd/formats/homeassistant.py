"""Home Assistant's mqtt_statestream: `<base>/<domain>/<entity>/state` and one topic per attribute.

- Topic: `homeassistant/{domain}/{entity}/+`; another `base_topic`: `topic = "<base>/{domain}/{entity}/+"`.
- Measurement `homeassistant`; tags `domain` and `entity`. `state` is field `state` (raw text:
  `on`/`off` become booleans, numbers numbers); every other level is a JSON-encoded attribute,
  stored under its name. An object attribute flattens; a list is kept as its JSON text.
- Time: the receive time (statestream's `last_updated`/`last_changed` attributes arrive as their
  own topics, and are stored as strings when published).
- Skipped: discovery configs (`.../config`) that share the `homeassistant/` prefix, and
  `unavailable`/`unknown` states, which are no reading.
"""

from __future__ import annotations

import orjson

from ingestd.decode import parse_bare
from ingestd.formats.base import (
    Format,
    FormatInput,
    Sample,
    Samples,
    flat_fields,
    reading,
    tags_of,
)


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if len(levels) != 4 or levels[-1] == "config":
        return None
    domain = message.segments.get("domain", levels[1])
    entity = message.segments.get("entity", levels[2])
    attribute = levels[3]
    tags = tags_of(("domain", domain), ("entity", entity))
    value = parse_bare(message.payload)
    if isinstance(value, dict):
        return [
            Sample("homeassistant", tags, flat_fields(value, message.max_readings, attribute), None)
        ]
    if isinstance(value, list):
        value = orjson.dumps(value).decode()
    return [Sample("homeassistant", tags, [(attribute, reading(value))], None)]


FORMAT = Format("homeassistant", ("homeassistant/{domain}/{entity}/+",), samples)
