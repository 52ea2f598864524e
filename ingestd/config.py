"""Settings, declared once: TOML validated by pydantic. Secrets come from env vars or files."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ingestd.errors import ConfigError
from ingestd.topics import filter_matches

FieldType = Literal["float", "int", "bool", "string"]
TimeUnit = Literal["auto", "s", "ms", "us", "ns"]

PositiveFloat = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(env: str | None, file: Path | None, key: str) -> str | None:
    """The secret named by an env var or a file; never stored in the TOML itself."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(key + "_env", f"environment variable {env} is not set")
        return value
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(key + "_file", f"cannot read {file}: {exc.strerror}") from exc
    return None


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topics: list[str] = Field(default_factory=lambda: ["sensors/#"], min_length=1)
    qos: Literal[0, 1, 2] = 1
    client_id: str = "ingestd"
    clean_session: bool = False
    keepalive_s: int = Field(30, ge=5, le=65535)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    # "native": ingestd's own asyncio MQTT protocol (ingestd/mqtt/native.py); "paho": aiomqtt over
    # paho-mqtt. Same features; benchmarks/README.md compares them.
    transport: Literal["native", "paho"] = "native"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    reconnect_min_s: PositiveFloat = 0.5
    reconnect_max_s: PositiveFloat = 30.0
    # QoS 1: acknowledge a message only once it is stored (after_write), or on receipt as most
    # clients do. Stored means written to the database or dead-lettered.
    ack: Literal["after_write", "on_receipt"] = "after_write"
    # Retained messages the broker replays on every (re)subscribe: stale readings that would be
    # stored again with a new receive time. `skip` counts and acks them; live messages published
    # with the retain flag still arrive without it (MQTT 3.1.1 section 3.3.1.3) and are ingested.
    retained: Literal["skip", "ingest"] = "skip"
    # The broker's in-flight window (mosquitto's max_inflight_messages, 20 by default): it sends
    # no more until we ack, so a write is committed as soon as this many messages await an ack.
    # MQTT 5 sends it as Receive Maximum, so the broker's window is this whatever its config;
    # on 3.1.1 set it to the broker's (`ingestd check --connect` measures it).
    max_inflight: int = Field(20, ge=1, le=65535)
    # MQTT 5, persistent sessions (clean_session = false): how long the broker keeps ingestd's
    # session (its subscriptions, its queue, the unacked window) while ingestd is away. Past
    # it, the broker discards the queue: size it to the longest outage ingestd may have (a
    # day by default). 0 ends the session at disconnect. On 3.1.1 the broker decides
    # (mosquitto: persistent_client_expiration).
    session_expiry_s: int = Field(86_400, ge=0, le=0xFFFFFFFF)
    # The largest packet ingestd buffers: the native transport reads past a larger PUBLISH and
    # dead-letters it (its first 4 KiB, size and SHA-256), hangs up on any other larger packet
    # (a protocol error, counted), and MQTT 5 sends it as Maximum Packet Size, so the broker
    # never sends more. Default: the 64 KiB payload limit, a topic of up to
    # 64 KiB, and the headers. Set the broker's max_packet_size too (mosquitto/mosquitto.conf).
    max_packet_bytes: int = Field(135_168, ge=1024, le=268_435_460)
    # A subscription the broker refuses (SUBACK 0x80 and up): "exit" drains what was received,
    # acks it, and exits non-zero; "continue" logs the error and ingests the granted ones.
    on_subscription_refused: Literal["exit", "continue"] = "exit"
    # Read the broker's own counters where it publishes them (Mosquitto's $SYS, every
    # sys_interval): messages it dropped (a full queue: max_queued_messages) and messages it
    # holds. Exported as ingestd_broker_*; a growing drop count is logged as a warning with
    # the fix. Subscribed at QoS 0; a broker that refuses them (ACL) only costs a log line.
    broker_stats: bool = True
    # The ack watchdog: a message still unacknowledged this long while the database takes
    # writes is a stall (logged as an error, /readyz 503). Default: 2 x (batch.flush_interval_s
    # + influx.timeout_s), the time one batch takes to fill and be written, twice.
    ack_overdue_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _client_cert_pairs(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return self

    @model_validator(mode="after")
    def _a_session_has_a_name(self) -> MqttSettings:
        if not self.client_id and not self.clean_session:
            raise ValueError(
                "a persistent session (clean_session = false) needs a stable client_id: with "
                "none, an MQTT 5 broker assigns a new one on every connection, and the queue "
                "kept for the last one is never delivered (3.1.1 brokers refuse the connection)"
            )
        return self

    @model_validator(mode="after")
    def _paho_has_no_qos2(self) -> MqttSettings:
        if self.transport == "paho" and self.qos == 2:
            raise ValueError(
                "qos = 2 needs transport = 'native': paho sends PUBREC before ingestd has "
                "stored the message, and in manual-ack mode it never answers a PUBREL for a "
                "packet id it does not know, which stalls a persistent session after a restart "
                "(paho-mqtt _handle_pubrel). Use qos = 1 with paho."
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    @property
    def password_in_plaintext(self) -> bool:
        """A password sent without TLS to a broker that is not on this host: anyone on the path
        reads it (and the data)."""
        has_password = self.password_env is not None or self.password_file is not None
        loopback = self.host in ("localhost", "::1") or self.host.startswith("127.")
        return has_password and not self.tls_enabled and not loopback

    def password(self) -> str | None:
        return read_secret(self.password_env, self.password_file, "mqtt.password")


class InfluxSettings(_Section):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v2"
    # v2
    org: str | None = None
    bucket: str | None = None
    token_env: str | None = None
    token_file: Path | None = None
    # v1
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    timeout_s: PositiveFloat = 10.0
    gzip: bool = False
    # A 400 is bisected until each refused line stands alone: k bad lines in n cost about
    # 2k·log2(n) requests, so a batch of nothing but bad lines would cost 2n (9,999 for 5,000).
    # Past this many requests for one batch, each part still refused is dead-lettered whole
    # (rejected_by_sink, replayable) instead of split further. 256 isolates up to ~10 bad lines
    # in a 5,000-line batch exactly.
    max_bisect_requests: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _api_keys(self) -> InfluxSettings:
        if self.api == "v2" and not self.bucket:
            raise ValueError("api = 'v2' needs bucket (and org, token_env for InfluxDB 2.x)")
        if self.api == "v1" and not self.database:
            raise ValueError("api = 'v1' needs database")
        return self

    def token(self) -> str | None:
        return read_secret(self.token_env, self.token_file, "influx.token")

    def password(self) -> str | None:
        return read_secret(self.password_env, self.password_file, "influx.password")


class BatchSettings(_Section):
    max_lines: int = Field(5000, ge=1, le=1_000_000)
    flush_interval_s: PositiveFloat = 1.0
    # ~390 bytes of RSS per buffered line (p4n4): 20k lines bound a burst at ~8 MB of buffer;
    # a fuller buffer overflows to the disk spool, or pauses reading without one
    buffer_max_lines: int = Field(20_000, ge=1)
    # ...and at most this many payload bytes (what each buffered message keeps, and what its
    # lines are made from): 20k lines of 64 KiB messages would otherwise hold over a gigabyte
    buffer_max_bytes: int = Field(32 * 1024 * 1024, ge=65536)
    retry_initial_s: PositiveFloat = 0.5
    retry_max_s: PositiveFloat = 30.0

    @model_validator(mode="after")
    def _buffer_holds_a_batch(self) -> BatchSettings:
        if self.buffer_max_lines < self.max_lines:
            raise ValueError("buffer_max_lines must be at least max_lines")
        return self


class LimitSettings(_Section):
    """What one publisher can cost. Beyond each, the message is dead-lettered with a reason."""

    max_payload_bytes: int = Field(65536, ge=1)  # rejected before parsing: payload_too_large
    max_readings: int = Field(1000, ge=1)  # fields in one message: limit_exceeded
    max_tag_value_bytes: int = Field(256, ge=1)  # one tag value, UTF-8: limit_exceeded
    # a measurement name, tag key or field key, UTF-8: limit_exceeded (InfluxDB takes 64 KiB,
    # and every one of them is repeated in the series index and in each line)
    max_key_bytes: int = Field(256, ge=1)
    # distinct series (measurement + tag set) per route, so that a publisher inventing device
    # ids cannot blow up the database's series index: cardinality_limit. 100,000 holds the
    # simulator's 20,000-device mixed fleet (60,000 series on its busiest route) with room.
    max_series_per_route: int = Field(100_000, ge=1)
    # ...and per identity on a route (routes' `identity`, default the {device} level), so that
    # one device inventing measurements or tags cannot spend the route's budget for the others
    max_series_per_device: int = Field(1_000, ge=1)


class DeadLetterSettings(_Section):
    path: Path = Path("deadletters.jsonl")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    mqtt_topic: str | None = None
    log_interval_s: float = Field(10.0, ge=0)


class HttpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class SpoolSettings(_Section):
    """Where batches go when the database cannot take them (see README, "What ingestd guarantees")."""

    enabled: bool = True
    path: Path = Path("spool")
    max_bytes: int = Field(1024**3, ge=1024 * 1024)
    max_age_s: float = Field(7 * 86400, gt=0)  # older batches are dropped on replay: spool_expired
    segment_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    # fsync each spooled batch (one per batch, never per message): survives power loss. false:
    # the OS writes it back when it likes, which spares an SD card; survives a crash of ingestd.
    fsync: bool = True
    # when max_bytes is reached: block (stop reading; QoS 1 leaves the rest with the broker),
    # drop_oldest or drop_newest (counted and logged as spool_full)
    on_full: Literal["block", "drop_oldest", "drop_newest"] = "block"


class SelfMetricsSettings(_Section):
    """ingestd's own counters written into the database at an interval, as Telegraf's internal
    plugin does, so a Grafana on the same InfluxDB shows ingestd's health without Prometheus."""

    interval_s: float = Field(10.0, ge=0)  # 0 turns it off
    measurement: str = Field("ingestd", min_length=1)
    # where they go: a database (api v1) or bucket (v2) of their own, never the sensors', so
    # sensor dashboards and queries never see them (their int and float fields would collide
    # with a sensor's in one query). ingestd creates the database on v1; the stack's InfluxDB
    # init creates the bucket on v2.
    database: str = Field("ingestd", min_length=1)

    def influx(self, influx: InfluxSettings) -> InfluxSettings:
        """The database settings for these reports: the sensors' server, this database."""
        key = "database" if influx.api == "v1" else "bucket"
        return influx.model_copy(update={key: self.database})


class EventsSettings(_Section):
    """Device events (ingestd/events.py), published at QoS 1 through a bounded outbox."""

    # a device's first sighting publishes ingestd/events/device_new (the broker's ACL must let
    # ingestd write ingestd/events/#: mosquitto/acl does)
    enabled: bool = False
    max_pending: int = Field(10_000, ge=1)  # events waiting for the broker; past it, the oldest go
    # alert transitions are also POSTed here as JSON (retried like the MQTT ones); none: not
    webhook_url: str | None = None
    retry_min_s: PositiveFloat = 0.5
    retry_max_s: PositiveFloat = 30.0


class AlertSettings(_Section):
    """One alert rule (ingestd/alerts.py): one field of one measurement, per series."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")  # in the topic: alerts/raw/<device>/<name>
    measurement: str = Field(min_length=1)
    field: str = "value"
    above: float | None = None  # open when the value goes above this...
    below: float | None = None  # ...or below this (both: outside a range)
    # ...and close only once it is back past the threshold by this much
    hysteresis: float = Field(0.0, ge=0)
    silent_s: float = Field(0.0, ge=0)  # open when a series sends nothing for this long
    # open when the value changes faster than this per second, measured over rate_window_s (the
    # change since the first reading of the window, once the window has passed)
    rate_per_s: float | None = Field(None, gt=0)
    rate_window_s: float = Field(60.0, gt=0)
    min_interval_s: float = Field(0.0, ge=0)  # at most one opening per series in this time

    @model_validator(mode="after")
    def _has_a_condition(self) -> AlertSettings:
        if (
            self.above is None
            and self.below is None
            and not self.silent_s
            and self.rate_per_s is None
        ):
            raise ValueError("set above, below, rate_per_s or silent_s")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError("below must be under above (an alert outside [below, above])")
        return self


class StateSettings(_Section):
    """What ingestd remembers across restarts besides the spool: the Sparkplug B alias maps
    (one JSON file per format with memory)."""

    path: Path = Path("state")


class LogSettings(_Section):
    format: Literal["auto", "console", "json"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class ShutdownSettings(_Section):
    drain_timeout_s: PositiveFloat = 10.0


class FieldBand(_Section):
    deadband: float = Field(0.0, ge=0)
    deadband_percent: float = Field(0.0, ge=0)


class ReportSettings(_Section):
    """Report by exception (ingestd/report.py): which of a route's readings are written."""

    # a numeric field must move more than this since the last point written of its series...
    deadband: float = Field(0.0, ge=0)
    # ...or more than this percentage of that value; text and booleans: any change
    deadband_percent: float = Field(0.0, ge=0)
    # per field, overriding the two above: { power = { deadband = 5 } }
    fields: dict[str, FieldBand] = Field(default_factory=dict)
    # write a point at least this often per series anyway (0: never forced), so a flat line shows
    heartbeat_s: float = Field(0.0, ge=0)
    # the same fields again within this window: written once (Zigbee2MQTT repeats itself)
    dedup_window_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _does_something(self) -> ReportSettings:
        if not (self.deadband or self.deadband_percent or self.fields or self.dedup_window_s):
            raise ValueError("set deadband, deadband_percent, fields or dedup_window_s")
        return self


class RouteSettings(_Section):
    # default: the format's own topics (an ecosystem format; required for the others)
    topic: str | None = None
    # value, object, ignore, or an ecosystem (ingestd/formats/: zigbee2mqtt, tasmota, ...)
    format: str = "value"
    measurement: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    # value format
    value_key: str = "v"
    field: str = "value"
    # object format
    readings: str | None = None
    tag_keys: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    # both
    time_key: str | None = "ts"
    time_unit: TimeUnit = "auto"
    timezone: str = "UTC"
    units: dict[str, str] = Field(default_factory=dict)
    types: dict[str, FieldType] = Field(default_factory=dict)
    # Report by exception: write a reading only when it changed (see ReportSettings)
    report: ReportSettings | None = None
    # The topic level that is the publisher's authenticated identity: the level a broker ACL
    # pattern fixes to the account name (mosquitto: `pattern write sensors/%u/+`). Default
    # {device} when the topic has one. Series budgets count per identity
    # (limits.max_series_per_device), and `ingestd check --acl` warns where an account could
    # publish on this route as another identity.
    identity: str | None = None
    # sparkplug_b: publish a rebirth request (NCMD Node Control/Rebirth, QoS 0, not retained,
    # at most one per node every 30 s) when a DATA names an alias no birth defined, or a
    # session's seq skips (messages lost)
    request_rebirth: bool = False


DEFAULT_ROUTES = (RouteSettings(topic="sensors/{device}/{measurement}", format="value"),)


class Settings(_Section):
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    influx: InfluxSettings
    batch: BatchSettings = Field(default_factory=BatchSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    deadletter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    # alert rules; their transitions go out through the events outbox (published whether or
    # not events.enabled, which is about device events)
    alerts: list[AlertSettings] = Field(default_factory=list)
    self_metrics: SelfMetricsSettings = Field(default_factory=SelfMetricsSettings)
    routes: list[RouteSettings] = Field(default_factory=lambda: list(DEFAULT_ROUTES))

    @model_validator(mode="after")
    def _deadletters_do_not_loop(self) -> Settings:
        topic = self.deadletter.mqtt_topic
        if topic and any(filter_matches(f, topic) for f in self.mqtt.topics):
            raise ValueError(
                f"deadletter.mqtt_topic {topic!r} is under mqtt.topics: ingestd would read its own dead letters"
            )
        return self

    @model_validator(mode="after")
    def _alert_names_are_unique(self) -> Settings:
        names = [rule.name for rule in self.alerts]
        if len(names) != len(set(names)):
            raise ValueError("two [[alerts]] have the same name")
        return self

    def secrets(self) -> list[tuple[str, str | None, Path | None]]:
        """Each secret these settings name, as (key, env var, file)."""
        m, i = self.mqtt, self.influx
        used = [
            ("mqtt.password", m.password_env, m.password_file),
            ("influx.token", i.token_env, i.token_file)
            if i.api == "v2"
            else ("influx.password", i.password_env, i.password_file),
        ]
        return [(key, env, file) for key, env, file in used if env is not None or file is not None]

    def check_secrets(self) -> None:
        """Read every secret up front, so a missing env var or file is one config error naming
        all of them, not a crash later."""
        problems = []
        for key, env, file in self.secrets():
            try:
                read_secret(env, file, key)
            except ConfigError as exc:
                problems.append(exc)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise ConfigError("", "; ".join(str(problem) for problem in problems))

    @property
    def ack_overdue_s(self) -> float:
        """How long a message may wait for its ack while the database takes writes."""
        if self.mqtt.ack_overdue_s is not None:
            return self.mqtt.ack_overdue_s
        return 2 * (self.batch.flush_interval_s + self.influx.timeout_s)


def key_path(loc: tuple[int | str, ...]) -> str:
    """('routes', 0, 'units') -> 'routes[0].units'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: object, unset: dict[str, str], path: tuple[str | int, ...] = ()) -> object:
    """`${NAME}` and `${NAME:-default}` in string values, from the environment, as compose does:
    one config file serves every deployment (org, bucket, host names come from the stack's .env).
    `$${` is a literal `${`. Secrets still go through *_env / *_file keys, which take names, not
    values. A reference to an unset variable without a default is left as written, and recorded
    in `unset` (variable -> the first key path that names it)."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            unset.setdefault(name, key_path(path))
            return match.group(0)

        parts = value.split("$${")
        return "${".join(_ENV_REFERENCE.sub(substitute, part) for part in parts)
    if isinstance(value, dict):
        return {k: expand_env(v, unset, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, unset, (*path, i)) for i, v in enumerate(value)]
    return value


def unset_variables_error(unset: dict[str, str]) -> ConfigError:
    """All of them at once, so a new deployment learns its whole environment in one run."""
    named = ", ".join(f"{name} ({key})" for name, key in unset.items())
    first_key = next(iter(unset.values()))
    plural = "s" if len(unset) > 1 else ""
    return ConfigError(
        first_key if len(unset) == 1 else "",
        f"environment variable{plural} not set: {named}",
    )


def parse_settings(data: dict[str, object]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(
            p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(key_path(loc), msg) from exc


def load_settings(path: Path, unset: dict[str, str] | None = None) -> Settings:
    """The settings in a TOML file, with ${NAME} references expanded. A reference to an unset
    variable is a ConfigError naming every such variable, unless `unset` is given: then each
    stays as written (`ingestd check --no-secrets`) and is recorded there."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    found: dict[str, str] = {}
    expanded = expand_env(data, found)
    assert isinstance(expanded, dict)
    if found and unset is None:
        raise unset_variables_error(found)
    if unset is not None:
        unset.update(found)
    return parse_settings(expanded)
