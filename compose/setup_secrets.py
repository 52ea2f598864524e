#!/usr/bin/env python3
"""Turn compose/.env.example into compose/.env with random secrets, and write mosquitto/passwd.

    python3 compose/setup_secrets.py                 # create what is missing, keep what exists
    python3 compose/setup_secrets.py --rotate        # new values for the secrets that can change
    python3 compose/setup_secrets.py --rotate NAME   # ... or for these, named (see below)

Every `change-me` gets a cryptographically random value: `secrets.token_hex(32)` for tokens and
keys, `secrets.token_urlsafe(24)` for passwords (as the p4n4 design specifies). Names (org,
bucket, user names) keep their defaults, and EI_API_KEY is left for you to fill in. An existing
secret in .env is never overwritten without --rotate. mosquitto/passwd is written for every
MQTT_<ACCOUNT>_USER / _PASSWORD pair, in mosquitto's own format (PBKDF2-SHA512, `$7$`), so no
mosquitto_passwd is needed. Nothing secret is ever printed. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
from collections.abc import Collection
from pathlib import Path

PLACEHOLDER = "change-me"
# Secrets a service takes only at its first start, or that protect stored data: a new value in
# .env alone breaks that service. `--rotate` leaves them unless named, and says what rotating
# each one takes; the token cannot be rotated from here at all.
INIT_ONLY = {
    "INFLUXDB_ADMIN_PASSWORD": "InfluxDB applies it at its first start only: after rotating, set it "
    "in InfluxDB too (docker compose exec influxdb influx user password -n admin)",
    "GF_SECURITY_ADMIN_PASSWORD": "Grafana applies it at its first start only: after rotating, set "
    "it in Grafana too (docker compose exec grafana grafana cli admin reset-admin-password ...)",
    **{
        f"INFLUXDB_{account}_PASSWORD": "InfluxDB keeps the password its init script set: after "
        "rotating, docker compose up -d, then docker compose exec influxdb "
        "/docker-entrypoint-initdb.d/buckets-and-accounts.sh to set it there too"
        for account in ("INGESTD", "GRAFANA", "N8N")
    },
    "INFLUXDB3_ADMIN_TOKEN": "InfluxDB 3 Core takes it at its first start only: rotate it only "
    "with a fresh InfluxDB 3 volume (docker compose -f compose.yaml -f compose.influxdb3.yaml "
    "down, docker volume rm p4n4-iot_influxdb3-data), which loses the data it holds",
    "N8N_ENCRYPTION_KEY": "n8n encrypted its stored credentials with it and refuses to start with "
    "another: rotate it only with a fresh n8n volume (docker compose -f compose.ai.yaml down, "
    "docker volume rm p4n4-ai_n8n-data), which re-imports the workflows and credentials",
}
NEVER_HERE = {
    "INFLUXDB_ADMIN_TOKEN": "InfluxDB keeps the token it was set up with and cannot take one chosen "
    "here: create a new one in InfluxDB (docker compose exec influxdb influx auth create "
    "--all-access --org <INFLUXDB_ORG>), put it in .env, then docker compose up -d",
}
PBKDF2_ITERATIONS = 1000  # mosquitto's own default is 101; it verifies any count it finds
HERE = Path(__file__).resolve().parent


# InfluxDB 3 takes an admin token only with this prefix (its offline admin token file)
TOKEN_PREFIX = {"INFLUXDB3_ADMIN_TOKEN": "apiv3_"}


def random_value(name: str) -> str:
    if name in TOKEN_PREFIX:
        return TOKEN_PREFIX[name] + secrets.token_urlsafe(48)
    if name.endswith(("_TOKEN", "_KEY")):
        return secrets.token_hex(32)
    while True:  # a digit, a capital and a small letter: n8n's owner form refuses less
        password = secrets.token_urlsafe(24)
        if (
            any(c.isdigit() for c in password)
            and any(c.isupper() for c in password)
            and any(c.islower() for c in password)
        ):
            return password


def read_env(path: Path) -> list[tuple[str, str]]:
    """(name, value) pairs in file order; comments and blank lines as ('', line)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        out.append((match.group(1), match.group(2)) if match else ("", line))
    return out


def mosquitto_hash(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def rotating(name: str, rotate: bool | Collection[str]) -> bool:
    """Whether `--rotate` (True: every secret that can change; names: those) rotates `name`."""
    if isinstance(rotate, bool):
        return rotate and name not in INIT_ONLY and name not in NEVER_HERE
    return name in rotate and name not in NEVER_HERE


def setup(
    example: Path, env: Path, passwd: Path, rotate: bool | Collection[str] = False
) -> list[str]:
    """Write env and passwd; return a report without secret values."""
    existing = dict(pair for pair in read_env(env) if pair[0]) if env.exists() else {}
    report, lines, values = [], [], {}
    for name, default in read_env(example):
        if not name:
            lines.append(default)
            continue
        missing = not existing.get(name) or existing[name] == PLACEHOLDER
        if default == PLACEHOLDER and (missing or rotating(name, rotate)):
            value = random_value(name)
            if missing:
                report.append(f"{name}: generated")
            else:
                report.append(
                    f"{name}: rotated" + (f"; {INIT_ONLY[name]}" if name in INIT_ONLY else "")
                )
        elif name in {**INIT_ONLY, **NEVER_HERE} and (rotate is True or name in (rotate or ())):
            value = existing[name]
            why = INIT_ONLY.get(name) or NEVER_HERE[name]
            hint = "; name it to rotate it anyway: --rotate " + name if name in INIT_ONLY else ""
            report.append(f"{name}: kept: {why}{hint}")
        elif name in existing:
            value = existing[name]
        else:
            value = default
            report.append(
                f"{name}: default {default!r}" if default else f"{name}: left empty, fill it in"
            )
        values[name] = value
        lines.append(f"{name}={value}")
    write_private(env, "\n".join(lines) + "\n")
    accounts = []
    for name, user in values.items():
        match = re.match(r"^MQTT_([A-Z0-9]+)_USER$", name)
        password = values.get(f"MQTT_{match.group(1)}_PASSWORD") if match else None
        if match and user and password:
            accounts.append(f"{user}:{mosquitto_hash(password)}")
    write_private(passwd, "\n".join(accounts) + "\n")
    report.append(f"{passwd}: {len(accounts)} MQTT accounts")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rotate",
        nargs="*",
        metavar="NAME",
        help="new values: with no names, for every secret that can change without more steps; "
        "with names, for those (then do what it prints for each)",
    )
    parser.add_argument("--example", type=Path, default=HERE / ".env.example")
    parser.add_argument("--env", type=Path, default=HERE / ".env")
    parser.add_argument("--passwd", type=Path, default=HERE.parent / "mosquitto" / "passwd")
    args = parser.parse_args()
    rotate: bool | Collection[str] = False
    if args.rotate is not None:
        rotate = set(args.rotate) if args.rotate else True
        unknown = set(args.rotate) - {name for name, _ in read_env(args.example) if name}
        if unknown:
            parser.error(f"no such secret in {args.example}: {', '.join(sorted(unknown))}")
    for line in setup(args.example, args.env, args.passwd, rotate):
        print(line)
    print(f"wrote {args.env} (mode 600)")


if __name__ == "__main__":
    main()
