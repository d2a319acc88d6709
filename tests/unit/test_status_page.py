"""The HTML status page (`observe/status_page.py`) from hand-written `/status` documents, and its route."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from observe import status_page
from observe.server import StatusServer, page_refresh_seconds
from tests.status_page_dom import parse

NOW = 1_700_000_000.0


def prometheus(
    up: bool, *, error: str | None = None, finished: float | None = NOW - 12, **extra: Any
) -> dict[str, Any]:
    return {
        "url": "http://prom.example:9090/federate", "up": up, "last_finished": finished, "last_error": error,
        "last_reason": None if up else "unreachable", "pull_seconds": 0.2, "series": 1234 if up else 0,
        "samples_last_cycle": 1234, "stale_markers_last_cycle": 0, "bad_lines_last_cycle": 0, **extra,
    }  # fmt: skip


def document(**clusters: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0.1.0", "started_at": NOW - 3725, "ready": True,
        "sink": {"kind": "remote_write", "url": "http://thanos:19291/api/v1/receive"}, "logs_sink": None,
        "clusters": {name: {"prometheus": section} for name, section in clusters.items()},
        "queues": {f"{name}/metrics": {"bytes": 3 * 2**20 // 2, "records": 7, "oldest_age_seconds": 95.0}
                   for name in clusters} | {"mgmt/metrics": {"bytes": 0, "records": 0, "oldest_age_seconds": 0.0}},
    }  # fmt: skip


def render(doc: dict[str, Any]) -> str:
    return status_page.render(doc, now=NOW, refresh_seconds=15)


def test_an_error_message_is_escaped_not_run() -> None:
    doc = document(evil=prometheus(False, error='<script>alert("x")</script> & <img src=//x>'))
    page = render(doc)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=//x&gt;" in page
    dom = parse(page)
    assert dom.scripts == 0 and not dom.external_references()
    assert '<script>alert("x")</script> & <img src=//x>' in dom.row("evil").cells["error"]


def test_rows_are_down_first_then_by_cluster_name() -> None:
    doc = document(
        charlie=prometheus(True), alpha=prometheus(True), delta=prometheus(False, error="connection refused"),
        bravo=prometheus(False, error="timeout"), echo=prometheus(False, finished=None),
    )  # fmt: skip
    rows = parse(render(doc)).rows
    assert [(r.cluster, r.state) for r in rows] == [
        ("bravo", "DOWN"), ("delta", "DOWN"), ("echo", "PENDING"), ("alpha", "UP"), ("charlie", "UP"),
    ]  # fmt: skip


def test_a_row_shows_state_success_size_queue_and_unknown_keys() -> None:
    doc = document(alpha=prometheus(True, protocol="remote_write_v2", lag_seconds=4.25, extra_map={"a": 1}))
    dom = parse(render(doc))
    cells = dom.row("alpha").cells
    assert cells["state"] == "UP"
    assert cells["last-success"] == "12s ago"
    assert cells["lag"] == "4.2s"
    assert cells["size"] == "1,234 series"
    assert cells["queue"] == "1.5 MiB 7 records" and cells["oldest"] == "1m 35s"
    assert "protocol: remote_write_v2" in cells["details"] and 'extra_map: {"a":1}' in cells["details"]
    assert dom.refresh == "15"
    assert dom.links["/metrics"] == "metrics" and dom.links["/status"] == "status"
    page = render(doc)
    assert "1h 2m" in page and "READY" in page and "http://thanos:19291/api/v1/receive" in page
    assert 'data-queue="mgmt/metrics"' in page  # the collector's own queue, which no cluster row shows


def test_refresh_follows_the_interval_within_bounds() -> None:
    assert status_page.refresh_seconds(None) == status_page.DEFAULT_REFRESH_SECONDS == 10
    assert [status_page.refresh_seconds(s) for s in (0.5, 15, 29.5, 3600)] == [5, 15, 30, 300]
    assert page_refresh_seconds(SimpleNamespace(cycle_interval=lambda: 30.0)) == 30
    assert page_refresh_seconds(SimpleNamespace(cycle_interval=lambda: None)) == 10


class Provider:
    def status_document(self) -> dict[str, Any]:
        return document(alpha=prometheus(True))

    def is_ready(self) -> bool:
        return True

    def cycle_interval(self) -> float | None:
        return None

    def metrics_text(self) -> bytes:
        return b""


async def test_the_route_serves_the_page_with_a_policy_that_fetches_nothing() -> None:
    async with TestClient(TestServer(StatusServer(Provider()).app())) as client:
        resp = await client.get("/")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        dom = parse(await resp.text())
    assert [r.cluster for r in dom.rows] == ["alpha"] and dom.refresh == "10"
