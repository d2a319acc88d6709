"""One cluster's metrics through federation: pull `/federate`, stamp and encode, queue one cycle.

    PrometheusFederateSource.pull()                 observe/sources/prometheus_federate.py
      -> SeriesCache.process(body, now)             parse, normalize + relabel once per new series, encode,
                                                    staleness for vanished series (observe/transform/)
      -> append_cycle(queue, payloads)              data_dir/queue/<cluster>/metrics, one group per cycle

A failed pull queues Prometheus' staleness marker for every series the cache holds, as Prometheus does for
a failed scrape: central instant queries stop returning them at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

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
from observe.transform.series_cache import SeriesCache

__all__ = ["MetricsOutcome", "MetricsPipeline"]


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
            body = await self.puller.pull_body()  # bytes: the cache reads them a slice at a time
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
        # Parsing 100k lines takes a few hundred ms of CPU: off the event loop, so the other clusters'
        # pulls and the deliveries keep moving. The cache is only ever touched by this task.
        batch = await asyncio.to_thread(self.cache.process, body, int(time.time() * 1000))
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
