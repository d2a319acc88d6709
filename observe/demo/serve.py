"""Simulated clusters served over HTTP on loopback: each one a stand-in for a cluster's Prometheus.

This is a simulation, not Prometheus. `GET /federate?match[]=...` answers as Prometheus' federation
endpoint would (https://prometheus.io/docs/prometheus/latest/federation/) for the selector forms a
fleet collector uses: a metric name and/or `{label op "value", ...}` with `=`, `!=`, `=~`, `!~`
(regexes anchored, as PromQL's are, but with Python's `re` instead of RE2). Anything else is a 400,
as a parse error is in Prometheus. `GET /metrics` serves the same series as an exporter would, for a
real Prometheus to scrape (use `honor_labels: true`) when a test needs real federation.

`available = False` makes every endpoint answer 503, as a Prometheus behind a broken ingress would.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from aiohttp import web

from observe.demo.fleet import SimulatedCluster
from observe.demo.series import Selector
from observe.model import Labels

__all__ = ["SelectorError", "SimulatedFleet", "SimulatedPrometheus", "parse_selector"]

_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_MATCHER: Final = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|\Z)')
_NAME: Final = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*")
_UNESCAPE: Final = {"\\": "\\", '"': '"', "n": "\n"}


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
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        app = web.Application()
        app.router.add_get("/federate", self._federate)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._healthy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bind first, then serve on that socket: no window in which another process takes the port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{host}:{port}"
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
        body = await asyncio.to_thread(
            self.cluster.federate,
            self.clock(),
            external_labels=self.external_labels,
            job=self.job,
            instance=self.instance,
            select=select,
        )
        return self._reply(body)

    def _reply(self, body: str) -> web.Response:
        resp = web.Response(body=body.encode(), headers={"Content-Type": _CONTENT_TYPE})
        if self.compress:
            resp.enable_compression()
        return resp


class SimulatedFleet:
    """Several simulated Prometheus servers, one loopback port each; an async context manager."""

    def __init__(
        self,
        clusters: Sequence[SimulatedCluster],
        *,
        external_labels: Mapping[str, Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
        compress: bool = True,
    ) -> None:
        labels = external_labels or {}
        self.servers: dict[str, SimulatedPrometheus] = {
            c.name: SimulatedPrometheus(c, external_labels=labels.get(c.name), clock=clock, compress=compress)
            for c in clusters
        }

    async def start(self) -> None:
        try:
            for server in self.servers.values():
                await server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()

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
