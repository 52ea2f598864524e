"""InfluxDB 2.7 itself, through testcontainers, for machines with a Docker engine.

Without one (CI here) the v2 tests run against VictoriaMetrics instead; see conftest.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from ingestd.devtools.servers import Database, http
from ingestd.timestamps import iso_to_ns

FLUX_TYPES = {"double": "float", "boolean": "boolean", "string": "string", "long": "integer"}


class InfluxDB2Container(Database):
    api = "v2"
    name = "influxdb2"
    token = "ingestd-test-token"  # a throwaway container's token, not a secret
    token_env = "INGESTD_TEST_INFLUXDB_TOKEN"

    def __init__(self) -> None:
        from testcontainers.community.influxdb.version2 import InfluxDb2Container

        self._container = InfluxDb2Container(
            image="influxdb:2.7",
            init_mode="setup",
            admin_token=self.token,
            username="ingestd",
            password="ingestd-test-password",
            org_name="p4n4",
            bucket="sensors",
        )
        self.url = ""

    def start(self) -> None:
        self._container.start()
        self.url = self._container.get_url()
        os.environ[self.token_env] = self.token  # inherited by the ingestd subprocess

    def stop(self) -> None:
        self._container.stop()

    def influx_settings(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "api": "v2",
            "org": "p4n4",
            "bucket": "sensors",
            "token_env": self.token_env,
        }

    def _records(self) -> list[dict[str, Any]]:
        flux = 'from(bucket: "sensors") |> range(start: 0)'
        body = json.dumps({"query": flux, "dialect": {"annotations": ["datatype"]}}).encode()
        status, raw = http(
            "POST",
            f"{self.url}/api/v2/query?org=p4n4",
            body,
            {
                "Authorization": f"Token {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/csv",
            },
        )
        assert status == 200, raw
        records = []
        for table in raw.decode().replace("\r\n", "\n").split("\n\n"):
            rows = list(csv.reader(io.StringIO(table)))
            if len(rows) < 2:
                continue
            types, header, *data = rows
            for row in data:
                record = dict(zip(header, row, strict=True))
                record["_type"] = FLUX_TYPES.get(types[header.index("_value")], "string")
                records.append(record)
        return records

    def points(self) -> list[dict[str, Any]]:
        points: dict[tuple[Any, ...], dict[str, Any]] = {}
        skip = {
            "",
            "result",
            "table",
            "_start",
            "_stop",
            "_time",
            "_value",
            "_field",
            "_measurement",
            "_type",
        }
        for r in self._records():
            tags = {k: v for k, v in r.items() if k not in skip and v != ""}
            key = (r["_measurement"], tuple(sorted(tags.items())), r["_time"])
            point = points.setdefault(
                key,
                {
                    "measurement": r["_measurement"],
                    "tags": tags,
                    "fields": {},
                    "time_ns": iso_to_ns(r["_time"]),
                },
            )
            value: Any = r["_value"]
            if r["_type"] == "float":
                value = float(value)
            elif r["_type"] == "boolean":
                value = value == "true"
            elif r["_type"] == "integer":
                value = int(value)
            point["fields"][r["_field"]] = value
        return list(points.values())

    def field_types(self) -> dict[tuple[str, str], str]:
        return {(r["_measurement"], r["_field"]): r["_type"] for r in self._records()}
