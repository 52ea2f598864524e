"""What the corpus test does not pin down: exact times, the Ruuvi RAWv2 decoder on hostile bytes,
the config rules of named formats, and the subscriptions they add."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestd.buffer import MemoryBuffer
from ingestd.config import parse_settings
from ingestd.errors import ConfigError, MessageRejected
from ingestd.formats.ruuvi import decode_advertisement, decode_df5
from ingestd.pipeline import Pipeline
from ingestd.records import Point, RawMessage
from ingestd.routes import compile_routes, subscriptions
from ingestd.telemetry import Telemetry

RECEIVED = 1_800_000_000_000_000_000


def _pipeline(*routes: dict[str, Any]) -> Pipeline:
    config = parse_settings({"influx": {"api": "v1", "database": "d"}, "routes": list(routes)})
    return Pipeline(
        compile_routes(config), MemoryBuffer(100), Telemetry(), lambda _d: None, config.limits
    )


def _points(pipeline: Pipeline, topic: str, payload: bytes) -> list[Point] | None:
    found = pipeline.to_points(RawMessage(topic, payload, RECEIVED))
    return None if found is None else found[0]


def test_tasmota_time_is_local_time_in_the_routes_timezone() -> None:
    pipeline = _pipeline({"format": "tasmota", "timezone": "Europe/Paris"})
    points = _points(pipeline, "tele/t/SENSOR", b'{"Time":"2021-01-02T09:09:44","X":{"T":1}}')
    assert points is not None
    assert points[0].time_ns == 1_609_574_984 * 10**9  # 08:09:44Z: Paris is UTC+1 in January


def test_tasmota_fahrenheit_becomes_celsius() -> None:
    points = _points(
        _pipeline({"format": "tasmota"}),
        "tele/t/SENSOR",
        b'{"DHT11":{"Temperature":212.0,"Humidity":27.0},"TempUnit":"F"}',
    )
    assert points is not None
    assert dict(points[0].fields) == {"Temperature": 100.0, "Humidity": 27.0}


def test_ttn_received_at_keeps_its_nanoseconds() -> None:
    payload = b'{"received_at":"2020-02-12T15:15:46.014773143Z","uplink_message":{"decoded_payload":{"t":1}}}'
    points = _points(_pipeline({"format": "ttn"}), "v3/a@t/devices/d/up", payload)
    assert points is not None and points[0].time_ns == 1_581_520_546_014_773_143


def test_shelly_params_ts_is_fractional_seconds() -> None:
    payload = b'{"src":"s1","method":"NotifyStatus","params":{"ts":1631186545.04,"switch:0":{"output":true}}}'
    points = _points(_pipeline({"format": "shelly"}), "s1/events/rpc", payload)
    assert points is not None and points[0].time_ns == 1_631_186_545_040_000_000


def test_identifiers_with_leading_zeros_stay_strings_and_onoff_is_boolean() -> None:
    pipeline = _pipeline({"format": "zigbee2mqtt"})
    points = _points(
        pipeline, "zigbee2mqtt/m", b'{"serial":"0042","battery":"100.00","state":"ON"}'
    )
    assert points is not None
    assert dict(points[0].fields) == {"serial": "0042", "battery": 100.0, "state": True}


def test_a_message_of_only_absent_readings_is_ignored_not_an_error() -> None:
    pipeline = _pipeline({"format": "esphome"})
    assert _points(pipeline, "n/sensor/t/state", b"nan") is None
    assert _points(pipeline, "n/sensor/t/state", b"") is None


def test_an_empty_object_is_still_an_error() -> None:
    with pytest.raises(MessageRejected) as info:
        _points(_pipeline({"format": "zigbee2mqtt"}), "zigbee2mqtt/x", b"{}")
    assert info.value.reason == "no_fields"


def test_df5_decodes_the_documented_example() -> None:
    # the Ruuvi data format 5 specification's valid example
    decoded = decode_df5(bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"))
    assert decoded["temperature"] == 24.3 and decoded["pressure"] == 100044
    assert decoded["humidity"] == 53.49 and decoded["voltage"] == 2.977
    assert decoded["accelX"] == 0.004 and decoded["txPower"] == 4
    assert decoded["movementCounter"] == 66 and decoded["measurementSequenceNumber"] == 205


def test_df5_leaves_out_what_the_format_marks_as_not_available() -> None:
    # the specification's "invalid values" example
    decoded = decode_df5(bytes.fromhex("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF"))
    assert set(decoded) == {"dataFormat", "id"}


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_the_ruuvi_decoders_never_raise_on_random_bytes(data: bytes) -> None:
    assert isinstance(decode_df5(data), dict)
    assert isinstance(decode_advertisement(data.hex()), dict)
    assert isinstance(decode_advertisement("0201061BFF9904" + data.hex()), dict)


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"routes\[0\]\.format: unknown format 'zigbee'.*zigbee2mqtt"
    ):
        _pipeline({"format": "zigbee"})


def test_value_and_object_routes_still_need_a_topic() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.topic"):
        _pipeline({"format": "object", "measurement": "m"})


def test_a_named_format_subscribes_to_its_own_topics() -> None:
    config = parse_settings(
        {
            "influx": {"api": "v1", "database": "d"},
            "routes": [{"format": "tasmota"}, {"format": "zigbee2mqtt", "topic": "base/#"}],
        }
    )
    assert subscriptions(config) == ["sensors/#", "tele/+/+", "stat/+/+", "base/#"]


# The three formats without corpus cases: payloads built from each project's documented field
# names and layouts (rtl_433's README output, ChirpStack v4's UplinkEvent JSON mapping, the Edge
# Impulse runner's classify response), so they pin ingestd's reading of those layouts.


def test_rtl_433_names_a_sensor_by_model_id_channel_and_converts_fahrenheit() -> None:
    payload = (
        b'{"time":"2020-01-25 08:57:44","model":"Ambientweather-F007TH","id":214,"channel":1,'
        b'"battery_ok":1,"temperature_F":68.9,"humidity":33,"rain_in":0.5,"mic":"CRC"}'
    )
    points = _points(_pipeline({"format": "rtl_433"}), "rtl_433/pi/events", payload)
    assert points is not None
    point = points[0]
    assert dict(point.tags) == {
        "model": "Ambientweather-F007TH",
        "id": "214",
        "channel": "1",
        "host": "pi",
    }
    fields = dict(point.fields)
    assert fields["temperature_C"] == pytest.approx(20.5)
    assert fields["rain_mm"] == 12.7 and fields["humidity"] == 33.0 and "mic" not in fields
    assert point.time_ns == 1_579_942_664 * 10**9  # local time read in the route's zone (UTC)


def test_chirpstack_reads_the_codec_object_and_the_radio() -> None:
    payload = (
        b'{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d",'
        b'"time":"2022-07-18T09:34:15.775023242+00:00","deviceInfo":{"tenantName":"ChirpStack",'
        b'"applicationId":"17c82e96-be03-4f38-aef3-f83d48582d97","applicationName":"Test",'
        b'"deviceProfileName":"E103","deviceName":"Test device","devEui":"0101010101010101"},'
        b'"devAddr":"00189440","dr":1,"fCnt":4,"fPort":1,"data":"qg==",'
        b'"object":{"temperature":21.5,"battery":{"volts":3.1}},'
        b'"rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-36,"snr":10.5}]}'
    )
    topic = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
    points = _points(_pipeline({"format": "chirpstack"}), topic, payload)
    assert points is not None
    assert dict(points[0].fields) == {
        "temperature": 21.5,
        "battery.volts": 3.1,
        "rssi": -36.0,
        "snr": 10.5,
        "f_cnt": 4.0,
        "dr": 1.0,
    }
    assert dict(points[0].tags)["device_name"] == "Test device"
    assert points[0].time_ns == 1_658_136_855_775_023_242
    join = topic.replace("/up", "/join")
    assert (
        _points(_pipeline({"format": "chirpstack", "topic": "application/#"}), join, b"{}") is None
    )


def test_edge_impulse_scores_anomaly_and_boxes() -> None:
    pipeline = _pipeline({"format": "edge_impulse"})
    classify = (
        b'{"success":true,"result":{"classification":{"idle":0.98,"wave":0.02},"anomaly":-0.21},'
        b'"timing":{"dsp":1,"classification":0,"anomaly":0}}'
    )
    points = _points(pipeline, "edgeimpulse/cam1/inference", classify)
    assert points is not None
    fields = dict(points[0].fields)
    assert fields["classification.idle"] == 0.98 and fields["anomaly"] == -0.21
    assert fields["timing.dsp"] == 1.0
    boxes = (
        b'{"result":{"bounding_boxes":[{"label":"cat","value":0.8,"x":1,"y":2,"width":3,'
        b'"height":4},{"label":"cat","value":0.9},{"label":"dog","value":0.5}]}}'
    )
    points = _points(pipeline, "edgeimpulse/cam1/inference", boxes)
    assert points is not None
    assert dict(points[0].fields) == {
        "objects.cat": 2.0,
        "objects.dog": 1.0,
        "score.cat": 0.9,
        "score.dog": 0.5,
    }
    with pytest.raises(MessageRejected, match="the runner failed"):
        _points(pipeline, "edgeimpulse/cam1/inference", b'{"success":false,"error":"no model"}')


def test_a_message_of_more_points_than_max_readings_is_refused_in_every_format() -> None:
    blocks = ",".join(f'"S{i}": {{}}' for i in range(1001))  # empty sensor blocks: no fields
    with pytest.raises(MessageRejected) as info:
        _points(_pipeline({"format": "tasmota"}), "tele/t/SENSOR", ("{" + blocks + "}").encode())
    assert info.value.reason == "limit_exceeded"
