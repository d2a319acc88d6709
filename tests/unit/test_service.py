"""The collector's wiring in-process, against a small federation endpoint served on loopback:
failures of the disk under the queue are counted and survived, never fatal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from observe.config import parse_config
from observe.errors import ConfigError, QueueError
from observe.model import LOGS
from observe.queue.durable import DurableQueue
from observe.service import Collector
from observe.sinks.delivery import Delivery
from observe.sinks.local_store import read_logs, read_metrics
from observe.telemetry import Telemetry
from tests.loki_api_fake import NS, FakeLoki

BODY = 'up{job="node",instance="a"} 1 1700000000000\nload{job="node",instance="a"} 0.5 1700000000000\n'


@pytest.fixture
async def source() -> AsyncIterator[TestServer]:
    async def federate(_: web.Request) -> web.Response:
        return web.Response(text=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/federate", federate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def config(tmp_path: Path, source: TestServer, **extra: Any) -> Any:
    return parse_config(
        {
            "interval": "2s",
            "data_dir": str(tmp_path / "data"),
            "self_metrics": False,
            "shutdown_timeout": "2s",
            "clusters": [{"name": "a", "prometheus": {"url": str(source.make_url("/")), "timeout": "1s"}}],
            **extra,
        }
    )


def dropped(telemetry: Telemetry, reason: str) -> float:
    value = telemetry.registry.get_sample_value(
        "observe_dropped_samples_total", {"cluster": "a", "signal": "metrics", "reason": reason}
    )
    return value or 0.0


async def test_a_queue_that_refuses_an_append_counts_the_loss_and_the_run_says_so(
    tmp_path: Path, source: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: DurableQueue, *args: object, **kwargs: object) -> None:
        raise QueueError(f"queue {self.directory}: no space left on device")

    monkeypatch.setattr(DurableQueue, "append_many", full)
    telemetry = Telemetry()
    report = await Collector(config(tmp_path, source), telemetry=telemetry, serve_http=False).run_once()
    assert report.outcomes["a", "metrics"].ok  # the pull itself worked
    assert dropped(telemetry, "queue_error") == 2
    assert report.dropped == {"a/queue_error": 2}
    assert not report.ok  # and `run --once` exits non-zero


async def test_a_delivery_stopped_by_a_queue_error_is_started_again(
    tmp_path: Path, source: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = Delivery.run
    calls = 0

    async def flaky(self: Delivery, stop: asyncio.Event) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise QueueError("queue: input/output error")
        await real_run(self, stop)

    monkeypatch.setattr(Delivery, "run", flaky)
    collector = Collector(config(tmp_path, source), serve_http=False)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    for _ in range(100):  # the supervisor waits 1 s before the restart
        await asyncio.sleep(0.05)
        if calls >= 2:
            break
    stop.set()
    await asyncio.wait_for(task, 20)
    assert calls >= 2
    # ...and what the cycle queued was still delivered, to the embedded store.
    assert list((tmp_path / "data" / "store" / "metrics").rglob("*.parquet"))


async def test_a_cluster_loki_without_central_loki_runs_into_the_embedded_store(
    tmp_path: Path, source: TestServer
) -> None:
    # This config was refused before logs had an embedded store; now its logs land beside the metrics.
    loki = await FakeLoki().start()
    try:
        now_ns = time.time_ns()
        loki.add({"job": "app", "pod": "p-1"}, [(now_ns - (60 - k) * NS, f"line {k}") for k in range(5)])
        cfg = parse_config(
            {
                "data_dir": str(tmp_path / "data"),
                "shutdown_timeout": "5s",
                "logs": {"start_from": "5m"},
                "clusters": [
                    {"name": "a", "prometheus": {"url": str(source.make_url("/"))}},
                    {"name": "b", "loki": {"url": loki.url, "selectors": ['{job="app"}']}},
                ],
            },
            for_service=True,
        )  # the generators accepted it all along; `observe run` now does too
        telemetry = Telemetry()
        collector = Collector(cfg, telemetry=telemetry, serve_http=False)
        assert collector._centre.sink_name(LOGS) == "local_store"
        report = await collector.run_once()
    finally:
        await loki.stop()
    assert report.ok, report
    logs = read_logs(tmp_path / "data" / "store", cluster="b")
    assert logs["line"].tolist() == [f"line {k}" for k in range(5)]
    assert {json.loads(labels)["cluster"] for labels in logs["labels"]} == {"b"}
    assert len(read_metrics(tmp_path / "data" / "store", cluster="a")) == 2
    sent = telemetry.registry.get_sample_value("observe_log_entries_sent_total", {"cluster": "b"})
    assert sent == 5


async def test_the_metrics_pipeline_counts_the_samples_its_sink_acknowledged(tmp_path: Path, source: TestServer) -> None:
    telemetry = Telemetry()
    report = await Collector(config(tmp_path, source), telemetry=telemetry, serve_http=False).run_once()
    assert report.ok
    sent = telemetry.registry.get_sample_value("observe_samples_sent_total", {"cluster": "a", "sink": "local_store"})
    assert sent == 2  # the two samples of BODY, counted by the pipeline, not by the generic delivery


async def test_status_document_has_one_section_per_pipeline_and_every_queue(
    tmp_path: Path, source: TestServer
) -> None:
    cfg = config(tmp_path, source, self_metrics=True)
    collector = Collector(cfg, serve_http=False)
    await collector.start()
    try:
        await collector.pipelines["a", "metrics"].cycle()
        doc = collector.status_document()
    finally:
        await collector.close()
    assert set(doc["clusters"]) == {"a"} and set(doc["clusters"]["a"]) == {"prometheus"}
    assert doc["clusters"]["a"]["prometheus"]["up"] is True
    assert doc["clusters"]["a"]["prometheus"]["series"] == 2
    assert set(doc["queues"]) == {"a/metrics", "management/metrics"}
    assert doc["sink"] == {"kind": "local_store"} and doc["logs_sink"] is None


async def test_a_cluster_removed_and_added_back_before_its_queue_is_deleted_keeps_its_queue(
    tmp_path: Path, source: TestServer
) -> None:
    cfg = config(tmp_path, source, removal_grace="30s")
    collector = Collector(cfg, serve_http=False)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if collector.ready:
                break
        second = {**cfg.clusters[0].model_dump(), "name": "b"}
        with_b = parse_config({**cfg.model_dump(mode="json"), "clusters": [cfg.clusters[0].model_dump(mode="json"), second]})
        report = await collector.reconfigure(with_b)
        assert report.added == ["b"] and ("b", "metrics") in collector.pipelines
        without_a = parse_config({**with_b.model_dump(mode="json"), "clusters": [second]})
        assert (await collector.reconfigure(without_a)).removed == ["a"]
        back = await collector.reconfigure(with_b)  # a is back while its retirement waits out the grace
        assert back.added == ["a"] and ("a", "metrics") in collector.pipelines
        assert (tmp_path / "data" / "queue" / "a" / "metrics").is_dir()
        with pytest.raises(ConfigError, match=r"interval: changed, and only a restart applies it"):
            await collector.reconfigure(parse_config({**with_b.model_dump(mode="json"), "interval": "3s"}))
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
