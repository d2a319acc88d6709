"""Simulated clusters served over HTTP on loopback: stand-ins for each cluster's Prometheus and Loki.

This is a simulation, not Prometheus. `GET /federate?match[]=...` answers as Prometheus' federation
endpoint would (https://prometheus.io/docs/prometheus/latest/federation/) for the selector forms a
fleet collector uses: a metric name and/or `{label op "value", ...}` with `=`, `!=`, `=~`, `!~`
(regexes anchored, as PromQL's are, but with Python's `re` instead of RE2). Anything else is a 400,
as a parse error is in Prometheus. `GET /metrics` serves the same series as an exporter would, for a
real Prometheus to scrape (use `honor_labels: true`) when a test needs real federation.

`SimulatedLoki` is a simulation of Loki's query API (https://grafana.com/docs/loki/latest/reference/loki-http-api/),
serving the cluster's log lines (observe/demo/logs.py): `GET /loki/api/v1/query_range` with `query` (a
stream selector, the matcher forms above; line filters and metric queries are a 400), `start` (inclusive)
and `end` (exclusive) as ns, float seconds or RFC3339 (default: the last hour), `limit` (default 100,
above `max_entries_limit_per_query` 5000 a 400 with Loki's text) and `direction` (`backward` by default,
or `forward`). It answers `{"status":"success","data":{"resultType":"streams","result":[{"stream":{...},
"values":[["<ns>","<line>"]]}]}}`; with `X-Loki-Response-Encoding-Flags: categorize-labels` each value
carries a third element `{"structuredMetadata": {...}}` (else metadata is merged into the stream labels,
as Loki does). Only entries up to the moment of the request exist: a log line is written when it is due.

`available = False` makes every endpoint answer 503, as a server behind a broken ingress would;
`SimulatedFleet.set_available(name, False)` takes a whole cluster off the network.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from observe.demo.fleet import SimulatedCluster
from observe.demo.logs import NS
from observe.demo.series import Selector
from observe.model import Labels

__all__ = [
    "SelectorError",
    "SimulatedFleet",
    "SimulatedLoki",
    "SimulatedPrometheus",
    "parse_selector",
    "serve_app",
]

_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_MATCHER: Final = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|\Z)')
_NAME: Final = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*")
_UNESCAPE: Final = {"\\": "\\", '"': '"', "n": "\n"}
_LOKI_MAX_ENTRIES: Final = 5000  # Loki's default limits_config.max_entries_limit_per_query
_CATEGORIZE: Final = "categorize-labels"


class SelectorError(ValueError):
    """A match[] selector outside the supported subset, or malformed."""


Matcher = tuple[str, str, str]  # (label, op, value)


def parse_selector(text: str) -> Selector:
    """A series selector like `up`, `{job="x"}` or `kube_pod_info{namespace=~"a|b"}` as a predicate."""
    matchers: list[Matcher] = []
    pos = 0
    m = _NAME.match(text)
    if m and m.group(1):
        matchers.append(("__name__", "=", m.group(1)))
        pos = m.end()
    rest = text[pos:].strip()
    if rest:
        if not (rest.startswith("{") and rest.endswith("}")):
            raise SelectorError(
                f"parse error: unsupported selector {text!r} (simulation: name and {{...}} only)"
            )
        body = rest[1:-1]
        i = 0
        while i < len(body) and body[i:].strip():
            mm = _MATCHER.match(body, i)
            if mm is None:
                raise SelectorError(f"parse error: bad matcher at {body[i:]!r} in {text!r}")
            value = re.sub(r"\\(.)", lambda e: _UNESCAPE.get(e.group(1), "\\" + e.group(1)), mm.group(3))
            matchers.append((mm.group(1), mm.group(2), value))
            i = mm.end()
    if not matchers:
        raise SelectorError(f"parse error: empty selector {text!r}")
    compiled: list[tuple[str, str, str | re.Pattern[str]]] = []
    for label, op, value in matchers:
        try:
            compiled.append((label, op, re.compile(value) if op in ("=~", "!~") else value))
        except re.error as exc:
            raise SelectorError(f"parse error: bad regex {value!r} in {text!r}: {exc}") from None
    if all(_matches_empty(op, v) for _, op, v in compiled):
        # Prometheus' rule, so `{__name__=~".*"}` is rejected here as it is there
        raise SelectorError(f"vector selector must contain at least one non-empty matcher: {text!r}")

    def select(name: str, labels: Labels) -> bool:
        have = dict(labels)
        have["__name__"] = name
        for label, op, v in compiled:
            got = have.get(label, "")
            if op == "=":
                ok = got == v
            elif op == "!=":
                ok = got != v
            else:
                assert isinstance(v, re.Pattern)
                ok = v.fullmatch(got) is not None
                if op == "!~":
                    ok = not ok
            if not ok:
                return False
        return True

    return select


def _matches_empty(op: str, v: str | re.Pattern[str]) -> bool:
    if isinstance(v, re.Pattern):
        hit = v.fullmatch("") is not None
        return hit if op == "=~" else not hit
    return (v == "") if op == "=" else (v != "")


def _any_of(selectors: list[Selector]) -> Selector:
    return lambda name, labels: any(s(name, labels) for s in selectors)


def _match_all(selectors: Sequence[str]) -> bool:
    return any(s.replace(" ", "") in ('{__name__=~".+"}', '{__name__=~".*",__name__!=""}') for s in selectors)


class SimulatedPrometheus:
    """One simulated cluster's Prometheus on 127.0.0.1; `url` is set once `start()` returns."""

    def __init__(
        self,
        cluster: SimulatedCluster,
        *,
        external_labels: Mapping[str, str] | None = None,
        job: str = "simulated-cluster",
        clock: Callable[[], float] = time.time,
        compress: bool = True,
    ) -> None:
        self.cluster = cluster
        self.external_labels = dict(external_labels or {})
        self.job = job
        self.clock = clock
        self.compress = compress  # gzip when the client asks, as Prometheus does
        self.available = True
        self.requests = 0
        self.served: dict[int, int] = {}  # every 200 /federate reply: its samples' timestamp (ms) -> samples
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_get("/federate", self._federate)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._healthy)
        self._runner, self.url = await serve_app(app, host)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def instance(self) -> str:
        return self.url.removeprefix("http://")

    async def _healthy(self, request: web.Request) -> web.Response:
        if not self.available:
            return web.Response(status=503, text="Service Unavailable")
        return web.Response(text="Prometheus Server is Healthy.\n")

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if not self.available:
            return web.Response(status=503, text="Service Unavailable")
        # Rendering 100k series takes ~0.2 s of CPU: off the loop, so other clusters' requests proceed.
        body = await asyncio.to_thread(self.cluster.exposition, self.clock())
        return self._reply(body)

    async def _federate(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if not self.available:
            return web.Response(status=503, text="Service Unavailable")
        selectors = request.query.getall("match[]", [])
        if not selectors:  # Prometheus answers an empty 200 when no match[] is given
            return self._reply("")
        select: Selector | None = None
        if not _match_all(selectors):
            try:
                select = _any_of([parse_selector(s) for s in selectors])
            except SelectorError as exc:
                return web.Response(status=400, text=f"{exc}\n")
        now = self.clock()
        body = await asyncio.to_thread(
            self.cluster.federate,
            now,
            external_labels=self.external_labels,
            job=self.job,
            instance=self.instance,
            select=select,
        )
        # one sample per line that is not a `# TYPE` header, all stamped `now` (ms): what the demo counts
        self.served[round(now * 1000)] = body.count("\n") - body.count("# TYPE ")
        return self._reply(body)

    def _reply(self, body: str) -> web.Response:
        resp = web.Response(body=body.encode(), headers={"Content-Type": _CONTENT_TYPE})
        if self.compress:
            resp.enable_compression()
        return resp


class SimulatedLoki:
    """One simulated cluster's Loki on 127.0.0.1 (query API only); `url` is set once `start()` returns."""

    def __init__(self, cluster: SimulatedCluster, *, clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.clock = clock
        self.available = True
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_get("/loki/api/v1/query_range", self._query_range)
        app.router.add_get("/ready", self._ready)
        self._runner, self.url = await serve_app(app, host)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ready(self, request: web.Request) -> web.Response:
        if not self.available:
            return web.Response(status=503, text="Service Unavailable")
        return web.Response(text="ready\n")

    async def _query_range(self, request: web.Request) -> web.Response:
        self.requests += 1
        if not self.available:
            return web.Response(status=503, text="Service Unavailable")
        p = request.query
        now_ns = int(self.clock() * NS)
        try:
            select = parse_selector(p.get("query", ""))
            limit = int(p.get("limit", "100"))
            end = _loki_time(p.get("end"), now_ns)
            start = _loki_time(p.get("start"), end - 3600 * NS)
        except (SelectorError, ValueError) as exc:
            return web.Response(status=400, text=f"{exc}\n")
        direction = p.get("direction", "backward").lower()
        if direction not in ("forward", "backward"):
            return web.Response(status=400, text=f"invalid direction {direction!r}\n")
        if limit <= 0:
            return web.Response(status=400, text="limit must be a positive value\n")
        if limit > _LOKI_MAX_ENTRIES:
            return web.Response(
                status=400,
                text="max entries limit per query exceeded, limit > max_entries_limit_per_query "
                f"({limit} > {_LOKI_MAX_ENTRIES})\n",
            )
        if end < start:
            return web.Response(status=400, text="end timestamp must not be before or equal to start time\n")
        # Nothing is logged ahead of the clock: an entry exists once its time has come.
        found = self.cluster.logs.entries(
            start, min(end, now_ns + 1), select=lambda labels: select("", labels), limit=limit,
            backward=direction == "backward",
        )  # fmt: skip
        categorize = _CATEGORIZE in request.headers.get("X-Loki-Response-Encoding-Flags", "").split(",")
        streams: dict[Labels, list[list[Any]]] = {}
        for ts, labels, line, metadata in found:
            if categorize:
                key = labels
                value: list[Any] = [str(ts), line, {"structuredMetadata": dict(metadata)} if metadata else {}]
            else:
                key = tuple(sorted({**dict(labels), **dict(metadata)}.items()))
                value = [str(ts), line]
            streams.setdefault(key, []).append(value)
        data: dict[str, Any] = {
            "resultType": "streams",
            "result": [{"stream": dict(k), "values": v} for k, v in streams.items()],
            "stats": {"summary": {"totalEntriesReturned": len(found)}},
        }
        if categorize:
            data["encodingFlags"] = [_CATEGORIZE]
        return web.json_response({"status": "success", "data": data})


def _loki_time(value: str | None, default: int) -> int:
    """Loki's timestamp parameter: ns (or s, up to 10 digits), float seconds, or RFC3339."""
    if not value:
        return default
    if value.isdigit():
        return int(value) * NS if len(value) <= 10 else int(value)
    try:
        return round(float(value) * NS)
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * NS)
    except ValueError:
        raise ValueError(f"invalid parameter: cannot parse {value!r} to a valid timestamp") from None


async def serve_app(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    """Serve `app` on a free port of `host`; (its runner, to clean up, and its base URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # Bind first, then serve on that socket: no window in which another process takes the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    return runner, f"http://{host}:{port}"


class SimulatedFleet:
    """Several simulated Prometheus servers, one loopback port each; an async context manager."""

    def __init__(
        self,
        clusters: Sequence[SimulatedCluster],
        *,
        external_labels: Mapping[str, Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
        compress: bool = True,
        loki: bool = False,
    ) -> None:
        labels = external_labels or {}
        self.servers: dict[str, SimulatedPrometheus] = {
            c.name: SimulatedPrometheus(c, external_labels=labels.get(c.name), clock=clock, compress=compress)
            for c in clusters
        }
        # `loki=True`: each cluster's Loki too, on its own port
        self.lokis: dict[str, SimulatedLoki] = (
            {c.name: SimulatedLoki(c, clock=clock) for c in clusters} if loki else {}
        )

    async def start(self) -> None:
        try:
            for server in self._all():
                await server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self._all():
            await server.stop()

    def _all(self) -> list[SimulatedPrometheus | SimulatedLoki]:
        return [*self.servers.values(), *self.lokis.values()]

    def set_available(self, name: str, available: bool) -> None:
        """Take a cluster off the network (every endpoint of its Prometheus and Loki answers 503) or back."""
        self.servers[name].available = available
        if name in self.lokis:
            self.lokis[name].available = available

    def loki_url(self, name: str) -> str:
        return self.lokis[name].url

    async def __aenter__(self) -> SimulatedFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def __getitem__(self, name: str) -> SimulatedPrometheus:
        return self.servers[name]

    def url(self, name: str) -> str:
        return self.servers[name].url

    @property
    def clusters(self) -> dict[str, SimulatedCluster]:
        return {name: s.cluster for name, s in self.servers.items()}
