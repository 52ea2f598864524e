"""MQTT reason codes as words, for log lines a person can act on ("not authorized", not "135").

MQTT 5 has one table of reason codes shared by every packet (section 2.4); MQTT 3.1.1 has its
own CONNACK return codes (section 3.2.2.3) and a single SUBACK failure code, 0x80.
"""

from __future__ import annotations

V311_CONNACK = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

V5 = {
    0x00: "success",
    0x01: "granted QoS 1",
    0x02: "granted QoS 2",
    0x04: "disconnect with will message",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


def reason_words(code: int, v5: bool, connack: bool = False) -> str:
    """'not authorized (0x87)': the words, with the code for searching the spec."""
    if v5:
        words = V5.get(code)
    elif connack:
        words = V311_CONNACK.get(code)
    else:
        words = "failure" if code == 0x80 else None
    return f"{words or 'unknown reason'} (0x{code:02x})"


def refused(code: int) -> bool:
    """A SUBACK code (either version) that grants nothing."""
    return code >= 0x80
