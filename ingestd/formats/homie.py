"""Homie v4 and v5: `homie/<device>/<node>/<property>` (v5: `homie/5/<device>/...`).

- Topic: `homie/#`. Measurement `homie`; tags `device` and `node`; the field is the property.
- Values: Homie's payload types as text: `true`/`false` are booleans, integers and floats
  numbers, enums and strings strings. Units are in the device's `$description` (v5) or the
  property's `$unit` (v4), not in the value.
- Time: the receive time.
- Skipped: every attribute (`$state`, `$description`, `$target`, `$unit`, ...) and `/set`.
"""

from __future__ import annotations

from ingestd.decode import parse_bare
from ingestd.formats.base import Format, FormatInput, Sample, Samples, reading


def samples(message: FormatInput) -> Samples:
    rest = message.rest
    if rest and rest[0] == "5":  # v5 puts its major version after the prefix
        rest = rest[1:]
    if len(rest) != 3 or any(level.startswith("$") for level in rest):
        return None
    device, node, prop = rest
    tags = (("device", device), ("node", node))
    return [Sample("homie", tags, [(prop, reading(parse_bare(message.payload)))], None)]


FORMAT = Format("homie", ("homie/#",), samples)
