"""A fake Loki: an aiohttp server on loopback that follows Loki's documented HTTP API, for tests.

No Loki binary can be installed here, so this is the stand-in. It is written from the API reference
(https://grafana.com/docs/loki/latest/reference/loki-http-api/) and Loki's limits and error texts
(pkg/validation/validate.go, pkg/querier/http.go, pkg/chunkenc), not from the collector's code: it
decodes pushes with the `protobuf` library (tests/loki_push_pb.py) and parses LogQL itself.

Behaviour, each as Loki documents it:
- `GET /loki/api/v1/query_range`: `start` inclusive, `end` exclusive (ns integers, float seconds or
  RFC3339); `limit` (default 100) counts entries across all streams, must be positive, and above
  `max_entries_limit_per_query` (5000) is a 400 `max entries limit per query exceeded, limit >
  max_entries_limit_per_query (N > 5000)`; `direction` forward or backward (the default); stream
  matchers `= != =~ !~` (regexes fully anchored) and line filters `|= != |~ !~`; a selector whose every
  matcher matches the empty string is a 400. With `X-Loki-Response-Encoding-Flags: categorize-labels`
  each value gets a third element `{"structuredMetadata": {...}}` and the response says
  `"encodingFlags": ["categorize-labels"]`; without it, structured metadata is merged into the stream
  labels (so one stream may come back as several).
- `GET /loki/api/v1/series`: the label sets of streams with entries in [start, end).
- `POST /loki/api/v1/push`: JSON (optionally gzip) or snappy-block protobuf; 204 on success; an entry
  identical (same stream, timestamp and line) to a stored one is dropped silently; per stream, an entry
  older than the stream's newest minus 1h is rejected `entry too far behind`; entries older than 7 days
  (`timestamp too old`) or more than 10 minutes ahead (`timestamp too new`), lines over 256 KiB, more than
  15 label names, label names over 1024 or values over 2048 characters are rejected by validation. Valid
  entries of a request are stored even when others are rejected, and the reply is then a 400 naming the
  rejected ones, as Loki's distributor does.
- Errors are plain text. With `auth_enabled`, a request without `X-Scope-OrgID` gets 401 `no org id`;
  without it, every request is tenant `fake`. `allowed_tenants` imitates a gateway refusing a tenant (401).
- `push_429_rate` answers that share of pushes with 429 and Loki's rate-limit text (seeded, repeatable);
  `max_query_length` (721h) bounds end - start (400 `the query time range exceeds the limit`).
  `push_429_next` / `query_429_next` answer the next N requests with 429; `push_script` / `query_script`
  queue canned replies (status, body, content type) for the bad-input tests.
- `loki3_ingest` adds Loki 3.x's ingest-time `service_name` stream label and `detected_level` metadata.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cramjam
from aiohttp import web

from tests import loki_push_pb

Labels = tuple[tuple[str, str], ...]
StoredEntry = tuple[int, Labels, str, Labels]  # (ts ns, stream labels, line, structured metadata)

NS = 1_000_000_000
CATEGORIZE_LABELS = "categorize-labels"
_EMPTY_MATCHER_MSG = (
    "queries require at least one regexp or equality matcher that does not have an empty-compatible value. "
    'For instance, app=~".*" does not meet this requirement, but app=~".+" will'
)
_SERVICE_NAME_SOURCES = (
    "service_name", "service", "app", "application", "name", "app_kubernetes_io_name",
    "container", "container_name", "component", "workload", "job",
)  # fmt: skip
_LEVEL_WORDS = (("error", "error"), ("err", "error"), ("warn", "warn"), ("info", "info"), ("debug", "debug"))


class LogQLError(ValueError):
    """A query the fake cannot parse: a 400 `parse error ...`, as Loki answers."""


# -- LogQL: a stream selector and line filters --------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)|(?P<op>=~|!~|!=|\|=|\|~|=)|(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
    |(?P<punct>[{},]))""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Query:
    matchers: tuple[tuple[str, str, str], ...]  # (name, op, value)
    filters: tuple[tuple[str, str], ...]  # (op, value)

    def matches_stream(self, labels: dict[str, str]) -> bool:
        for name, op, value in self.matchers:
            have = labels.get(name, "")
            if op == "=" and have != value:
                return False
            if op == "!=" and have == value:
                return False
            if op == "=~" and not re.fullmatch(value, have, re.DOTALL):
                return False
            if op == "!~" and re.fullmatch(value, have, re.DOTALL):
                return False
        return True

    def matches_line(self, line: str) -> bool:
        for op, value in self.filters:
            if op == "|=" and value not in line:
                return False
            if op == "!=" and value in line:
                return False
            if op == "|~" and not re.search(value, line):
                return False
            if op == "!~" and re.search(value, line):
                return False
        return True


def _unquote(tok: str) -> str:
    if tok.startswith("`"):
        return tok[1:-1]
    try:
        return str(json.loads(tok))
    except ValueError as exc:
        raise LogQLError(f"invalid string {tok}") from exc


def parse_query(text: str) -> Query:
    pos = 0
    tokens: list[tuple[str, str, int]] = []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LogQLError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected character")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    i = 0

    def expect(kind: str, value: str | None = None) -> str:
        nonlocal i
        if i >= len(tokens):
            col = len(text) + 1
            raise LogQLError(f"parse error at line 1, col {col}: syntax error: unexpected end of input")
        k, v, col = tokens[i]
        if k != kind or (value is not None and v != value):
            raise LogQLError(f"parse error at line 1, col {col}: syntax error: unexpected {v}")
        i += 1
        return v

    expect("punct", "{")
    matchers: list[tuple[str, str, str]] = []
    while True:
        name = expect("name")
        op = expect("op")
        if op not in ("=", "!=", "=~", "!~"):
            raise LogQLError(f"parse error at line 1, col {tokens[i - 1][2]}: syntax error: unexpected {op}")
        value = _unquote(expect("str"))
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise LogQLError(f"parse error : error parsing regexp: {exc}") from exc
        matchers.append((name, op, value))
        if i < len(tokens) and tokens[i][1] == ",":
            i += 1
            continue
        expect("punct", "}")
        break
    filters: list[tuple[str, str]] = []
    while i < len(tokens):
        op = expect("op")
        if op not in ("|=", "!=", "|~", "!~"):
            raise LogQLError(f"parse error at line 1, col {tokens[i - 1][2]}: syntax error: unexpected {op}")
        filters.append((op, _unquote(expect("str"))))
    q = Query(tuple(matchers), tuple(filters))
    # Loki refuses a selector whose every matcher accepts the empty value (validateMatchers): it would
    # match every stream.
    if all(Query((m,), ()).matches_stream({}) for m in q.matchers):
        raise LogQLError("parse error : " + _EMPTY_MATCHER_MSG)
    return q


# -- parameters ---------------------------------------------------------------------------------------------


def parse_time(value: str | None, default: int) -> int:
    """Loki's loghttp parseTimestamp: float seconds if it has a dot, ns (or s if <= 10 digits), or RFC3339."""
    if not value:
        return default
    if "." in value:
        try:
            return round(float(value) * NS)
        except ValueError:
            pass
    try:
        n = int(value)
    except ValueError:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * NS)
        except ValueError as exc:
            raise ValueError(f"invalid parameter: cannot parse {value!r} to a valid timestamp") from exc
    return n * NS if len(value) <= 10 else n


