"""A scripted MQTT broker on loopback, for wire tests of what real brokers do only sometimes.

It is a fake for fault injection, not a broker: it answers one client at a time, sends what the
script says right after CONNACK (in the same write, as a broker resuming a persistent session
does), grants or refuses subscriptions as told, answers PINGREQ and PUBREL, and records every
acknowledgement it receives. Every loop is bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

from ingestd.devtools.servers import free_port
from ingestd.mqtt.packets import string_field, varint


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int, v5: bool) -> bytes:
    body = string_field(topic.encode())
    if qos:
        body += packet_id.to_bytes(2, "big")
    if v5:
        body += b"\x00"  # no properties
    body += payload
    return bytes([0x30 | qos << 1]) + varint(len(body)) + body


@dataclass
class Received:
    """What the client sent, in order."""

    connects: int = 0
    puback: list[int] = field(default_factory=list)
    pubrec: list[int] = field(default_factory=list)
    pubcomp: list[int] = field(default_factory=list)
    subscribes: list[list[str]] = field(default_factory=list)
    pingreqs: int = 0


class ScriptedBroker:
    """`with_connack`: (topic, payload) sent with the first CONNACK, at `qos`, packet ids 1..n.
    `suback_codes`: the SUBACK code per filter (default: the QoS asked for). `hostile`: raw
    bytes sent after the first connection's SUBACK, a broker with a bug or a man in the middle."""

    def __init__(
        self,
        with_connack: list[tuple[str, bytes]],
        qos: int = 1,
        suback_codes: list[int] | None = None,
        lifetime_s: float = 60,
        hostile: bytes = b"",
    ) -> None:
        self.port = free_port()
        self.with_connack = with_connack
        self.qos = qos
        self.suback_codes = suback_codes
        self.hostile = hostile
        self.received = Received()
        self._deadline = time.monotonic() + lifetime_s
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopped = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._server.close()

    def _serve(self) -> None:
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.2)
                # a client that hangs up while we write (ingestd aborting on a hostile packet
                # still being sent) ends its session, not the broker
                with contextlib.suppress(OSError):
                    self._session(conn)

    def _read_packet(self, conn: socket.socket, buf: bytearray) -> tuple[int, bytes] | None:
        """One whole packet (first byte, body), or None when the client is gone or time is up."""
        while not self._stopped.is_set() and time.monotonic() < self._deadline:
            if len(buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(buf) and i <= 4:
                    length |= (buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not buf[i - 1] & 0x80:
                        if len(buf) >= i + length:
                            first, body = buf[0], bytes(buf[i : i + length])
                            del buf[: i + length]
                            return first, body
                        break
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not data:
                return None
            buf += data
        return None

    def _session(self, conn: socket.socket) -> None:
        buf = bytearray()
        packet = self._read_packet(conn, buf)
        if packet is None or packet[0] >> 4 != 1:
            return
        v5 = packet[1][6] == 5  # protocol level, after the "\x00\x04MQTT" name
        self.received.connects += 1
        connack = b"\x20" + (b"\x03\x01\x00\x00" if v5 else b"\x02\x01\x00")  # session present
        burst = b""
        if self.received.connects == 1:
            for i, (topic, payload) in enumerate(self.with_connack, start=1):
                burst += publish_packet(topic, payload, self.qos, i, v5)
        conn.sendall(connack + burst)  # one write: the client reads them together
        while (packet := self._read_packet(conn, buf)) is not None:
            first, body = packet
            kind = first >> 4
            if kind == 8:  # SUBSCRIBE
                self._suback(conn, body, v5)
                if self.hostile and self.received.connects == 1:
                    conn.sendall(self.hostile)
            elif kind == 12:  # PINGREQ
                self.received.pingreqs += 1
                conn.sendall(b"\xd0\x00")
            elif kind == 4:
                self.received.puback.append(int.from_bytes(body[:2], "big"))
            elif kind == 5:
                packet_id = body[:2]
                self.received.pubrec.append(int.from_bytes(packet_id, "big"))
                conn.sendall(b"\x62\x02" + packet_id)  # PUBREL
            elif kind == 7:
                self.received.pubcomp.append(int.from_bytes(body[:2], "big"))
            elif kind == 14:  # DISCONNECT
                return

    def _suback(self, conn: socket.socket, body: bytes, v5: bool) -> None:
        packet_id, i = body[:2], 2
        if v5:
            i += 1 + body[2]  # properties (short in what ingestd sends)
        filters, asked = [], []
        while i < len(body):
            n = int.from_bytes(body[i : i + 2], "big")
            filters.append(body[i + 2 : i + 2 + n].decode())
            asked.append(body[i + 2 + n] & 3)
            i += 3 + n
        self.received.subscribes.append(filters)
        codes = self.suback_codes if self.suback_codes is not None else asked
        answer = packet_id + (b"\x00" if v5 else b"") + bytes(codes[: len(filters)])
        conn.sendall(b"\x90" + varint(len(answer)) + answer)
