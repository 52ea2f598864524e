"""InfluxDB out. Maps HTTP and client errors to retryable / rejected / too large, and isolates the
lines a database refuses so that one bad line never costs its batch.

Both APIs are plain line-protocol POSTs, so one aiohttp session serves them:
- v2: `/api/v2/write?org=&bucket=&precision=ns` with `Authorization: Token ...` (InfluxDB 2.x/3.x,
  1.8+ in compatibility mode, VictoriaMetrics);
- v1: `/write?db=&rp=&precision=ns` with basic auth (InfluxDB 1.6, as Debian and Raspberry Pi OS
  ship it).
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import orjson

from ingestd.config import InfluxSettings
from ingestd.errors import BatchTooLarge, IngestdError, RejectedBySink, RetryableSinkError
from ingestd.records import Rejection, WriteProgress

# Above this many lines a 400 is bisected; a single line that still fails is the bad one.
_RETRYABLE_4XX = {401, 403, 404, 408, 409, 425, 429}


def quote_identifier(identifier: str) -> str:
    """An InfluxQL identifier, double-quoted."""
    return '"' + identifier.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Sink(Protocol):
    """The service's face of the database (InfluxSink; devtools.fakes.FakeSink in tests)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def prepare(self) -> str:
        """Make the destination ready to take writes, at startup; returns what it found."""
        ...

    async def write(self, lines: list[str], resume: WriteProgress | None = None) -> list[Rejection]:
        """Write what the database accepts, return what it refuses; raise RetryableSinkError
        (with the progress made) when it cannot take writes now."""
        ...

    async def field_types(self) -> dict[tuple[str, str], str]:
        """(measurement, field) -> the InfluxDB type the database already holds; raise
        RetryableSinkError when it cannot be asked now, IngestdError when it cannot tell."""
        ...


