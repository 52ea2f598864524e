"""TLS, mutual TLS and username/password against a real Mosquitto; secrets from env and files."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingestd.devtools.servers import InfluxDB1, Mosquitto, wait_until

from .conftest import TRANSPORTS

pytestmark = pytest.mark.integration


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: Path) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=ingestd-test-ca",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            cwd=d,
        )


@pytest.fixture
def secure_broker(tmp_path: Path) -> Any:
    make_certificates(tmp_path)
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwd), "ingestd", "s3cret"], check=True, timeout=30
    )
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwd), "device", "devpw"], check=True, timeout=30
    )
    broker = Mosquitto(
        tmp_path,
        listener_options=(
            f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\n"
            f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n"
            f"allow_anonymous false\npassword_file {passwd}\n"
        ),
    )
    broker.start()
    yield broker
    broker.stop()


def publish_tls(broker: Mosquitto, certs: Path, topic: str, payload: bytes) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="device-1")
    client.tls_set(
        ca_certs=str(certs / "ca.crt"),
        certfile=str(certs / "client.crt"),
        keyfile=str(certs / "client.key"),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client.username_pw_set("device", "devpw")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mutual_tls_with_password_from_a_file(
    transport: str,
    tmp_path: Path,
    secure_broker: Mosquitto,
    influxdb1: InfluxDB1,
    ingestd_factory: Any,
) -> None:
    (tmp_path / "mqtt_password").write_text("s3cret\n")
    ingestd = ingestd_factory(
        secure_broker,
        influxdb1.influx_settings(),
        mqtt={
            "username": "ingestd",
            "password_file": str(tmp_path / "mqtt_password"),
            "ca_file": str(tmp_path / "ca.crt"),
            "cert_file": str(tmp_path / "client.crt"),
            "key_file": str(tmp_path / "client.key"),
        },
    )
    publish_tls(
        secure_broker, tmp_path, "sensors/dev-1/temperature", b'{"v": 21.5, "ts": 1700000000}'
    )
    ingestd.wait_settled(1, timeout_s=30)
    assert ingestd.stop() == 0
    assert influxdb1.points() == [
        {
            "measurement": "temperature",
            "tags": {"device": "dev-1"},
            "fields": {"value": 21.5},
            "time_ns": 1_700_000_000 * 10**9,
        }
    ]
    assert "s3cret" not in ingestd.log.read_text()


def test_a_wrong_password_is_retried_logged_and_not_ready(
    tmp_path: Path,
    secure_broker: Mosquitto,
    influxdb1: InfluxDB1,
    ingestd_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong-password")
    with pytest.raises(TimeoutError):
        ingestd_factory(
            secure_broker,
            influxdb1.influx_settings(),
            mqtt={
                "username": "ingestd",
                "password_env": "TEST_MQTT_PASSWORD",
                "ca_file": str(tmp_path / "ca.crt"),
                "cert_file": str(tmp_path / "client.crt"),
                "key_file": str(tmp_path / "client.key"),
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 0.5,
            },
            ready_timeout_s=3,
        )
    log_path = tmp_path / "ingestd.log"
    wait_until(lambda: log_path.read_text().count("mqtt_connect_failed") >= 2, 10, "a retry")
    assert "wrong-password" not in log_path.read_text()
