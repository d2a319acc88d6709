"""One cluster's metrics through federation: pull `/federate`, stamp and encode, queue one cycle.

    PrometheusFederateSource.pull_into(sink)        observe/sources/prometheus_federate.py
      -> SeriesCache cycle: feed(piece)...finish()  parse, normalize + relabel once per new series, encode,
                                                    staleness for vanished series (observe/transform/)
      -> append_cycle(queue, payloads)              data_dir/queue/<cluster>/metrics, one group per cycle

The body is parsed as it arrives, a piece at a time in a thread (one for every cluster): a cluster need not
hold its whole body (~31 MB for 100k series), and the event loop stays free for the other clusters and
the deliveries.
A pull that fails, even after some pieces were parsed, leaves the cache as it was, then queues
Prometheus' staleness marker for every series the cache holds, as Prometheus does for a failed scrape:
central instant queries stop returning them at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from observe.config import ClusterConfig, Config
from observe.errors import SourceError
from observe.http import new_session, safe_url
from observe.model import METRICS, Signal
from observe.pipeline.base import (
    DeliveryPlan,
    Outcome,
    append_cycle_or_drop,
    build_normalizer,
    max_samples_per_record,
    open_queue,
)
from observe.queue.durable import DurableQueue
from observe.sources.prometheus_federate import PrometheusFederateSource, federate_source
from observe.telemetry import Telemetry
from observe.transform.normalize import Normalizer
from observe.transform.series_cache import Cycle, CycleBatch, SeriesCache

__all__ = ["MetricsOutcome", "MetricsPipeline"]

T = TypeVar("T")

# Every cluster's bodies are parsed in one thread. The GIL lets only one parse run at a time anyway, so a
# thread per concurrent pull would gain nothing, and each thread gets its own malloc arena, which keeps
# what it freed: with the default executor's threads the peak RSS of two 100k-series clusters was
# ~13 MiB higher (`python -m bench.federate_vs_vmagent`).
_PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="federate-parse")


async def _parse(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_PARSER, fn, *args)


@dataclass
class MetricsOutcome(Outcome):
    series: int = 0
    samples: int = 0
    stale: int = 0
    bad_lines: int = 0

    def figures(self) -> dict[str, int | float | None]:
        return {
            "series": self.series,
            "samples": self.samples,
            "stale": self.stale,
            "bad lines": self.bad_lines,
        }


class MetricsPipeline:
    """One cluster's Prometheus, federated: `await cycle()` once per interval."""

    signal: Signal = METRICS
    source = "prometheus"

    def __init__(
        self,
        cluster: str,
        *,
        source: PrometheusFederateSource,
        cache: SeriesCache,
        queue: DurableQueue,
        telemetry: Telemetry,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.cluster = cluster
        self.puller = source
        self.cache = cache
        self.queue = queue
        self.telemetry = telemetry
        self._session = session  # owned: closed with the pipeline
        self._last = MetricsOutcome()

    @classmethod
    def wanted(cls, cluster: ClusterConfig) -> bool:
        # `auto` is remote-read's, which falls back to federation itself (observe/pipeline/remote_read.py)
        return cluster.prometheus is not None and cluster.prometheus.protocol == "federate"

    @classmethod
    def open(cls, cfg: Config, cluster: ClusterConfig, *, telemetry: Telemetry, sink: str) -> MetricsPipeline:
        """The pipeline as the service runs it: its own session, its queue (replaying what is left)."""
        assert cluster.prometheus is not None
        queue = open_queue(
            cfg, cluster.name, METRICS, telemetry, max_age=cfg.queue.max_age, fsync=cfg.queue.fsync
        )
        telemetry.init_metrics(cluster.name, source=cls.source, sink=sink)
        telemetry.pulled_with(cluster.name, "federate")
        session = new_session(cluster.prometheus)
        pipeline = cls.over(cfg, cluster, telemetry=telemetry, queue=queue, session=session)
        pipeline._session = session  # owned: closed with the pipeline
        return pipeline

    @classmethod
    def over(
        cls,
        cfg: Config,
        cluster: ClusterConfig,
        *,
        telemetry: Telemetry,
        queue: DurableQueue,
        session: aiohttp.ClientSession,
        normalizer: Normalizer | None = None,
    ) -> MetricsPipeline:
        """Federation over a queue and session someone else owns (remote-read's fallback shares its own)."""
        prom = cluster.prometheus
        assert prom is not None
        name = cluster.name
        cache = SeriesCache(
            normalizer or build_normalizer(cfg, cluster, telemetry),
            max_samples_per_send=max_samples_per_record(cfg),
            on_bad_line=lambda lineno, message: telemetry.exposition_error(name, lineno, message),
        )
        return cls(
            name,
            source=federate_source(cluster, session),  # the url, or through the API server's proxy
            cache=cache,
            queue=queue,
            telemetry=telemetry,
        )

    @property
    def last(self) -> MetricsOutcome:
        return self._last

    def delivery_plan(self, sink: str) -> DeliveryPlan:
        # A cycle holds at most one sample per series, so its records may go out together (None: the
        # receiver's max_in_flight); the next cycle's wait for the whole group's acks (time order).
        telemetry, cluster = self.telemetry, self.cluster
        return DeliveryPlan(
            max_in_flight=None, on_sent=lambda r: telemetry.samples_delivered(cluster, sink, r.count)
        )

    async def cycle(self) -> MetricsOutcome:
        """Pull once and queue what came back (or stale markers when the pull failed)."""
        start = time.monotonic()
        try:
            batch = await self._pull()
        except SourceError as exc:
            duration = time.monotonic() - start
            self.telemetry.pull_failed(
                self.cluster, self.source, duration=duration, reason=exc.reason, message=str(exc)
            )
            batch = self.cache.fail(int(time.time() * 1000))
            self._append(batch.payloads)
            self.telemetry.metrics_unreachable(self.cluster, stale=batch.stale)
            self._last = MetricsOutcome(
                ok=False, stale=batch.stale, error=str(exc), reason=exc.reason, duration=duration,
                finished_at=time.time(),
            )  # fmt: skip
            return self._last
        self._append(batch.payloads)
        duration = time.monotonic() - start
        self.telemetry.pull_succeeded(self.cluster, self.source, duration=duration, at=time.time())
        self.telemetry.metrics_pulled(
            self.cluster, series=batch.series, samples=batch.series, queued=batch.samples - batch.stale,
            stale=batch.stale,
            relabel_dropped=batch.dropped_by_relabel,
        )  # fmt: skip
        self._last = MetricsOutcome(
            ok=True, series=batch.series, samples=batch.samples, stale=batch.stale, bad_lines=batch.bad_lines,
            duration=duration, finished_at=time.time(),
        )  # fmt: skip
        return self._last

    async def _pull(self) -> CycleBatch:
        """One pull through the cache; raises SourceError. Parsing 100k lines takes ~0.1 s of CPU (~1.6 s
        when every series is new): off the event loop, so the other clusters' pulls and the deliveries
        keep moving. The cache is only ever touched by this task (and the parsing thread it hands to)."""
        if type(self.puller).pull_body is not PrometheusFederateSource.pull_body:
            # A source that retries inside pull_body (the pinned pod's failover, observe/kube/pinned.py)
            # would feed a second answer after part of the first: pulled whole.
            body = await self.puller.pull_body()
            return await _parse(self.cache.process, body, int(time.time() * 1000))
        cycle = self.cache.begin(int(time.time() * 1000))
        sink = _Feed(cycle, wait_until=time.monotonic() + self.puller.timeout / 2)
        try:
            await self.puller.pull_into(sink)
            await sink.drain()
        except BaseException:
            cycle.abort()  # waits for a piece still being read; the ones queued after it are skipped
            raise
        return await _parse(cycle.finish, int(time.time() * 1000))

    def _append(self, payloads: list[tuple[bytes, int]]) -> None:
        append_cycle_or_drop(
            self.queue, payloads, telemetry=self.telemetry, cluster=self.cluster, signal=self.signal
        )

    def status(self) -> dict[str, object]:
        last = self._last
        return {
            "url": safe_url(self.puller.url),
            **last.status(),
            "protocol": "federate",
            "series": last.series,
            "samples_last_cycle": last.samples,
            "stale_markers_last_cycle": last.stale,
            "bad_lines_last_cycle": last.bad_lines,
        }

    async def retire(self) -> None:
        """Every series of the last cycle goes stale now, as when Prometheus drops a target."""
        batch = self.cache.fail(int(time.time() * 1000))
        self._append(batch.payloads)
        self.telemetry.metrics_unreachable(self.cluster, stale=batch.stale)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Feed:
    """A cache cycle as the source's sink: each piece is read in the parsing thread.

    The pull waits for each piece to be read before it reads more (so no body is held whole) for the
    first half of its timeout. After that it reads on and the pieces queue up for the parser: a cold
    cache (every series new, ~16 µs a line) or many clusters at once must not make the pull time out;
    the cycle then ends when the parser has caught up, as when bodies were read whole.
    """

    def __init__(self, cycle: Cycle, *, wait_until: float) -> None:
        self._cycle = cycle
        self._wait_until = wait_until
        self._queued: list[asyncio.Future[None]] = []
        self._lines_read = 0  # newlines in the pieces read, when the last one waited for was
        self._lines_queued = 0  # newlines in the pieces queued since

    async def feed(self, piece: bytes) -> None:
        read = asyncio.get_running_loop().run_in_executor(_PARSER, self._cycle.feed, piece)
        if not self._queued and time.monotonic() < self._wait_until:
            await read
            self._lines_read = self._cycle.lines()
        else:
            self._queued.append(read)
            self._lines_queued += piece.count(b"\n")

    async def drain(self) -> None:
        """Wait for the pieces still queued (raising what reading one raised)."""
        queued, self._queued = self._queued, []
        for read in queued:
            await read

    def lines(self) -> int:
        return self._lines_read + self._lines_queued
