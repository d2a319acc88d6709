"""The federation pipeline in-process against a fake /federate on loopback: a body parsed as it arrives,
a pull that fails after part of it was parsed, a parser slower than the pull's timeout allows."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from observe.config import Config, parse_config
from observe.http import new_session
from observe.model import METRICS, STALE_NAN_BITS
from observe.pipeline.base import open_queue
from observe.pipeline.metrics import MetricsPipeline
from observe.protocol.remote_write import decode_write_request, decompress
from observe.queue.durable import DurableQueue
from observe.sources.prometheus_federate import PrometheusFederateSource
from observe.telemetry import Telemetry
from observe.transform import series_cache

TS = 1700000000000


def body(series: range, ts: int) -> bytes:
    # ~2.7 MiB for 60k series: several pieces of ~1 MiB
    return b"".join(b'm{i="%d",job="node"} 1 %d\n' % (i, ts) for i in series)


class Fake:
    """/federate answering `answer()`, cut short after `cut` bytes when set."""

    def __init__(self) -> None:
        self.answer: Callable[[], bytes] = lambda: body(range(60_000), TS)
        self.cut: int | None = None

    async def federate(self, request: web.Request) -> web.StreamResponse:
        data = self.answer()
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(data if self.cut is None else data[: self.cut])
        await resp.write_eof()
        return resp


@pytest.fixture
async def fake() -> AsyncIterator[tuple[Fake, TestServer]]:
    f = Fake()
    app = web.Application()
    app.router.add_get("/federate", f.federate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f, server
    await server.close()


def config(tmp_path: Path, server: TestServer, timeout: str = "5s") -> Config:
    return parse_config(
        {
            "interval": "10s",
            "data_dir": str(tmp_path / "data"),
            "self_metrics": False,
            "clusters": [
                {
                    "name": "a",
                    "prometheus": {
                        "url": str(server.make_url("/")),
                        "timeout": timeout,
                        "protocol": "federate",
                    },
                }
            ],
        }
    )


async def pipeline(cfg: Config, **kw: Any) -> tuple[MetricsPipeline, DurableQueue]:
    telemetry = Telemetry()
    cluster = cfg.clusters[0]
    assert cluster.prometheus is not None
    queue = open_queue(cfg, cluster.name, METRICS, telemetry, max_age=3600, fsync="never")
    session = new_session(cluster.prometheus)
    p = MetricsPipeline.over(cfg, cluster, telemetry=telemetry, queue=queue, session=session, **kw)
    p._session = session  # closed with the pipeline
    return p, queue


def queued_samples(queue: DurableQueue) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    while records := queue.peek_group(1000):
        for record in records:
            for _, samples in decode_write_request(decompress(record.payload)):
                out.extend(samples)
        for record in records:
            queue.ack(record.seq)
    return out


def is_stale(value: float) -> bool:
    return bool(struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS)


async def test_a_pull_cut_short_after_pieces_were_parsed_marks_only_the_last_cycles_series_stale(
    tmp_path: Path, fake: tuple[Fake, TestServer]
) -> None:
    f, server = fake
    # Timestamps ahead of our clock, so that a stale marker's (the last sample's + 1 ms) tells which
    # sample the cache holds as the last one sent.
    ts = int(time.time() * 1000) + 3_600_000
    f.answer = lambda: body(range(60_000), ts)
    p, queue = await pipeline(config(tmp_path, server))
    try:
        first = await p.cycle()
        assert (first.ok, first.series, first.samples) == (True, 60_000, 60_000)
        assert len(queued_samples(queue)) == 60_000
        # more series, newer samples, then the body stops mid-line after ~2.5 MiB
        f.answer = lambda: body(range(70_000), ts + 10_000)
        f.cut = 2_600_000
        failed = await p.cycle()
        assert (failed.ok, failed.reason, failed.stale) == (False, "bad_response", 60_000)
        samples = queued_samples(queue)
        assert len(samples) == 60_000 and all(is_stale(v) for v, _ in samples)
        assert {stamp for _, stamp in samples} == {ts + 1}  # nothing of the cut body was taken
        assert len(p.cache) == 0
        f.cut = None
        again = await p.cycle()
        assert (again.ok, again.series, again.samples, again.stale) == (True, 70_000, 70_000, 0)
    finally:
        await p.close()
        queue.close()


async def test_a_parser_slower_than_the_timeout_allows_does_not_fail_the_pull(
    tmp_path: Path, fake: tuple[Fake, TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After half the timeout the pull stops waiting for the parser and reads the rest into memory.
    feed = series_cache.Cycle.feed

    def slow(self: series_cache.Cycle, data: bytes) -> None:
        time.sleep(0.6)
        feed(self, data)

    monkeypatch.setattr(series_cache.Cycle, "feed", slow)
    _, server = fake
    p, queue = await pipeline(config(tmp_path, server, timeout="2s"))
    try:
        start = time.monotonic()
        outcome = await p.cycle()
        assert (outcome.ok, outcome.series, outcome.samples) == (True, 60_000, 60_000), outcome.error
        assert time.monotonic() - start > 2  # three pieces or more, 0.6 s each: past the timeout
        assert len(queued_samples(queue)) == 60_000
    finally:
        await p.close()
        queue.close()


class WholeBody(PrometheusFederateSource):
    """A source that retries inside pull_body, as the pinned pod's failover does."""

    async def pull_body(self) -> bytearray:
        return await PrometheusFederateSource.pull_body(self)


async def test_a_source_that_overrides_pull_body_is_pulled_whole(
    tmp_path: Path, fake: tuple[Fake, TestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    p, queue = await pipeline(config(tmp_path, fake[1]))
    try:
        assert isinstance(p.puller, PrometheusFederateSource)
        p.puller.__class__ = WholeBody
        streamed: list[object] = []
        pull_into = PrometheusFederateSource.pull_into

        async def spy(self: PrometheusFederateSource, sink: Any) -> int:
            streamed.append(sink)
            return await pull_into(self, sink)

        monkeypatch.setattr(PrometheusFederateSource, "pull_into", spy)
        outcome = await p.cycle()
        assert (outcome.ok, outcome.samples) == (True, 60_000)
        assert [type(sink).__name__ for sink in streamed] == ["_Collect"]  # pull_body's, not the cache's
    finally:
        await p.close()
        queue.close()
