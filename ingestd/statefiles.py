"""What ingestd remembers across restarts, on disk: one JSON file each under `state.path`:
`sparkplug_b.json` (the alias maps of the Sparkplug births), `field_types.json` (each
field's InfluxDB type) and `report_by_exception.json` (the last point written of each series a
report rule watches, saved at shutdown only: see report.py).

A format's file is rewritten whole whenever a message changed its state, before that message is
acked (births are rare: one small write per birth, never one per message); the field types at
most once a second and at shutdown (a type missed by a power cut is learned again from the
database). Each write goes to a temporary file (privatefiles: 0600, never through a
symlink), is fsynced and renamed over the old one, so a crash leaves either the old state or
the new one. A file that cannot be read is logged and set aside (`.corrupt`): that memory
starts empty and fills again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ingestd.formats import Remembered
from ingestd.logs import get_logger
from ingestd.privatefiles import open_private

FIELD_TYPES = "field_types"
REPORTED = "report_by_exception"  # the last point written of each series (report.py)
DEVICES = "devices"  # the devices each route announced (events.py)
ALERTS = "alerts"  # the alerts open, and each watched series' last reading (alerts.py)


class StateFiles:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.saves = 0
        self.failures = 0

    def file_for(self, name: str) -> Path:
        return self.path / f"{name}.json"

    def load(self, states: Mapping[str, Remembered]) -> None:
        for name, state in states.items():
            file = self.file_for(name)
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                get_logger().error("state_unreadable", path=str(file), error=exc.strerror)
                continue
            try:
                state.load_json(data)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                get_logger().error("state_corrupt", path=str(file), error=str(exc)[:200])
                file.replace(file.with_name(file.name + ".corrupt"))
                continue
            get_logger().info("state_loaded", path=str(file), bytes=len(data))

    def save(self, name: str, state: Remembered) -> None:
        file = self.file_for(name)
        temporary = file.with_name(file.name + ".tmp")
        data = state.to_json()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open_private(temporary, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, file)
        except OSError as exc:
            self.failures += 1
            get_logger().error("state_save_failed", path=str(file), error=exc.strerror)
            return  # still changed: the next message that changes it tries again
        state.changed = False
        self.saves += 1
