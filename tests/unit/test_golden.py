"""Golden cases: topic + payload -> the exact line protocol, or the exact drop reason.
This table is the readable spec of the input contract."""

from __future__ import annotations

import pytest

from ingestd.config import parse_settings
from ingestd.service import check_message

RECEIVED = "<received>"

CONFIG = parse_settings(
    {
        "mqtt": {"topics": ["sensors/#", "iot/#", "devices/#", "+/+/+/data", "status/#"]},
        "influx": {"api": "v1", "database": "sensors"},
        "limits": {"max_payload_bytes": 256},
        "routes": [
            {"topic": "sensors/{device}/{measurement}", "format": "value"},
            {
                "topic": "iot/telemetry/{device}",
                "format": "object",
                "measurement": "telemetry",
                "readings": "data",
                "tag_keys": ["device_id"],
                "units": {"temp": "degF -> degC"},
            },
            {"topic": "devices/{device_id}/{metric}", "measurement": "{metric}"},
            {
                "topic": "{site}/{system}/{device}/data",
                "format": "object",
                "measurement": "ruuvi",
                "units": {"battery_mv": "mV -> V"},
                "tags": {"source": "ruuvi"},
            },
            {"topic": "status/#", "format": "ignore"},
        ],
    }
)

CASES = [
    # p4n4 value format
    (
        "sensors/device-1/temperature",
        '{"v": 22.5, "ts": 1700000000}',
        "temperature,device=device-1 value=22.5 1700000000000000000",
    ),
    (
        "sensors/device-1/temperature",
        '{"v": 22, "ts": 1700000000123}',
        "temperature,device=device-1 value=22 1700000000123000000",
    ),
    (
        "sensors/device-1/temperature",
        '{"v": 22.5, "ts": 1700000000.123456}',
        "temperature,device=device-1 value=22.5 1700000000123456000",
    ),
    (
        "sensors/device-1/temperature",
        '{"v": 22.5, "ts": "2023-11-14T22:13:20.123456789Z"}',
        "temperature,device=device-1 value=22.5 1700000000123456789",
    ),
    (
        "sensors/device-1/temperature",
        '{"v": 22.5, "ts": 1700000000123456789}',
        "temperature,device=device-1 value=22.5 1700000000123456789",
    ),
    (
        "sensors/device-1/temperature",
        '{"v": 22.5}',
        f"temperature,device=device-1 value=22.5 {RECEIVED}",
    ),
    (
        "sensors/my device,1/temp=x",
        '{"v": 1, "ts": 1}',
        r"temp=x,device=my\ device\,1 value=1 1000000000",
    ),
    # bare values
    ("devices/abc123/temperature", "23.5", f"temperature,device_id=abc123 value=23.5 {RECEIVED}"),
    ("devices/abc123/motion", "true", f"motion,device_id=abc123 value=true {RECEIVED}"),
    ("devices/abc123/state", "ON", f'state,device_id=abc123 value="ON" {RECEIVED}'),
    # edge-device telemetry object, temp in degF
    (
        "iot/telemetry/dev-7",
        '{"device_id": "00:0f:00:70:91:0a", "ts": 1594512000.0, "data": {"temp": 86.0, "humidity": 51.0,'
        ' "co": 0.0045, "lpg": 0.0076, "smoke": 0.0234, "light": false, "motion": false}}',
        "telemetry,device=dev-7,device_id=00:0f:00:70:91:0a co=0.0045,humidity=51,light=false,"
        "lpg=0.0076,motion=false,smoke=0.0234,temp=30 1594512000000000000",
    ),
    # RuuviTag-style flat object, optional ts
    (
        "paku/ruuvi/van_inside/data",
        '{"temperature_c": 21.5, "humidity_percent": 40.1, "pressure_hpa": 1001.2, "battery_mv": 2950,'
        ' "ts": 1700000000}',
        "ruuvi,device=van_inside,site=paku,source=ruuvi,system=ruuvi battery_mv=2.95,"
        "humidity_percent=40.1,pressure_hpa=1001.2,temperature_c=21.5 1700000000000000000",
    ),
    (
        "paku/ruuvi/van_inside/data",
        '{"temperature_c": 21.5, "note": "a \\"quoted\\" word"}',
        f'ruuvi,device=van_inside,site=paku,source=ruuvi,system=ruuvi note="a \\"quoted\\" word",'
        f"temperature_c=21.5 {RECEIVED}",
    ),
    # ignored traffic is neither written nor an error
    ("status/dev-1", "online", None),
    # and neither is "no reading", in every form devices send it
    ("sensors/d/t", "nan", None),
    ("sensors/d/t", "", None),
    ("sensors/d/t", "None", None),
    ("sensors/d/t", "null", None),
    ("sensors/d/t", '{"v": "unavailable"}', None),
    ("sensors/d/t", '{"v": "unknown", "ts": 1700000000}', None),
    ("sensors/d/t", '{"v": null}', None),
    ("paku/ruuvi/van_inside/data", '{"temperature_c": "nan", "humidity_percent": null}', None),
]

