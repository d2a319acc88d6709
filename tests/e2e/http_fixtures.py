"""Small HTTP servers the end-to-end tests put around the real ones, each on 127.0.0.1 in a thread.

- `ReceiverProxy`: forwards remote-write POSTs to a real receiver, optionally slowed down, or answering a
  scripted list of statuses first (429 with Retry-After, 503, 400, 409) to show the collector's reaction
  to a misbehaving centre while the data still lands in a real Prometheus.
- `bad_sources_app`: the ways a cluster's Prometheus endpoint can be broken (HTML page, 401, malformed
  exposition, a body over the cap, a server that never answers).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.servers import free_port


class ThreadedApp:
    """An aiohttp app served from its own event loop in a daemon thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._started.set()
        self._loop.run_forever()

    def start(self) -> ThreadedApp:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("test HTTP server did not start")
        return self

    def stop(self) -> None:
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class ReceiverProxy:
    """Forwards every POST to `target`; `script` statuses are answered first, one per request."""

    target: str
    delay: float = 0.0
    script: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # the status each request got
    _server: ThreadedApp | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)  # guards script and seen

    def start(self) -> ReceiverProxy:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/{tail:.*}", self._handle)
        self._server = ThreadedApp(app).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            status, headers, text = scripted
            with self._lock:
                self.seen.append(status)
            return web.Response(status=status, headers=headers, text=text)
        if self.delay:
            await asyncio.sleep(self.delay)
        fwd_headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-encoding", "content-type", "x-prometheus-remote-write-version")
        }
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(self.target, data=body, headers=fwd_headers) as resp,
            ):
                status, text = resp.status, await resp.text()
        except aiohttp.ClientConnectionError as exc:  # the receiver is down: what a load balancer says
            status, text = 503, f"upstream unavailable: {exc}"
        with self._lock:
            self.seen.append(status)
        return web.Response(status=status, text=text)


def bad_sources_app(good_body: Callable[[], str], *, huge_bytes: int) -> web.Application:
    """`/<case>/federate` for each broken-endpoint case; `good_body` gives a valid exposition to damage."""

    async def html(_: web.Request) -> web.Response:
        return web.Response(
            text="<html><body><h1>Welcome to nginx!</h1></body></html>\n", content_type="text/html"
        )

    async def unauthorized(_: web.Request) -> web.Response:
        return web.Response(status=401, text="Unauthorized\n")

    async def malformed(_: web.Request) -> web.Response:
        lines = good_body().splitlines()
        # Damage two lines in the middle; everything else must still arrive.
        lines.insert(len(lines) // 2, 'broken_metric{label="unterminated} 1 1700000000000')
        lines.insert(len(lines) // 3, "another_broken_metric not-a-number")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def huge(_: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/plain"}
        )  # chunked: no Content-Length up front
        await resp.prepare(_)
        line = b'padding_metric{pad="' + b"x" * 1000 + b'"} 1\n'
        sent = 0
        while sent < huge_bytes:
            await resp.write(line * 64)
            sent += len(line) * 64
        await resp.write_eof()
        return resp

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(3600)  # bounded by the collector's timeout; the server's cleanup cancels it
        return web.Response(text="")

    app = web.Application()
    app.router.add_get("/html/federate", html)
    app.router.add_get("/unauthorized/federate", unauthorized)
    app.router.add_get("/malformed/federate", malformed)
    app.router.add_get("/huge/federate", huge)
    app.router.add_get("/hang/federate", hang)
    return app
