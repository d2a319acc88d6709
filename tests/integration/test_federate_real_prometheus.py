"""PrometheusFederateSource against a real Prometheus: it scrapes a prometheus_client exporter served
by this test, carries `external_labels: {cluster: src-a}`, and we pull its /federate (gzip-encoded by
Prometheus, two match[] selectors) and parse it with parse_text."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from observe.config import PrometheusSourceConfig
from observe.errors import SourceError
from observe.http import fetch, new_session
from observe.protocol.exposition import parse_text
from observe.reasons import FAIL_HTTP_4XX
from observe.sources.prometheus_federate import PrometheusFederateSource
from tests.servers import Server, prom_query, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

ODD_ROOM = 'the "big" hall, {north} \\ wing'


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    """A prometheus_client exporter on 127.0.0.1 (port picked by the OS); yields host:port."""
    reg = CollectorRegistry()
    temp = Gauge("demo_temperature_celsius", "Room temperature.", ["room"], registry=reg)
    temp.labels("kitchen").set(21.5)
    temp.labels(ODD_ROOM).set(-3.25)
    Counter("demo_requests", "Requests served.", ["code"], registry=reg).labels("200").inc(7)
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        yield f"127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, exporter: str) -> Iterator[Server]:
    config = f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  external_labels: {{cluster: src-a}}
scrape_configs:
  - job_name: demo
    static_configs: [{{targets: ["{exporter}"]}}]
"""
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"), config)
    try:
        wait_until(
            lambda: len(prom_query(server, 'demo_temperature_celsius{job="demo"}')) == 2,
            timeout=30,
            message="Prometheus to scrape the exporter",
        )
        yield server
    finally:
        server.stop()


async def test_federate_from_real_prometheus(prometheus: Server, exporter: str) -> None:
    cfg = PrometheusSourceConfig(
        url=prometheus.url,
        match=['{__name__=~"demo_temperature_celsius|demo_requests_total"}', 'up{job="demo"}'],
    )
    before_ms = int(time.time() * 1000) - 60_000
    async with new_session(cfg) as session:
        source = PrometheusFederateSource("src-a", cfg, session)
        text = await source.pull()
        raw = await fetch(session, "GET", source.url, cfg=cfg, max_bytes=1 << 20, params=[("match[]", "up")])
    assert raw.headers.get("Content-Encoding") == "gzip", "Prometheus compressed it; aiohttp inflated it"
    assert raw.body.startswith(b"# TYPE up untyped\nup{")
    samples, errors = parse_text(text)
    after_ms = int(time.time() * 1000) + 1000

    assert errors == []
    common = {"cluster": "src-a", "instance": exporter, "job": "demo"}  # external label, then target labels
    got = {(name, frozenset(labels)): value for name, labels, value, _ in samples}
    assert got == {
        ("demo_temperature_celsius", frozenset({**common, "room": "kitchen"}.items())): 21.5,
        ("demo_temperature_celsius", frozenset({**common, "room": ODD_ROOM}.items())): -3.25,
        ("demo_requests_total", frozenset({**common, "code": "200"}.items())): 7.0,
        ("up", frozenset(common.items())): 1.0,
    }
    for _, labels, _, ts in samples:
        assert len(dict(labels)) == len(labels), "no duplicate label names"
        assert ts is not None and before_ms <= ts <= after_ms, "federation stamps each sample's scrape time"


async def test_wrong_path_on_real_prometheus_is_a_clear_4xx(prometheus: Server) -> None:
    cfg = PrometheusSourceConfig(url=prometheus.url + "/api/v1")  # a common mistake: the API path
    async with new_session(cfg) as session:
        with pytest.raises(SourceError) as info:
            await PrometheusFederateSource("src-a", cfg, session).pull()
    assert info.value.reason == FAIL_HTTP_4XX
    assert str(info.value).startswith(f"cluster 'src-a': GET {prometheus.url}/api/v1/federate: 404 Not Found")
