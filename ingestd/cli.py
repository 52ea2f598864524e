"""Entry point: argparse and exit codes. The only place that calls sys.exit.

  ingestd --config ingest.toml                      run the daemon (also: ingestd run ...)
  ingestd check --config ingest.toml [--connect]    validate the config, optionally reach servers
  ingestd check --config ingest.toml --topic T --payload P   (or --payload-hex, --payload-file)
  ingestd check --config ingest.toml --messages M.jsonl      a sequence, in order
                                                    print the line protocol, or the drop reason
  ingestd discover [--config F] [--seconds 30]      listen to a broker, print routes for it
  ingestd local [--api v1|v2] [--config FILE]      broker + database + ingestd, no Docker
  ingestd simulate --devices N --rate R ...         a fleet of simulated devices (load, demo)

Exit codes: 0 clean shutdown / check passed, 1 check found a problem or a task died,
2 bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
from pathlib import Path

from ingestd import __version__
from ingestd.config import MqttSettings, Settings, load_settings
from ingestd.errors import ConfigError, DropReason, IngestdError
from ingestd.logs import configure_logging

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_FAILED = 1  # the daemon stopped because a task died of an unexpected error
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingestd",
        description="MQTT in, InfluxDB line protocol out: validated, batched, with "
        "backpressure; every message is written, or dead-lettered with its reason.",
        epilog="exit codes: 0 clean shutdown or check passed; 1 a check found a problem, or "
        "the daemon stopped because it could not continue; 2 bad configuration",
    )
    parser.add_argument("--version", action="version", version=f"ingestd {__version__}")
    config_help = "the configuration file (TOML; see compose/ingest.toml for every key)"
    parser.add_argument("--config", type=Path, help=config_help + "; runs the daemon")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the daemon (the default)")
    run.add_argument("--config", type=Path, required=True, dest="config", help=config_help)
    check = sub.add_parser("check", help="validate the config, or show what a message becomes")
    check.add_argument("--config", type=Path, required=True, dest="config", help=config_help)
    check.add_argument(
        "--connect", action="store_true", help="also reach the broker and the database"
    )
    check.add_argument(
        "--no-secrets",
        action="store_true",
        help="check without the deployment's environment: unset ${NAME} references stay as "
        "written and secrets are not read (they are listed instead)",
    )
    check.add_argument(
        "--acl",
        type=Path,
        help="the broker's ACL file (mosquitto acl_file): check that no account can publish on "
        "a route as another device (see the routes' identity)",
    )
    check.add_argument("--topic", help="an MQTT topic to try, with one of the payload options")
    payload = check.add_mutually_exclusive_group()
    payload.add_argument("--payload", help="the payload to try with --topic (UTF-8 text)")
    payload.add_argument(
        "--payload-hex", help="the payload to try with --topic, as hex (binary: Sparkplug B)"
    )
    payload.add_argument(
        "--payload-file", type=Path, help="the payload to try with --topic: this file's bytes"
    )
    check.add_argument(
        "--messages",
        type=Path,
        help="try a sequence of messages, in order (a DBIRTH before its DDATA): JSON lines of "
        '{"topic", and "payload" (text), "payload_hex" or "payload_b64"}; a dead-letter file '
        "is one",
    )
    deadletter = sub.add_parser("deadletter", help="work with the dead letters")
    dl_sub = deadletter.add_subparsers(dest="deadletter_command", required=True)
    replay = dl_sub.add_parser(
        "replay", help="re-submit dead letters through the current config (stop ingestd first)"
    )
    replay.add_argument("--config", type=Path, required=True, dest="config", help=config_help)
    replay.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=[reason.value for reason in DropReason],
        metavar="REASON",
        help="only letters dead-lettered for this reason (repeatable): "
        + ", ".join(reason.value for reason in DropReason),
    )
    replay.add_argument(
        "--since", help="only letters dead-lettered at or after (ISO-8601 or epoch)"
    )
    replay.add_argument("--until", help="only letters dead-lettered before (ISO-8601 or epoch)")
    replay.add_argument("--file", type=Path, help="the dead-letter file (default: deadletter.path)")
    local = sub.add_parser(
        "local", help="run broker, database and ingestd here, from system packages"
    )
    local.add_argument(
        "--workdir",
        type=Path,
        default=Path(".ingestd-local"),
        help="where the servers keep their data and logs between runs (default: %(default)s)",
    )
    local.add_argument(
        "--api",
        choices=["v1", "v2"],
        default="v1",
        help="v1: InfluxDB 1.6 (Debian's influxdb); v2: VictoriaMetrics",
    )
    local.add_argument(
        "--config",
        type=Path,
        dest="config",
        help="run this config's routes, topics and limits against the local servers "
        "(default: ./ingest.toml if there is one, else the demo routes)",
    )
    local.add_argument(
        "--mqtt-port", type=int, default=1884, help="1883 is often the system broker"
    )
    local.add_argument(
        "--database-port",
        type=int,
        default=8186,
        help="the database's HTTP port (InfluxDB 1.6 also takes the next one)",
    )
    local.add_argument(
        "--http-port", type=int, default=9108, help="ingestd's /metrics and /readyz port"
    )
    local.add_argument(
        "--servers-only",
        action="store_true",
        help="start the broker and the database but not ingestd (for deadletter replay)",
    )
    discover = sub.add_parser(
        "discover",
        help="listen to a broker for a while, write nothing, and print the routes for what it heard",
    )
    discover.add_argument(
        "--config",
        type=Path,
        dest="config",
        help="take the broker and its credentials from this config's [mqtt] (default: --host)",
    )
    discover.add_argument("--host", help="the broker (default: the config's, else 127.0.0.1)")
    discover.add_argument(
        "--port", type=int, help="the broker's port (default: the config's, else 1883)"
    )
    discover.add_argument(
        "--seconds", type=float, default=30.0, help="how long to listen (default: %(default)s)"
    )
    simulate = sub.add_parser(
        "simulate",
        help="a fleet of simulated devices publishing to a broker (see: ingestd simulate -h)",
        add_help=False,
    )
    simulate.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _run(settings: Settings) -> int:
    from ingestd.service import run_service

    return EXIT_FAILED if run_service(settings) else EXIT_OK


async def _connect(settings: Settings) -> list[str]:
    from ingestd.mqtt.client import connection_errors_of, new_client
    from ingestd.sink import InfluxSink

    problems = []
    sink = InfluxSink(settings.influx)
    try:
        version = await sink.ping()
        print(f"database: reachable at {settings.influx.url} (version {version})")
        await sink.write([])  # an empty write checks auth and the bucket/database
    except IngestdError as exc:
        problems.append(f"database: {exc}")
    finally:
        await sink.close()
    m = settings.mqtt
    try:
        check = m.model_copy(update={"client_id": f"{m.client_id}-check", "clean_session": True})
        async with new_client(check, lambda *_message: None, False, lambda _oversized: None):
            print(f"broker: connected to {m.host}:{m.port}")
        if m.qos and m.ack == "after_write":
            problems += await _window(m)
    except connection_errors_of(m) as exc:
        problems.append(f"broker: {exc}")
    return problems


async def _window(m: MqttSettings) -> list[str]:
    """Measure the broker's in-flight window and compare it with mqtt.max_inflight."""
    from ingestd.mqtt.probe import inflight_window

    arrived, sent = await inflight_window(m)
    if arrived == 0:
        return [
            "broker: the in-flight window could not be measured: none of the probe's QoS 1 "
            "messages came back (the ACL must let this account read and write ingestd/check/#)"
        ]
    if arrived >= sent:
        print(f"broker: no in-flight window below {sent} messages (mqtt.max_inflight = "
              f"{m.max_inflight}: ingestd writes at that many)")  # fmt: skip
        return []
    print(f"broker: in-flight window {arrived} unacked QoS 1 messages "
          f"(mqtt.max_inflight = {m.max_inflight})")  # fmt: skip
    if arrived < m.max_inflight:
        return [
            f"broker: it sends at most {arrived} unacked messages, fewer than mqtt.max_inflight "
            f"= {m.max_inflight}, so every batch waits out batch.flush_interval_s: set "
            f"mqtt.max_inflight = {arrived}, or raise the broker's max_inflight_messages"
            + (" (it ignored the Receive Maximum ingestd sent)" if m.protocol == "5" else "")
        ]
    return []


