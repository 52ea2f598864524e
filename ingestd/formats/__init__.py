"""Device ecosystems by name: `format = "zigbee2mqtt"` and nothing else is a working route.

One module per ecosystem; each documents its topic template, measurement, identity tags,
timestamp source and the traffic it skips (the README repeats them per ecosystem). Every format
is a pure function from one message to samples (`base.py`); the transform stage types them.
"""

from __future__ import annotations

from ingestd.formats import (
    chirpstack,
    edge_impulse,
    esphome,
    homeassistant,
    homie,
    owntracks,
    rtl_433,
    ruuvi,
    shelly,
    sparkplug_b,
    tasmota,
    ttn,
    zigbee2mqtt,
)
from ingestd.formats.base import Format, FormatInput, FormatState, Remembered, Sample, Samples

FORMATS: dict[str, Format] = {
    module.FORMAT.name: module.FORMAT
    for module in (
        zigbee2mqtt,
        tasmota,
        shelly,
        esphome,
        homeassistant,
        ruuvi,
        ttn,
        owntracks,
        homie,
        sparkplug_b,
        chirpstack,
        rtl_433,
        edge_impulse,
    )
}

__all__ = ["FORMATS", "Format", "FormatInput", "FormatState", "Remembered", "Sample", "Samples"]
