"""`observe check`: probe every endpoint the config names, the way the collector will use it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from observe.config import Config, HTTPClientConfig
from observe.errors import ObserveError
from observe.http import new_session
from observe.protocol.loki_push import encode_payload
from observe.protocol.remote_write import compress
from observe.server import redact_url
from observe.sinks import Sink
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


async def _probe_sink(
    cfg: HTTPClientConfig, make_sink: Callable[[aiohttp.ClientSession], Sink], payload: bytes
) -> ProbeResult:
    """Send `payload` (one that stores nothing) through the sink `make_sink` builds, as `run` would."""
    started = time.monotonic()
    async with new_session(cfg) as session:
        sink = make_sink(session)
        try:
            await sink.send(payload)
        except ObserveError as exc:
            ok, detail = False, str(exc)
        else:
            ok, detail = True, "accepted"
        seconds = time.monotonic() - started
    return ProbeResult("(central)", sink.name, redact_url(cfg.url), ok, detail, seconds)


async def probe_all(cfg: Config) -> list[ProbeResult]:
    prometheus = [_probe_prometheus(cfg, c.name) for c in cfg.clusters if c.prometheus is not None]
    if (rw := cfg.central.remote_write) is not None:
        # an empty WriteRequest: accepted by every receiver, stores nothing
        prometheus.append(_probe_sink(rw, lambda session: RemoteWriteSink(rw, session), compress(b"")))
    if (push := cfg.central.loki) is not None:
        # no streams: accepted, stores nothing
        payload = encode_payload([], push.encoding)
        prometheus.append(_probe_sink(push, lambda session: LokiPushSink(push, session), payload))
    lokis = [_probe_loki(cfg, c.name) for c in cfg.clusters if c.loki is not None]
    results = list(await asyncio.gather(*prometheus))
    for per_selector in await asyncio.gather(*lokis):
        results.extend(per_selector)
    return sorted(results, key=lambda r: (r.cluster, r.endpoint))