def _discover(args: argparse.Namespace) -> int:
    from ingestd.config import MqttSettings
    from ingestd.discover import Discovery, listen
    from ingestd.mqtt.client import connection_errors_of

    try:
        mqtt = load_settings(args.config).mqtt if args.config is not None else MqttSettings()
    except ConfigError as exc:
        print(f"ingestd discover: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging("auto", "warning")
    overrides = {key: getattr(args, key) for key in ("host", "port") if getattr(args, key)}
    mqtt = mqtt.model_copy(update=overrides)
    errors: tuple[type[Exception], ...] = (IngestdError, *connection_errors_of(mqtt))
    discovery = Discovery()
    try:
        asyncio.run(listen(mqtt, args.seconds, discovery))
    except errors as exc:
        print(f"ingestd discover: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    print(discovery.report(args.seconds, f"{mqtt.host}:{mqtt.port}"), end="")
    return EXIT_OK


def _messages_to_check(args: argparse.Namespace) -> list[tuple[str, bytes]]:
    """The messages `check` was given, as (topic, payload); [] when it checks the config."""
    if args.messages is not None:
        return read_messages(args.messages)
    if args.topic is None:
        if args.payload is not None or args.payload_hex is not None or args.payload_file:
            raise ConfigError("--topic", "a payload option needs --topic")
        return []
    if args.payload_hex is not None:
        try:
            return [(args.topic, bytes.fromhex(args.payload_hex))]
        except ValueError as exc:
            raise ConfigError("--payload-hex", str(exc)) from exc
    if args.payload_file is not None:
        try:
            return [(args.topic, args.payload_file.read_bytes())]
        except OSError as exc:
            raise ConfigError("--payload-file", f"cannot read it: {exc.strerror}") from exc
    return [(args.topic, (args.payload or "").encode("utf-8"))]


def read_messages(path: Path) -> list[tuple[str, bytes]]:
    """JSON lines of {"topic", "payload" | "payload_hex" | "payload_b64"}, as (topic, payload)."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--messages", f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            topic = record["topic"]
            if "payload_hex" in record:
                payload = bytes.fromhex(record["payload_hex"])
            elif "payload_b64" in record:
                payload = base64.b64decode(record["payload_b64"], validate=True)
            else:
                payload = str(record.get("payload", "")).encode("utf-8")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ConfigError("--messages", f"{path} line {number}: {exc!r}") from exc
        if not isinstance(topic, str):
            raise ConfigError("--messages", f"{path} line {number}: topic is not a string")
        out.append((topic, payload))
    return out


def _check(args: argparse.Namespace, settings: Settings, unset: dict[str, str]) -> int:
    from ingestd.routes import compile_routes
    from ingestd.service import check_messages

    table = compile_routes(settings)
    messages = _messages_to_check(args)
    if messages:
        results = check_messages(settings, messages)
        for (topic, _payload), (lines, reason, suppressed) in zip(messages, results, strict=True):
            if len(messages) > 1:
                print(f"# {topic}")
            if reason is not None:
                print(f"dead-letter: {reason}")
            elif suppressed is not None:
                print(f"suppressed (report by exception): {', '.join(suppressed)}")
            elif lines is None:
                print(
                    "ignored: not a reading (its route or format skips this topic, "
                    "or the payload holds none)"
                )
            else:
                print("\n".join(lines))
        failed = any(checked.reason is not None for checked in results)
        return EXIT_CHECK_FAILED if failed else EXIT_OK
    if not args.no_secrets:
        settings.check_secrets()
    print(f"config: {args.config} is valid ({len(settings.routes)} routes)")
    if args.acl is not None:
        from ingestd.acl import check_acl

        disagreements = check_acl(args.acl, table.routes)
        for found in disagreements:
            print(f"warning: {found}", file=sys.stderr)
        if disagreements:
            return EXIT_CHECK_FAILED
        print(f"acl: {args.acl} lets no account publish on a route as another device")
    if args.no_secrets:
        names = ", ".join(f"{name} ({key})" for name, key in unset.items()) or "none"
        secrets = ", ".join(key for key, _env, _file in settings.secrets()) or "none"
        print(f"not resolved (--no-secrets): environment variables {names}; secrets {secrets}")
    if args.connect:
        problems = asyncio.run(_connect(settings))
        for problem in problems:
            print(problem, file=sys.stderr)
        return EXIT_CHECK_FAILED if problems else EXIT_OK
    return EXIT_OK


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from ingestd.replay import parse_time, replay

    settings.check_secrets()
    path = args.file or settings.deadletter.path
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except IngestdError as exc:
        print(f"ingestd: --since/--until: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        report = asyncio.run(replay(settings, path, set(args.reason), since, until))
    except (IngestdError, OSError) as exc:
        print(f"ingestd: replay: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    again = sum(report.rejected_again.values())
    reasons = ", ".join(
        f"{count} {reason}" for reason, count in report.rejected_again.most_common()
    )
    print(
        f"replayed {report.selected} dead letters: {report.written_messages} written, "
        f"{report.ignored} ignored, {again} dead-lettered again"
        + (f" ({reasons})" if again else "")
        + f"; {report.kept} not selected, left in {path}"
    )
    return EXIT_OK if again == 0 else EXIT_CHECK_FAILED


def run_cli(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # its own parser: argparse.REMAINDER drops leading options
        from ingestd.sim.simulate import main as simulate_main

        return simulate_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "local":
        try:
            from ingestd.devtools.local import run_local
        except ModuleNotFoundError:  # the container image ships the daemon and the simulator
            print(
                "ingestd local: not in this installation (the image has no ingestd.devtools, "
                "nor the mosquitto and influxd it starts); run it from a source checkout",
                file=sys.stderr,
            )
            return EXIT_CHECK_FAILED
        try:
            failed = run_local(
                args.workdir,
                args.api,
                config=args.config,
                mqtt_port=args.mqtt_port,
                database_port=args.database_port,
                http_port=args.http_port,
                servers_only=args.servers_only,
            )
        except KeyboardInterrupt:  # Ctrl-C while the servers start: they are stopped already
            return EXIT_OK
        except ConfigError as exc:
            print(f"ingestd local: config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except (RuntimeError, OSError) as exc:
            print(f"ingestd local: {exc}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        return EXIT_FAILED if failed else EXIT_OK
    if args.command == "discover":
        return _discover(args)
    if args.config is None:
        _parser().error("--config is required")
    no_secrets = args.command == "check" and args.no_secrets
    if no_secrets and args.connect:
        _parser().error("check: --connect needs the secrets; leave out --no-secrets")
    try:
        unset: dict[str, str] = {}
        settings = load_settings(args.config, unset if no_secrets else None)
        # before anything logs: log lines go to stderr, and stdout is the command's answer
        configure_logging(settings.log.format, settings.log.level)
        if args.command == "check":
            return _check(args, settings, unset)
        if args.command == "deadletter":
            return _replay(args, settings)
        settings.check_secrets()
        return _run(settings)
    except ConfigError as exc:
        print(f"ingestd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except IngestdError as exc:
        print(f"ingestd: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main() -> None:
    sys.exit(run_cli())
