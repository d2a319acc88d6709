"""The collector's own HTTP endpoints: /, /metrics, /healthz, /readyz, /status.

`/status` is for a human with `kubectl port-forward` (per-cluster state as JSON); it shows URLs and
outcomes, never credentials: every URL in it went through `observe.http.safe_url` (no userinfo, no
query), and no header value is ever included. `/` is the same document as an HTML page
(`observe.status_page`), rendered from `status_document()` and nothing else.

The server knows nothing of the collector: it serves whatever `StatusProvider` it is given.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from observe import status_page

__all__ = ["StatusProvider", "StatusServer", "page_refresh_seconds"]

# The page fetches nothing and runs no script; the header says so to the browser as well, so an error
# message that slipped past escaping still could not load or run anything.
_PAGE_HEADERS = {
    "Content-Security-Policy": status_page.CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # a reload must show the collector's state now, not a cached page
}


class StatusProvider(Protocol):
    """What the endpoints read."""

    def status_document(self) -> dict[str, Any]:
        """The `/status` document (JSON-serialisable, no secrets)."""
        ...

    def is_ready(self) -> bool:
        """True once the queues are open and the pipelines started."""
        ...

    def cycle_interval(self) -> float | None:
        """Seconds between pulls (the page reloads as often), None if the provider has no cycle."""
        ...

    def metrics_text(self) -> bytes:
        """The self-metrics in the Prometheus text format, as of now."""
        ...


class StatusServer:
    def __init__(self, provider: StatusProvider) -> None:
        self.provider = provider
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
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
        return web.Response(body=self.provider.metrics_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.provider.is_ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.provider.status_document(), dumps=_dumps)

    async def _page(self, request: web.Request) -> web.Response:
        page = status_page.render(
            self.provider.status_document(),
            now=time.time(),
            refresh_seconds=page_refresh_seconds(self.provider),
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


def page_refresh_seconds(provider: StatusProvider) -> int:
    """How often `/` reloads: once per collection interval, or every 10 s if the provider has none."""
    interval = provider.cycle_interval()
    return status_page.DEFAULT_REFRESH_SECONDS if interval is None else status_page.refresh_seconds(interval)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
