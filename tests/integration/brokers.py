"""MQTT brokers the delivery tests run against: Mosquitto (ingestd.devtools.servers) and aedes, a
second implementation nobody here wrote (Node.js, from the npm registry, MQTT 3.1.1 only).

`.ci/run` installs aedes with `npm ci` into tests/brokers/aedes; where it is missing (a
developer who has not run that), the aedes cases fail with the command to run, rather than
passing unseen.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ingestd.devtools.servers import Process, free_port

AEDES_DIR = Path(__file__).resolve().parents[1] / "brokers" / "aedes"


class Aedes(Process):
    """aedes on a free loopback port; `denied` filters get SUBACK 0x80."""

    protocols = ("3.1.1",)  # aedes 1.2 has no MQTT 5

    def __init__(self, workdir: Path, denied: list[str] | None = None) -> None:
        if not (AEDES_DIR / "node_modules" / "aedes").is_dir():
            raise RuntimeError(f"aedes is not installed: run `npm ci --prefix {AEDES_DIR}`")
        port = free_port()
        node = shutil.which("node") or "/usr/bin/node"
        argv = [node, str(AEDES_DIR / "broker.mjs"), str(port), ",".join(denied or [])]
        super().__init__(argv, workdir, port, "aedes")
