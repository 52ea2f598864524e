"""ESPHome's MQTT component: `<node>/<component>/<object_id>/state`, one bare value each.

- Topic: `+/+/+/state`. Measurement `esphome`; tags `node`, `component` (`sensor`, `switch`,
  `binary_sensor`, `text_sensor`, ...) and `object_id`; the field is named after the object id.
- Values: numbers, `ON`/`OFF` as booleans, text as strings; `nan` and `None` (a failed read) are
  no reading. Units live only in the Home Assistant discovery config, never in the state.
- Time: the receive time (ESPHome sends none).
- Skipped: `<node>/status` (availability) and `/command` topics: they are not subscribed, and
  under a wider topic anything but a `/state` level is ignored.
"""

from __future__ import annotations

from ingestd.decode import parse_bare
from ingestd.formats.base import Format, FormatInput, Sample, Samples, reading


def samples(message: FormatInput) -> Samples:
    levels = message.levels
    if len(levels) < 4 or levels[-1] != "state":
        return None
    node, component, object_id = levels[-4], levels[-3], levels[-2]
    tags = (("node", node), ("component", component), ("object_id", object_id))
    return [Sample("esphome", tags, [(object_id, reading(parse_bare(message.payload)))], None)]


FORMAT = Format("esphome", ("+/+/+/state",), samples)
