from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
STACKS = {
    "iot": COMPOSE / "compose.yaml",
    "ai": COMPOSE / "compose.ai.yaml",
    "edge": COMPOSE / "compose.edge.yaml",
}
# override files, each on top of the stack it names: `docker compose -f <stack> -f <override>`
OVERRIDES = {"influxdb3": (COMPOSE / "compose.influxdb3.yaml", "iot")}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def env_file(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.M))


def write_dotenv(work: Path) -> Path:
    """What a user's first step writes: `setup_secrets.py` run on .env.example, its .env and
    passwd put in `work`. Returns the .env's path (the passwd is beside it)."""
    subprocess.run(
        [sys.executable, str(COMPOSE / "setup_secrets.py"), "--example",
         str(COMPOSE / ".env.example"), "--env", str(work / ".env"), "--passwd",
         str(work / "passwd")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return work / ".env"


ACCOUNTS = COMPOSE / "influxdb-init" / "accounts"


@dataclass(frozen=True)
class Account:
    """A service's InfluxDB account, as compose/influxdb-init/accounts lists it: buckets by
    their names there (sensors, ingestd)."""

    name: str  # INGESTD: its user and password are INFLUXDB_INGESTD_USER, _PASSWORD in .env
    read: frozenset[str]
    write: frozenset[str]

    def login(self, env: dict[str, str]) -> tuple[str, str]:
        return env[f"INFLUXDB_{self.name}_USER"], env[f"INFLUXDB_{self.name}_PASSWORD"]


def influx_accounts() -> dict[str, Account]:
    out = {}
    for line in ACCOUNTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, read, write = line.split()
        buckets = [frozenset() if b == "-" else frozenset(b.split(",")) for b in (read, write)]
        out[name] = Account(name, *buckets)
    return out
