"""The collector's own HTTP endpoints: /metrics, /healthz, /readyz, /status.

`/status` is for a human with `kubectl port-forward` (per-cluster state as JSON); it shows URLs and
outcomes, never credentials: URLs are printed without userinfo, and no header value is ever included.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from observe import __version__

if TYPE_CHECKING:
    from observe.service import Collector


def redact_url(url: str) -> str:
    """The URL without any user:password@ part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def status_document(collector: Collector) -> dict[str, Any]:
    now = time.time()
    clusters: dict[str, Any] = {}
    for name, c in collector.clusters.items():
        last = c.last
        clusters[name] = {
            "prometheus": {
                "url": redact_url(c.cfg.url),
                "up": last.ok,
                "last_finished": last.finished_at,
                "last_error": last.error,
                "last_reason": last.reason,
                "series": last.series,
                "samples_last_cycle": last.samples,
                "stale_markers_last_cycle": last.stale,
                "bad_lines_last_cycle": last.bad_lines,
                "pull_seconds": round(last.duration, 3),
            },
        }
    for name, lc in collector.logs.items():
        clusters.setdefault(name, {})["loki"] = lc.status()
    queues: dict[str, Any] = {}
    for name, pipe in collector.pipes.items():
        st = pipe.queue.stats()
        queues[name] = {
            "bytes": st.bytes,
            "records": st.records,
            "oldest_age_seconds": round(now - st.oldest_created, 3) if st.oldest_created else 0.0,
        }
    rw = collector.cfg.central.remote_write
    loki = collector.cfg.central.loki
    return {
        "version": __version__,
        "started_at": collector.started_at,
        "ready": collector.ready,
        "sink": {"kind": "remote_write", "url": redact_url(rw.url)} if rw else {"kind": "local_store"},
        "logs_sink": {"kind": "loki_push", "url": redact_url(loki.url)} if loki else None,
        "clusters": clusters,
        "queues": queues,
    }


class StatusServer:
    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.collector.refresh_gauges()
        body = generate_latest(self.collector.telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.collector.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(status_document(self.collector), dumps=_dumps)


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True)