DROPS = [
    ("sensors/d/t", '{"v": 22.5', "invalid_json"),
    ("sensors/d/t", '{"v": NaN}', "invalid_json"),
    ("sensors/d/t", '{"v": 1e999}', "invalid_json"),
    ("sensors/d/t", "\udcff", "invalid_value"),
    ("sensors/d/t", '{"value": 1}', "schema_mismatch"),
    ("sensors/d/t", '{"v": [1, 2]}', "schema_mismatch"),
    ("sensors/d/t", "[1, 2]", "schema_mismatch"),
    ("sensors/d/t", '{"v": 1, "ts": "yesterday"}', "invalid_timestamp"),
    ("sensors/d/t", '{"v": 1, "ts": -5}', "invalid_timestamp"),
    ("sensors/d/t", '{"v": 1, "ts": true}', "schema_mismatch"),
    ("sensors/d/t", '{"v": "' + "x" * 300 + '"}', "payload_too_large"),
    ("sensors/d", "1", "unknown_topic"),
    ("other/topic", "1", "unknown_topic"),
    ("iot/telemetry/d", "[]", "schema_mismatch"),
    ("iot/telemetry/d", '{"data": 5}', "schema_mismatch"),
    ("iot/telemetry/d", '{"data": {}}', "no_fields"),
    ("iot/telemetry/d", '{"data": {"temp": "hot"}}', "field_type_conflict"),
    ("iot/telemetry/d", '{"data": {"time": 5}}', "schema_mismatch"),
    ("a/b/c/data", '{"x": ' + "[" * 20 + "1" + "]" * 20 + "}", "schema_mismatch"),
    # keys InfluxDB refuses, dead-lettered here rather than bisected out of a batch
    ("a/b/c/data", '{"": 1}', "schema_mismatch"),
    ("a/b/c/data", '{"k\\\\": 1}', "schema_mismatch"),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), CASES)
def test_message_becomes_exact_line(topic: str, payload: str, expected: str | None) -> None:
    lines, reason, _ = check_message(CONFIG, topic, payload.encode())
    assert reason is None
    if expected is None:
        assert lines is None
        return
    assert lines is not None and len(lines) == 1
    if expected.endswith(RECEIVED):
        head, stamp = lines[0].rsplit(" ", 1)
        assert head == expected.removesuffix(" " + RECEIVED)
        assert int(stamp) > 1_700_000_000 * 10**9
    else:
        assert lines[0] == expected


@pytest.mark.parametrize(("topic", "payload", "reason"), DROPS)
def test_bad_message_is_dropped_with_reason(topic: str, payload: str, reason: str) -> None:
    # surrogateescape: "\udcff" in a case is the byte 0xff, a payload that is not UTF-8
    lines, got, _ = check_message(CONFIG, topic, payload.encode("utf-8", "surrogateescape"))
    assert lines is None
    assert got is not None and got.split(":")[0] == reason
