"""`ingestd deadletter replay`: re-submit dead letters after a route or a unit was fixed.

The selected letters go through the current configuration's pipeline and sink, as if they had
just arrived (with their original receive time). What is written leaves the file; what is
refused again stays, with its new reason; letters not selected stay as they were. The file is
rewritten atomically, and only while no ingestd holds it (the daemon keeps an exclusive lock).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ingestd.buffer import MemoryBuffer
from ingestd.config import Settings
from ingestd.deadletter import read_dead_letters, to_json
from ingestd.errors import DropReason, IngestdError, RetryableSinkError
from ingestd.pipeline import Pipeline
from ingestd.privatefiles import lock_exclusive, open_private
from ingestd.records import DeadLetter, RawMessage
from ingestd.routes import compile_routes
from ingestd.sink import InfluxSink
from ingestd.statefiles import FIELD_TYPES, StateFiles
from ingestd.telemetry import Telemetry
from ingestd.timestamps import to_ns


@dataclass
class ReplayReport:
    selected: int = 0
    written_messages: int = 0
    ignored: int = 0
    rejected_again: Counter[str] = field(default_factory=Counter)
    kept: int = 0


def _selected(
    letter: DeadLetter, reasons: set[str], since_ns: int | None, until_ns: int | None
) -> bool:
    if letter.payload_bytes is not None:  # only its first bytes were kept: nothing to replay
        return False
    if reasons and letter.reason not in reasons:
        return False
    if since_ns is not None and letter.dead_lettered_ns < since_ns:
        return False
    return until_ns is None or letter.dead_lettered_ns < until_ns


async def replay(
    settings: Settings,
    path: Path,
    reasons: set[str],
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> ReplayReport:
    report = ReplayReport()
    with path.open("rb+") as locked:
        if not lock_exclusive(locked):
            raise IngestdError(f"{path} is in use by a running ingestd: stop it first")
        letters = read_dead_letters(path)
        chosen = [letter for letter in letters if _selected(letter, reasons, since_ns, until_ns)]
        keep = [letter for letter in letters if not _selected(letter, reasons, since_ns, until_ns)]
        report.selected, report.kept = len(chosen), len(keep)
        again: list[DeadLetter] = []
        telemetry = Telemetry()
        buffer = MemoryBuffer(max(len(chosen) * settings.limits.max_readings, 1))
        state_files = StateFiles(settings.state.path)  # the births seen since (Sparkplug)
        pipeline = Pipeline(
            compile_routes(settings),
            buffer,
            telemetry,
            again.append,
            settings.limits,
            save_state=state_files.save,
        )
        # what ingestd has learned since: the births, the field types, and the database's types
        # (a line once refused for a type conflict is now coerced, when that is lossless)
        state_files.load({**pipeline.format_states, FIELD_TYPES: pipeline.field_types})
        sink = InfluxSink(settings.influx)
        with contextlib.suppress(IngestdError):  # RetryableSinkError too: writes will tell
            pipeline.field_types.learn_database(await sink.field_types())
        for letter in chosen:
            pipeline.handle(RawMessage(letter.topic, letter.payload, letter.received_ns))
        report.ignored = telemetry.messages_ignored
        written: set[int] = set()
        refused: set[int] = set()
        try:
            while (batch := buffer.take(settings.batch.max_lines)) is not None:
                try:
                    rejected = await sink.write(batch.lines)
                except RetryableSinkError as exc:
                    raise IngestdError(
                        f"the database is not taking writes ({exc}); nothing was changed"
                    ) from exc
                for rejection in rejected:
                    origin = batch.origins[rejection.index]
                    refused.add(id(origin))
                    pipeline.reject(
                        origin,
                        DropReason.REJECTED_BY_SINK,
                        rejection.detail,
                        line=batch.lines[rejection.index],
                    )
                written.update(id(message) for message in batch.messages())
                buffer.accept(batch)
        finally:
            await sink.close()
        report.written_messages = len(written - refused)
        report.rejected_again = Counter(letter.reason for letter in again)
        temporary = path.with_name(path.name + ".replaying")
        with open_private(temporary, "wb") as out:
            for letter in keep + again:
                out.write(to_json(letter))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    return report


def parse_time(text: str) -> int:
    """An ISO-8601 time or epoch seconds/ms/us/ns, as for payload timestamps."""
    return to_ns(int(text) if text.isdigit() else text)
