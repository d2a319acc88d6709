"""`observe check`: probe every endpoint the config names, the way the collector will use it.

Each source is asked through its own `probe()` (the same request and parsing as a pull cycle: a
Prometheus body is parsed whole, so bad lines show here rather than in the first run), each sink gets
one request that stores nothing. Every answer becomes one `ProbeResult`, a row of the check's table.
URLs are shown by `observe.http.safe_url`: no userinfo, no query (either may hold a credential).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from observe.config import Config, HTTPClientConfig
from observe.errors import ObserveError, SourceError
from observe.http import new_session, safe_url
from observe.protocol.loki_push import encode_payload
from observe.protocol.remote_write import compress
from observe.sinks import Sink
from observe.sinks.loki_push import LokiPushSink
from observe.sinks.remote_write import RemoteWriteSink
from observe.sources.loki import loki_source
from observe.sources.prometheus_federate import FederateProbe, federate_source
from observe.sources.prometheus_remote_read import (
    PrometheusRemoteReadSource,
    RemoteReadUnsupported,
    remote_read_sources,
)

__all__ = ["ProbeResult", "probe_all"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One row of the `observe check` table: one source selector or one sink."""

    cluster: str  # "(central)" for a sink
    endpoint: str  # "prometheus", "loki", or the sink's name
    url: str  # without userinfo or query
    ok: bool
    detail: str  # what was found, or what failed and what to check
    seconds: float


def federate_row(cluster: str, p: FederateProbe) -> ProbeResult:
    """A Prometheus probe as a row: a failed pull, bad lines or no series at all fail the check."""
    if p.reason is not None:  # the pull itself failed; `error` says why and what to check
        ok, detail = False, p.error or p.reason
    elif p.bad_lines:
        # The run would count these lines and go on, but a body with bad lines loses those series:
        # the check says so, with the first one to look at (`error` is "line N: what is wrong").
        plural = "s" * (p.bad_lines != 1)
        ok, detail = False, f"{p.series} series match, {p.bad_lines} bad line{plural} (first: {p.error})"
    elif p.series == 0:
        ok, detail = False, "reachable, but no series match the selectors"  # a typo in `match`, usually
    else:
        ok, detail = True, f"{p.series} series match"
    return ProbeResult(cluster, "prometheus", p.url, ok, detail, p.duration)


async def _probe_prometheus(cfg: Config, name: str) -> list[ProbeResult]:
    """Remote-read from every replica (unless `protocol: federate`), then federation where the collector
    would federate: always for `federate`, and for `auto` when a replica refused remote-read."""
    cluster = cfg.cluster(name)
    prom = cluster.prometheus
    assert prom is not None
    rows: list[ProbeResult] = []
    async with new_session(prom) as session:
        federate = prom.protocol == "federate"
        if not federate:
            window = cfg.remote_read_for(cluster)
            for source in remote_read_sources(cluster, session):  # each replica, or the API server's proxy
                row, refused = await _probe_remote_read(
                    name,
                    source,
                    window.safety_lag,
                    auto=prom.protocol == "auto",
                )
                rows.append(row)
                federate = federate or (refused and prom.protocol == "auto")
        if federate:
            row = federate_row(name, await federate_source(cluster, session).probe())
            rows.append(row)
    return rows


async def _probe_remote_read(
    cluster: str, source: PrometheusRemoteReadSource, safety_lag: float, *, auto: bool
) -> tuple[ProbeResult, bool]:
    """Read the last minute up to `now - safety_lag`, as a cycle would; True if the source refused
    remote-read (with `auto` the collector then federates, and the row says so, loudly, not as a failure)."""
    started = time.monotonic()
    end = int((time.time() - safety_lag) * 1000)
    endpoint, url = "prometheus/remote_read", safe_url(source.url)
    try:
        read = await source.read(end - 60_000, end)
    except RemoteReadUnsupported as exc:
        how = "WARNING: the collector falls back to federation (newest samples only, no backfill)"
        detail = f"{how}: {exc}" if auto else f"remote-read refused (set protocol: auto or federate): {exc}"
        return ProbeResult(cluster, endpoint, url, auto, detail, time.monotonic() - started), True
    except SourceError as exc:
        return ProbeResult(cluster, endpoint, url, False, str(exc), time.monotonic() - started), False
    skipped = sum(read.chunks_skipped.values())
    detail = (
        f"{read.series_count} series, {read.samples} samples in the last minute ({read.response_type})"
        + (f", {skipped} chunks of other encodings skipped" if skipped else "")
    )
    if not read.series_count:
        return ProbeResult(
            cluster,
            endpoint,
            url,
            False,
            "reachable, but no series match the selectors in the last minute",
            time.monotonic() - started,
        ), False
    return ProbeResult(cluster, endpoint, url, True, detail, time.monotonic() - started), False


async def _probe_loki(cfg: Config, name: str) -> list[ProbeResult]:
    loki = cfg.cluster(name).loki
    assert loki is not None
    started = time.monotonic()
    async with new_session(loki) as session:
        source = loki_source(cfg.cluster(name), session, page_limit=cfg.logs.page_limit)
        probes = await source.probe()
    seconds = time.monotonic() - started
    return [
        ProbeResult(
            name,
            "loki",
            f"{safe_url(source.base_url)} {p.selector}",
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
    return ProbeResult("(central)", sink.name, safe_url(cfg.url), ok, detail, seconds)


async def _discovered(cfg: Config) -> tuple[Config, list[ProbeResult]]:
    """The config with what the inventories hold, and a row per inventory and per object refused."""
    from observe.discovery.runner import discover_all, merge  # only when the config has `discovery`

    started = time.monotonic()
    found = await discover_all(cfg)
    merged, problems = merge(cfg, found)
    seconds = time.monotonic() - started
    rows: list[ProbeResult] = []
    for f in found:
        names = ", ".join(c.name for c in f.clusters)
        detail = f.error or (f"{len(f.clusters)} clusters: {names}" if f.clusters else "no clusters found")
        rows.append(ProbeResult("(discovery)", f.source, "", f.error is None, detail, seconds))
    rows += [ProbeResult("(discovery)", p.source, p.object, False, p.message, seconds) for p in problems]
    return merged, rows


async def probe_all(cfg: Config) -> list[ProbeResult]:
    """Every row of the check, sorted by (cluster, endpoint); all probes run concurrently. Discovered
    clusters are probed like configured ones, after a row per inventory (and per object it refused)."""
    found: list[ProbeResult] = []
    if cfg.discovery is not None:
        cfg, found = await _discovered(cfg)
    proms = [_probe_prometheus(cfg, c.name) for c in cfg.clusters if c.prometheus is not None]
    probes = []
    if (rw := cfg.central.remote_write) is not None:
        # an empty WriteRequest: accepted by every receiver, stores nothing
        probes.append(_probe_sink(rw, lambda session: RemoteWriteSink(rw, session), compress(b"")))
    if (push := cfg.central.loki) is not None:
        # no streams: accepted, stores nothing
        payload = encode_payload([], push.encoding)
        probes.append(_probe_sink(push, lambda session: LokiPushSink(push, session), payload))
    lokis = [_probe_loki(cfg, c.name) for c in cfg.clusters if c.loki is not None]
    results = [*found, *await asyncio.gather(*probes)]
    for rows in await asyncio.gather(*proms, *lokis):
        results.extend(rows)
    return sorted(results, key=lambda r: (r.cluster, r.endpoint))
