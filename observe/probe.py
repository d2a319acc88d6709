"""`observe check`: probe every endpoint the config names, the way the collector will use it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from observe.config import Config
from observe.errors import ObserveError
from observe.http import new_session
from observe.protocol.loki_push import encode_payload
from observe.protocol.remote_write import compress
from observe.server import redact_url
from observe.sinks.loki_push import LokiPushSink
from observe.sinks.remote_write import RemoteWriteSink
from observe.sources.loki import LokiSource
from observe.sources.prometheus_federate import PrometheusFederateSource


@dataclass(frozen=True)
class ProbeResult:
    cluster: str
    endpoint: str
    url: str
    ok: bool
    detail: str
    seconds: float


async def _probe_prometheus(cfg: Config, name: str) -> ProbeResult:
    prom = cfg.cluster(name).prometheus
    assert prom is not None
    started = time.monotonic()
    async with new_session(prom) as session:
        try:
            body = await PrometheusFederateSource(name, prom, session).pull()
        except ObserveError as exc:
            return ProbeResult(
                name, "prometheus", redact_url(prom.url), False, str(exc), time.monotonic() - started
            )
    series = sum(1 for line in body.split("\n") if line and line[0] != "#")
    detail = f"{series} series match" if series else "reachable, but no series match the selectors"
    return ProbeResult(
        name, "prometheus", redact_url(prom.url), series > 0, detail, time.monotonic() - started
    )


async def _probe_loki(cfg: Config, name: str) -> list[ProbeResult]:
    loki = cfg.cluster(name).loki
    assert loki is not None
    started = time.monotonic()
    async with new_session(loki) as session:
        probes = await LokiSource(name, loki, session, page_limit=cfg.logs.page_limit).probe()
    seconds = time.monotonic() - started
    return [
        ProbeResult(
            name,
            "loki",
            f"{redact_url(loki.url)} {p.selector}",
            p.ok,
            f"{p.entries_last_minute} entries in the last minute" if p.ok else (p.error or "failed"),
            seconds,
        )
        for p in probes
    ]


async def _probe_remote_write(cfg: Config) -> ProbeResult:
    rw = cfg.central.remote_write
    assert rw is not None
    started = time.monotonic()
    async with new_session(rw) as session:
        sink = RemoteWriteSink(rw, session)
        try:
            await sink.send(
                compress(b"")
            )  # an empty WriteRequest: accepted by every receiver, stores nothing
        except ObserveError as exc:
            return ProbeResult(
                "(central)", "remote_write", redact_url(rw.url), False, str(exc), time.monotonic() - started
            )
    return ProbeResult(
        "(central)", "remote_write", redact_url(rw.url), True, "accepted", time.monotonic() - started
    )


async def _probe_loki_push(cfg: Config) -> ProbeResult:
    push = cfg.central.loki
    assert push is not None
    started = time.monotonic()
    async with new_session(push) as session:
        sink = LokiPushSink(push, session)
        try:
            await sink.send(encode_payload([], push.encoding))  # no streams: accepted, stores nothing
        except ObserveError as exc:
            return ProbeResult(
                "(central)", "loki_push", redact_url(push.url), False, str(exc), time.monotonic() - started
            )
    return ProbeResult(
        "(central)", "loki_push", redact_url(push.url), True, "accepted", time.monotonic() - started
    )


async def probe_all(cfg: Config) -> list[ProbeResult]:
    prometheus = [_probe_prometheus(cfg, c.name) for c in cfg.clusters if c.prometheus is not None]
    if cfg.central.remote_write is not None:
        prometheus.append(_probe_remote_write(cfg))
    if cfg.central.loki is not None:
        prometheus.append(_probe_loki_push(cfg))
    lokis = [_probe_loki(cfg, c.name) for c in cfg.clusters if c.loki is not None]
    results = list(await asyncio.gather(*prometheus))
    for per_selector in await asyncio.gather(*lokis):
        results.extend(per_selector)
    return sorted(results, key=lambda r: (r.cluster, r.endpoint))