class InfluxSink:
    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        base = settings.url.rstrip("/")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.api == "v2":
            self.write_url = f"{base}/api/v2/write"
            self.params = {"bucket": settings.bucket or "", "precision": "ns"}
            if settings.org:
                self.params["org"] = settings.org
            token = settings.token()
            if token:
                headers["Authorization"] = f"Token {token}"
        else:
            self.write_url = f"{base}/write"
            self.params = {"db": settings.database or "", "precision": "ns"}
            if settings.retention_policy:
                self.params["rp"] = settings.retention_policy
            password = settings.password()
            if settings.username:
                credentials = f"{settings.username}:{password or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        if settings.gzip:
            headers["Content-Encoding"] = "gzip"
        self.headers = headers
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    async def open(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            # a small pool: one flusher writes one batch at a time
            connector = aiohttp.TCPConnector(limit=4)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, lines: list[str]) -> None:
        """One request. Raises RetryableSinkError, RejectedBySink or BatchTooLarge."""
        await self.open()
        assert self._session is not None
        body = "\n".join(lines).encode("utf-8")
        if self.settings.gzip:
            body = gzip.compress(body, compresslevel=1)
        self.requests += 1
        try:
            async with self._session.post(
                self.write_url, params=self.params, data=body, headers=self.headers
            ) as response:
                if response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:500]
                status = response.status
                retry_after = _retry_after(response.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from exc
        if status == 413:
            raise BatchTooLarge(text)
        if status in (400, 422):
            raise RejectedBySink(f"HTTP {status}: {text}")
        if status in _RETRYABLE_4XX or status >= 500:
            raise RetryableSinkError(f"HTTP {status}: {text}", retry_after)
        raise RetryableSinkError(f"HTTP {status}: {text}")

    async def write(self, lines: list[str], resume: WriteProgress | None = None) -> list[Rejection]:
        """Write every line the database accepts; return the ones it refuses.

        A 400 means some line is bad. Line protocol writes are idempotent (same series and time,
        same values), so the batch is bisected and re-sent until each refused line stands alone:
        k bad lines in n cost about 2k·log2(n) requests, and the good lines all land.
        Past influx.max_bisect_requests requests for one batch, a refused part is not split
        further: its lines are all returned as refused, so a batch of bad lines costs a bounded
        number of requests (a 413 is still split: every line of it may be good).
        A retryable failure part-way raises with the progress made; pass it back as `resume` to
        carry on where it stopped instead of starting the bisection again.
        """
        progress = resume or WriteProgress([(0, len(lines))], [])
        pending, rejected = progress.pending, progress.rejected
        budget = self.settings.max_bisect_requests
        while pending:
            offset, length = pending[-1]
            part = lines[offset : offset + length]
            try:
                await self.post(part)
            except RetryableSinkError as exc:
                raise RetryableSinkError(str(exc), exc.retry_after_s, progress) from exc
            except (RejectedBySink, BatchTooLarge) as exc:
                pending.pop()
                refused = isinstance(exc, RejectedBySink)
                progress.bisect_requests += refused
                if length == 1:
                    rejected.append(Rejection(offset, str(exc)))
                    continue
                if refused and progress.bisect_requests >= budget:
                    detail = (
                        f"{exc} (one of {length} lines sent together, not isolated: the batch "
                        f"spent influx.max_bisect_requests = {budget})"
                    )
                    rejected.extend(Rejection(offset + i, detail) for i in range(length))
                    continue
                half = length // 2
                pending.append((offset + half, length - half))
                pending.append((offset, half))
                continue
            pending.pop()
        rejected.sort(key=lambda r: r.index)
        return rejected

    async def prepare(self) -> str:
        if self.settings.api != "v1":
            return "v2: the bucket is not checked"
        return await self.ensure_database()

    async def ensure_database(self) -> str:
        """v1 only: create `influx.database` if it is missing (InfluxQL's CREATE DATABASE does
        nothing when it exists), so a fresh InfluxDB 1.x does not answer every write with 404
        forever. Returns what it found, for the log. Raises IngestdError, with the fix, when the
        database is missing and this user may not create it; RetryableSinkError when the
        server cannot be asked now (startup goes on: the spool covers a database that is down)."""
        name = self.settings.database or ""
        created, _ = await self._query(f"CREATE DATABASE {quote_identifier(name)}")
        if created is None:
            return "created or already there"
        shown, names = await self._query("SHOW DATABASES")
        if shown is not None:  # not allowed to list either: writes will tell
            return f"not checked ({created}; SHOW DATABASES: {shown})"
        if name in names:
            return "already there"
        user = self.settings.username or "(no user)"
        raise IngestdError(
            f"influx.database {name!r} does not exist and {user} may not create it ({created}); "
            f"create it as an admin: influx -execute 'CREATE DATABASE \"{name}\"'"
        )

    async def field_types(self) -> dict[tuple[str, str], str]:
        """SHOW FIELD KEYS on the database (v1) or the bucket (v2, through InfluxDB 2.x's v1
        compatibility /query, which maps every bucket). A server without InfluxQL
        (VictoriaMetrics) answers with an error: IngestdError, and ingestd goes on without."""
        name = self.settings.database if self.settings.api == "v1" else self.settings.bucket
        error, series = await self._query_series("SHOW FIELD KEYS", db=name or "")
        if error is not None:
            raise IngestdError(f"SHOW FIELD KEYS: {error}")
        held: dict[tuple[str, str], str] = {}
        for one in series:
            for row in one.get("values", []):
                if isinstance(row, list) and len(row) >= 2:
                    held.setdefault((str(one.get("name", "")), str(row[0])), str(row[1]))
        return held

    async def _query(self, statement: str) -> tuple[str | None, set[str]]:
        """One InfluxQL statement on /query: None if it succeeded, else why not; and the first
        column of the rows it returned (SHOW DATABASES: the names)."""
        error, series = await self._query_series(statement)
        names: set[str] = set()
        for one in series:
            names.update(str(row[0]) for row in one.get("values", []) if row)
        return error, names

    async def _query_series(
        self, statement: str, db: str | None = None
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """One InfluxQL statement: None if it succeeded, else why not; and its series."""
        await self.open()
        assert self._session is not None
        url = self.settings.url.rstrip("/") + "/query"
        headers = {k: v for k, v in self.headers.items() if k == "Authorization"}
        form = {"q": statement} if db is None else {"q": statement, "db": db}
        try:
            async with self._session.post(url, data=form, headers=headers) as response:
                text = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500:
            raise RetryableSinkError(f"HTTP {status} from /query: {text[:200]}")
        error = None if status < 300 else f"HTTP {status}: {text[:200]}"
        series: list[dict[str, Any]] = []
        try:
            for result in orjson.loads(text).get("results", []):
                error = error or result.get("error")
                series.extend(one for one in result.get("series", []) if isinstance(one, dict))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            error = error or f"not an InfluxQL answer: {text[:200]}"
        return error, series

    async def ping(self) -> str:
        """Reachability for `ingestd check --connect`: the server's version, or an error."""
        await self.open()
        assert self._session is not None
        url = self.settings.url.rstrip("/") + "/ping"
        try:
            async with self._session.get(url) as response:
                version = response.headers.get("X-Influxdb-Version", "unknown")
                if response.status >= 300:
                    raise RetryableSinkError(f"HTTP {response.status} from {url}")
                return version
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryableSinkError(f"{type(exc).__name__}: {exc}") from exc
