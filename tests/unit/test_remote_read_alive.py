"""PrometheusRemoteReadSource.alive(): the readiness check a cycle that waits for min_window makes, against
an HTTP server answering `/-/ready` with each status (a real Prometheus answers it in
tests/e2e/test_remote_read_path.py)."""

from __future__ import annotations

import pytest
from aiohttp import web

from observe.config import PrometheusSourceConfig
from observe.http import new_session
from observe.sources.prometheus_remote_read import PrometheusRemoteReadSource
from tests.servers import free_port


async def _server(status: int, seen: list[str]) -> tuple[web.AppRunner, str]:
    async def ready(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(status=status, text="Prometheus Server is Ready.\n" if status == 200 else "no\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ready)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/prefix"


@pytest.mark.parametrize(
    ("status", "alive", "asked_again"),
    [
        (200, True, True),
        (503, False, True),  # not ready (starting, replaying its WAL): read now, let the read tell
        (401, False, True),
        (404, True, False),  # not served here (a proxy, a Mimir): reads alone tell, never asked again
        (405, True, False),
    ],
)
async def test_alive_by_status(status: int, alive: bool, asked_again: bool) -> None:
    seen: list[str] = []
    runner, url = await _server(status, seen)
    cfg = PrometheusSourceConfig(url=url, timeout=5.0)
    try:
        async with new_session(cfg) as session:
            source = PrometheusRemoteReadSource("alpha", cfg, session)
            assert await source.alive() is alive
            assert await source.alive() is alive
    finally:
        await runner.cleanup()
    assert seen[0] == "/prefix/-/ready"  # under the source's path prefix, as the read is
    assert len(seen) == (2 if asked_again else 1)


async def test_a_source_that_does_not_answer_is_not_alive() -> None:
    cfg = PrometheusSourceConfig(url=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    async with new_session(cfg) as session:
        assert await PrometheusRemoteReadSource("alpha", cfg, session).alive() is False
