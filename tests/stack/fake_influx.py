#!/usr/bin/env python3
"""A stand-in for InfluxDB 2's `influx` CLI, for the init script's unit test (this machine has
neither the CLI nor InfluxDB 2): the few subcommands the script runs, each taking only the
flags the real one documents (docs.influxdata.com, influx CLI 2.7: bucket list/create, v1 auth
list/create/delete), printing tab-separated rows as the real one does with --hide-headers.
Its state is a JSON file named by FAKE_INFLUX_STATE."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

COMMON = {"--active-config", "-c", "--configs-path", "--host", "--skip-verify", "--token", "-t",
          "--hide-headers", "--json", "--http-debug", "--org", "-o", "--org-id"}  # fmt: skip
FLAGS = {
    ("bucket", "list"): {"--name", "-n", "--id", "-i", "--limit", "--offset", "--page-size"},
    ("bucket", "create"): {
        "--name",
        "-n",
        "--retention",
        "-r",
        "--description",
        "-d",
        "--shard-group-duration",
        "--schema-type",
    },
    ("v1", "auth", "list"): {"--id", "-i", "--user", "-u", "--user-id", "--username"},
    ("v1", "auth", "create"): {
        "--description",
        "-d",
        "--no-password",
        "--password",
        "--read-bucket",
        "--write-bucket",
        "--username",
    },
    ("v1", "auth", "delete"): {"--id", "-i"},
}
SWITCHES = {"--hide-headers", "--json", "--skip-verify", "--no-password"}


def main(argv: list[str]) -> int:
    command = next((c for c in FLAGS if tuple(argv[: len(c)]) == c), None)
    if command is None:
        print(f"Error: unknown command {argv}", file=sys.stderr)
        return 2
    flags: dict[str, list[str]] = {}
    rest = argv[len(command) :]
    while rest:
        flag = rest.pop(0)
        if flag not in FLAGS[command] | COMMON:
            print(f"Error: unknown flag: {flag}", file=sys.stderr)
            return 2
        flags.setdefault(flag, []).append("" if flag in SWITCHES else rest.pop(0))
    state_path = Path(os.environ["FAKE_INFLUX_STATE"])
    state = json.loads(state_path.read_text())
    first = {k: v[0] for k, v in flags.items()}
    if command == ("bucket", "list"):
        rows = [b for b in state["buckets"] if first.get("--name", b["name"]) == b["name"]]
        if not rows and "--name" in first:
            print(f'Error: bucket "{first["--name"]}" not found', file=sys.stderr)
            return 1
        for b in rows:
            print(f"{b['id']}\t{b['name']}\t{b['retention']}\t168h0m0s\timplicit")
    elif command == ("bucket", "create"):
        bucket = {"id": f"b{len(state['buckets']):015d}", "name": first["--name"],
                  "org": first["--org"], "retention": first.get("--retention", "infinite")}  # fmt: skip
        state["buckets"].append(bucket)
    elif command == ("v1", "auth", "list"):
        for a in state["auths"]:
            if first.get("--username", a["username"]) == a["username"]:
                print(f"{a['id']}\t{a['description']}\t{a['username']}\tadmin\t0\t[]")
    elif command == ("v1", "auth", "create"):
        if any(a["username"] == first["--username"] for a in state["auths"]):
            print("Error: authorization username already exists", file=sys.stderr)
            return 1
        state["serial"] += 1
        state["auths"].append({
            "id": f"a{state['serial']:015d}", "username": first["--username"],
            "password": first["--password"], "org": first["--org"],
            "description": first.get("--description", ""),
            "read": flags.get("--read-bucket", []), "write": flags.get("--write-bucket", []),
        })  # fmt: skip
    elif command == ("v1", "auth", "delete"):
        state["auths"] = [a for a in state["auths"] if a["id"] != first["--id"]]
    state_path.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