# -- the store ----------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    labels: Labels
    entries: list[tuple[int, int, str, Labels]] = field(default_factory=list)  # (ts, seq, line, md), sorted
    keys: set[tuple[int, str]] = field(default_factory=set)
    newest: int | None = None
    last: tuple[int, str] | None = None  # the last accepted (ts, line)


@dataclass
class Reply:
    """A canned reply for `push_script` / `query_script`."""

    status: int
    body: str | bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        ctype = self.content_type.split(";")[0]
        return web.Response(status=self.status, body=self.body, content_type=ctype, headers=self.headers)


@dataclass
class FakeLoki:
    """A fake Loki (see the module docstring). `await start()`, use `url`, `await stop()`."""

    auth_enabled: bool = False
    allowed_tenants: set[str] | None = None
    max_entries_limit_per_query: int = 5000
    max_line_size: int = 256 * 1024
    max_label_names_per_series: int = 15
    max_label_name_length: int = 1024
    max_label_value_length: int = 2048
    reject_old_samples_max_age: float = 7 * 86400.0
    creation_grace_period: float = 600.0
    out_of_order_window: float = 3600.0  # max_chunk_age / 2
    push_429_rate: float = 0.0
    push_429_next: int = 0
    query_429_next: int = 0
    max_query_length: float = 721 * 3600.0
    push_delay: float = 0.0  # seconds before answering each push: a slow (far away, loaded) centre
    query_always: Reply | None = None  # answer every query with this (a broken Loki or proxy)
    loki3_ingest: bool = False
    seed: int = 1
    clock: Callable[[], float] = time.time

    streams: dict[str, dict[Labels, _Stream]] = field(default_factory=dict)
    push_script: list[Reply] = field(default_factory=list)
    query_script: list[Reply] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    query_log: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _seq: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def push_url(self) -> str:
        return f"{self.url}/loki/api/v1/push"

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> FakeLoki:
        """Listen on loopback; a restart after `stop()` reuses the same port and keeps the stored data."""
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/loki/api/v1/query_range", self._query_range)
        app.router.add_get("/loki/api/v1/series", self._series)
        app.router.add_post("/loki/api/v1/push", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    # -- test helpers ---------------------------------------------------------------------------------------
    def add(
        self,
        labels: dict[str, str],
        entries: Sequence[tuple[int, str] | tuple[int, str, dict[str, str]]],
        tenant: str = "fake",
    ) -> None:
        """Seed data directly (no validation): `entries` are (ts_ns, line[, structured metadata])."""
        for e in entries:
            md = tuple(sorted(e[2].items())) if len(e) > 2 else ()
            self._store(tenant, tuple(sorted(labels.items())), e[0], e[1], md, window=False)

    def entries(self, tenant: str = "fake") -> list[StoredEntry]:
        """Every stored entry of a tenant, sorted by (ts, labels, line)."""
        out = [
            (ts, s.labels, line, md)
            for s in self.streams.get(tenant, {}).values()
            for ts, _, line, md in s.entries
        ]
        return sorted(out)

    # -- storage --------------------------------------------------------------------------------------------
    def _store(
        self, tenant: str, labels: Labels, ts: int, line: str, md: Labels, window: bool = True
    ) -> str | None:
        """Store one entry; returns an ingester error message or None (stored or dropped as identical).

        In the order of Loki's ingester (stream.validateEntries): an entry equal to the stream's last line
        is skipped; then one older than the stream's newest minus the window is refused; then the head
        block drops an entry identical to one it holds (here: to any stored one, as Loki's query-time
        deduplication makes it look).
        """
        s = self.streams.setdefault(tenant, {}).get(labels)
        if s is None:
            s = self.streams[tenant][labels] = _Stream(labels)
        if s.last == (ts, line):
            self._count("duplicates_dropped")
            return None
        if window and s.newest is not None and ts < s.newest - int(self.out_of_order_window * NS):
            cutoff = s.newest - int(self.out_of_order_window * NS)
            return (
                f"entry with timestamp {_go_time(ts)} ignored, reason: 'entry too far behind, "
                f"entry timestamp is: {_rfc3339(ts)}, oldest acceptable timestamp is: {_rfc3339(cutoff)}',"
            )
        s.last = (ts, line)
        if (ts, line) in s.keys:
            self._count("duplicates_dropped")
            return None
        self._seq += 1
        bisect.insort(s.entries, (ts, self._seq, line, md))
        s.keys.add((ts, line))
        s.newest = ts if s.newest is None else max(s.newest, ts)
        self._count("entries_stored")
        return None

    # -- HTTP -----------------------------------------------------------------------------------------------
    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    def _tenant(self, request: web.Request) -> str | web.Response:
        if not self.auth_enabled:
            return "fake"
        tenant = request.headers.get("X-Scope-OrgID", "")
        if not tenant:
            return _text(401, "no org id")
        if self.allowed_tenants is not None and tenant not in self.allowed_tenants:
            return _text(401, f"unauthorized: tenant {tenant!r} is not allowed")
        return tenant

    async def _query_range(self, request: web.Request) -> web.Response:
        self._count("queries")
        self.query_log.append(dict(request.query))
        if self.query_always is not None:
            return self.query_always.response()
        if self.query_script:
            return self.query_script.pop(0).response()
        if self.query_429_next > 0:
            self.query_429_next -= 1
            self._count("queries_429")
            return _text(429, "too many outstanding requests")
        tenant = self._tenant(request)
        if isinstance(tenant, web.Response):
            return tenant
        p = request.query
        try:
            q = parse_query(p.get("query", ""))
        except LogQLError as exc:
            return _text(400, str(exc))
        try:
            limit = int(p.get("limit", "100"))
        except ValueError:
            return _text(
                400, f'invalid parameter "limit": strconv.Atoi: parsing {p.get("limit")!r}: invalid syntax'
            )
        if limit <= 0:
            return _text(400, "limit must be a positive value")
        if limit > self.max_entries_limit_per_query > 0:
            return _text(
                400,
                "max entries limit per query exceeded, limit > max_entries_limit_per_query "
                f"({limit} > {self.max_entries_limit_per_query})",
            )
        now = int(self.clock() * NS)
        try:
            end = parse_time(p.get("end"), now)
            start = parse_time(p.get("start"), end - 3600 * NS)
        except ValueError as exc:
            return _text(400, str(exc))
        if end < start:
            return _text(400, "end timestamp must not be before or equal to start time")
        if end - start > self.max_query_length * NS:
            return _text(
                400,
                f"the query time range exceeds the limit (query length: {_go_duration(end - start)}, "
                f"limit: {_go_duration(int(self.max_query_length * NS))})",
            )
        direction = p.get("direction", "backward").lower()
        if direction not in ("forward", "backward"):
            return _text(400, f"invalid direction {direction!r}")
        categorize = CATEGORIZE_LABELS in request.headers.get("X-Loki-Response-Encoding-Flags", "").split(",")

        found: list[tuple[int, Labels, int, str, Labels]] = []
        for s in self.streams.get(tenant, {}).values():
            if not q.matches_stream(dict(s.labels)):
                continue
            lo = bisect.bisect_left(s.entries, (start, -1))
            hi = bisect.bisect_left(s.entries, (end, -1))
            for ts, seq, line, md in s.entries[lo:hi]:
                if q.matches_line(line):
                    found.append((ts, s.labels, seq, line, md))
        # Forward: oldest first; ties (same ns) by stream, then arrival. Backward is the exact reverse.
        found.sort(reverse=direction == "backward")
        found = found[:limit]
        groups: dict[Labels, list[list[Any]]] = {}
        for ts, labels, _, line, md in found:
            if categorize:
                key = labels
                value: list[Any] = [str(ts), line, {"structuredMetadata": dict(md)} if md else {}]
            else:
                key = tuple(sorted({**dict(labels), **dict(md)}.items()))
                value = [str(ts), line]
            groups.setdefault(key, []).append(value)
        # Streams come back in no time order (here: by labels, descending): clients must merge themselves.
        result = [{"stream": dict(k), "values": v} for k, v in sorted(groups.items(), reverse=True)]
        data: dict[str, Any] = {"resultType": "streams", "result": result, "stats": {"summary": {}}}
        if categorize:
            data["encodingFlags"] = [CATEGORIZE_LABELS]
        self._count("entries_returned", len(found))
        return web.json_response({"status": "success", "data": data})

    async def _series(self, request: web.Request) -> web.Response:
        self._count("series")
        tenant = self._tenant(request)
        if isinstance(tenant, web.Response):
            return tenant
        now = int(self.clock() * NS)
        try:
            end = parse_time(request.query.get("end"), now)
            start = parse_time(request.query.get("start"), end - 3600 * NS)
            queries = [parse_query(m) for m in request.query.getall("match[]", [])]
        except (ValueError, LogQLError) as exc:
            return _text(400, str(exc))
        out = []
        for s in self.streams.get(tenant, {}).values():
            if not any(q.matches_stream(dict(s.labels)) for q in queries):
                continue
            lo = bisect.bisect_left(s.entries, (start, -1))
            if lo < len(s.entries) and s.entries[lo][0] < end:
                out.append(dict(s.labels))
        return web.json_response({"status": "success", "data": out})

    async def _push(self, request: web.Request) -> web.Response:
        self._count("pushes")
        if self.push_delay:
            await asyncio.sleep(self.push_delay)
        if self.push_script:
            return self.push_script.pop(0).response()
        tenant = self._tenant(request)
        if isinstance(tenant, web.Response):
            return tenant
        body = await request.read()
        try:
            streams = self._decode_push(request, body)
        except ValueError as exc:
            return _text(400, str(exc))
        n_lines = sum(len(e) for _, e in streams)
        if self.push_429_next > 0 or (self.push_429_rate and self._rng.random() < self.push_429_rate):
            self.push_429_next = max(0, self.push_429_next - 1)
            self._count("pushes_429")
            return _text(
                429,
                f"Ingestion rate limit exceeded for user {tenant} (limit: 4194304 bytes/sec) while "
                f"attempting to ingest '{n_lines}' lines totaling '{len(body)}' bytes, reduce log volume or "
                "contact your Loki administrator to see if the limit can be increased",
            )
        now = int(self.clock() * NS)
        oldest_ok = now - int(self.reject_old_samples_max_age * NS)
        newest_ok = now + int(self.creation_grace_period * NS)
        validation_err: str | None = None
        ingest_errs: list[str] = []
        for labels_text, entries in streams:
            try:
                labels = _parse_labels(labels_text)
            except ValueError as exc:
                validation_err = f"Error parsing labels '{labels_text}' with error: {exc}"
                continue
            err = self._validate_labels(labels)
            if err is not None:
                validation_err = err
                continue
            if self.loki3_ingest and "service_name" not in dict(labels):
                svc = next(
                    (dict(labels)[n] for n in _SERVICE_NAME_SOURCES if n in dict(labels)), "unknown_service"
                )
                labels = tuple(sorted((*labels, ("service_name", svc))))
            shown = _labels_text(labels)
            ignored = 0
            for ts, line, md in entries:
                size = len(line.encode("utf-8", "surrogateescape"))
                if size > self.max_line_size:
                    validation_err = (
                        f"Max entry size '{self.max_line_size}' bytes exceeded for stream '{shown}' "
                        f"while adding an entry with length '{size}' bytes"
                    )
                    continue
                if ts < oldest_ok:
                    validation_err = (
                        f"entry for stream '{shown}' has timestamp too old: {_rfc3339(ts)}, "
                        f"oldest acceptable timestamp is: {_rfc3339(oldest_ok)}"
                    )
                    continue
                if ts > newest_ok:
                    validation_err = f"entry for stream '{shown}' has timestamp too new: {_rfc3339(ts)}"
                    continue
                if self.loki3_ingest and "detected_level" not in dict(md):
                    low = line.lower()
                    level = next((lvl for word, lvl in _LEVEL_WORDS if word in low), None)
                    if level is not None:
                        md = tuple(sorted((*md, ("detected_level", level))))
                err = self._store(tenant, labels, ts, line, md)
                if err is not None:
                    ingest_errs.append(err)
                    ignored += 1
            if ignored:
                ingest_errs.append(
                    f"user '{tenant}', total ignored: {ignored} out of {len(entries)} for stream: {shown}"
                )
        if validation_err is not None:
            self._count("pushes_400")
            return _text(400, validation_err)
        if ingest_errs:
            self._count("pushes_400")
            return _text(400, "\n".join(ingest_errs))
        self._count("pushes_ok")
        return web.Response(status=204)

    def _validate_labels(self, labels: Labels) -> str | None:
        shown = _labels_text(labels)
        if not labels:
            return "error at least one label pair is required per stream"
        # Loki does not count service_name, which it may have added itself (validator.ValidateLabels).
        count = len(labels) - any(n == "service_name" for n, _ in labels)
        if count > self.max_label_names_per_series:
            limit = self.max_label_names_per_series
            return f"entry for stream '{shown}' has {count} label names; limit {limit}"
        names = [n for n, _ in labels]
        for i, (name, value) in enumerate(labels):
            if len(name) > self.max_label_name_length:
                return f"stream '{shown}' has label name too long: '{name}'"
            if len(value) > self.max_label_value_length:
                return f"stream '{shown}' has label value too long: '{value}'"
            if i and names[i - 1] == name:
                return f"stream '{shown}' has duplicate label name: '{name}'"
        return None

    def _decode_push(
        self, request: web.Request, body: bytes
    ) -> list[tuple[str, list[tuple[int, str, Labels]]]]:
        encoding = request.headers.get("Content-Encoding", "")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        # aiohttp has already undone gzip/deflate; snappy is the protobuf body's own block compression
        if encoding not in ("", "snappy", "gzip", "deflate"):
            raise ValueError(f'Content-Encoding "{encoding}" not supported')
        if ctype == "application/json":
            try:
                doc = json.loads(body)
                out = []
                for s in doc["streams"]:
                    entries = []
                    for v in s["values"]:
                        md = tuple(sorted(v[2].items())) if len(v) > 2 else ()
                        entries.append((int(v[0]), str(v[1]), md))
                    out.append((_labels_text(tuple(sorted(s["stream"].items()))), entries))
                return out
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                raise ValueError(f"loghttp.PushRequest.Streams: {exc}") from exc
        try:
            raw = bytes(cramjam.snappy.decompress_raw(body))
        except cramjam.DecompressionError as exc:
            raise ValueError(f"snappy: corrupt input ({exc})") from exc
        try:
            parsed = loki_push_pb.parse(raw)
        except Exception as exc:  # the protobuf library's DecodeError
            raise ValueError(f"proto: {exc}") from exc
        # Loki keeps a line's bytes as they are; on output its JSON encoder writes invalid UTF-8 as U+FFFD.
        return [
            (lbl, [(ts, line.decode("utf-8", "replace"), md) for ts, line, md in es]) for lbl, es in parsed
        ]


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


def _labels_text(labels: Labels) -> str:
    return "{" + ", ".join(f"{n}={json.dumps(v, ensure_ascii=False)}" for n, v in labels) + "}"


_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*")\s*(,|$)')


def _parse_labels(text: str) -> Labels:
    """Loki's syntax.ParseLabels for `{a="1", b="2"}`: names must be valid, values Go-quoted."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError("1:1: parse error: unexpected input, expected {")
    inner = s[1:-1]
    pos = 0
    out: list[tuple[str, str]] = []
    while pos < len(inner):
        m = _LABEL_PAIR.match(inner, pos)
        if m is None:
            raise ValueError(f"1:{pos + 2}: parse error: unexpected character in label matcher")
        out.append((m.group(1), json.loads(m.group(2))))
        pos = m.end()
    return tuple(sorted(out))


def _rfc3339(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts // NS))


def _go_time(ts: int) -> str:
    frac = f".{ts % NS:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts // NS)) + frac + " +0000 UTC"


class LokiThread:
    """Fake Lokis served from one event loop in a daemon thread, for tests whose own code blocks
    (subprocesses, `time.sleep`). Touch a fake's state only through `call`, which runs in that loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self.run(wrapper(), timeout)

    def start(self, fake: FakeLoki) -> FakeLoki:
        self.run(fake.start())
        return fake

    def stop(self, fake: FakeLoki) -> None:
        self.run(fake.stop())

    def close(self, *fakes: FakeLoki) -> None:
        for fake in fakes:
            self.run(fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def _go_duration(ns: int) -> str:
    h, rest = divmod(ns, 3600 * NS)
    m, rest = divmod(rest, 60 * NS)
    return f"{h}h{m}m{rest / NS:g}s"
