"""The collector: a flat list of pipelines, one per (cluster, signal), each drained by its own delivery.

    for each configured cluster, each pipeline kind that wants it (observe/pipeline/KINDS):
        pipeline.cycle() every interval     source -> normalize/relabel -> encode -> DurableQueue
        Delivery(pipeline.queue -> sink)    the centre's sink (observe/pipeline/centre.py), supervised
    OwnMetricsPipeline                      the collector's own metrics, after the others' cycles

Every pipeline has its own loop, queue and delivery task, so a slow, dead or backlogged cluster (or
signal) never holds back another. Shutdown is two-phase, as Prometheus' remote storage does it: stop
pulling, then let the deliveries drain within `shutdown_timeout`; what is left stays in the queues for the
next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest

from observe import __version__
from observe.config import ClusterConfig, Config, require_service_config
from observe.errors import ConfigError, ObserveError, QueueError
from observe.model import LOGS, METRICS, Signal
from observe.pipeline import KINDS, Key, Outcome, Pipeline
from observe.pipeline.centre import Centre
from observe.pipeline.own_metrics import OwnMetricsPipeline
from observe.queue.cleanup import remove_cluster_state
from observe.server import StatusServer
from observe.sinks.delivery import Delivery
from observe.telemetry import Telemetry

if TYPE_CHECKING:
    from observe.telemetry.own_logs import OwnLogsHandler

__all__ = ["Collector", "CycleReport", "ReloadReport"]

log = logging.getLogger("observe.service")

# A delivery stopped by a QueueError (disk trouble) restarts after this, doubling up to the cap.
_RESTART_BACKOFF = 1.0
_RESTART_BACKOFF_MAX = 60.0


@dataclass
class CycleReport:
    """What `run_once` did: each pipeline's outcome, what is left in the queues, what was dropped."""

    outcomes: dict[Key, Outcome] = field(default_factory=dict)
    undelivered: dict[str, int] = field(default_factory=dict)  # "cluster/signal" -> records left queued
    dropped: dict[str, int] = field(default_factory=dict)  # "cluster/reason" -> samples or entries dropped

    @property
    def ok(self) -> bool:
        return (
            all(o.ok for o in self.outcomes.values())
            and not any(self.undelivered.values())
            and not any(self.dropped.values())
        )


@dataclass
class _Drain:
    """A pipeline's delivery, the task running it, and what stops it (the collector's stop, or this
    pipeline's own when its cluster leaves the fleet)."""

    delivery: Delivery
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class ReloadReport:
    """What `reconfigure` did, by cluster name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


class Collector:
    """The whole service: `run()` until stopped, or `run_once()` for one cycle and a flush.

    It is the status server's provider (`status_document`, `is_ready`, `metrics_text`).
    """

    def __init__(self, cfg: Config, *, telemetry: Telemetry | None = None, serve_http: bool = True) -> None:
        require_service_config(cfg)
        self.cfg = cfg
        self.telemetry = telemetry or Telemetry()
        self.serve_http = serve_http
        self.pipelines: dict[Key, Pipeline] = {}
        self.started_at: float | None = None
        self.ready = False
        self._centre = Centre(cfg, self.telemetry)
        self._own: OwnMetricsPipeline | None = None
        self._drains: dict[Key, _Drain] = {}
        self._own_logs: OwnLogsHandler | None = None
        self._http: StatusServer | None = None
        self._run_stop: asyncio.Event | None = None  # set while `run()` runs: new pipelines get loops
        self._loops: dict[Key, asyncio.Task[None]] = {}
        self._retiring: dict[str, asyncio.Task[None]] = {}
        # more top-level sections of `/status` (name -> builder), e.g. discovery's inventories and problems
        self.status_sections: dict[str, Callable[[], dict[str, Any]]] = {}  # cluster -> its retirement (drain, then delete)

    # -- wiring -----------------------------------------------------------------------------------
    def _add(self, pipeline: Pipeline) -> None:
        key: Key = (pipeline.cluster, pipeline.signal)
        self.pipelines[key] = pipeline
        drain = self._drains[key] = _Drain(self._centre.delivery(pipeline))
        if self.ready:  # added while running (a reload, a discovered cluster): start it now
            drain.task = asyncio.create_task(self._supervise(key, drain))
            if self._run_stop is not None and pipeline is not self._own:
                self._loops[key] = asyncio.create_task(self._loop(pipeline, self._run_stop))

    def _open_cluster(self, cluster: ClusterConfig) -> None:
        for kind in KINDS:
            if kind.wanted(cluster):
                sink = self._centre.sink_name(kind.signal)
                self._add(kind.open(self.cfg, cluster, telemetry=self.telemetry, sink=sink))

    async def start(self) -> None:
        """Open every pipeline (its queue replays what a previous run left), start deliveries and HTTP."""
        if self.started_at is not None:
            return
        self.started_at = time.time()
        for cluster in self.cfg.clusters:
            self._open_cluster(cluster)
        if self.cfg.self_metrics:
            self._own = OwnMetricsPipeline.open(
                self.cfg, telemetry=self.telemetry, before_snapshot=self.refresh_gauges
            )
            self._add(self._own)
        if self.cfg.central.loki is not None and self.cfg.logs.ship_own_logs:
            # requests and the Loki handler are ~20 MiB of imports: loaded only when the logs are shipped
            from observe.telemetry.own_logs import ship_own_logs

            self._own_logs = ship_own_logs(self.cfg)
        for key, drain in self._drains.items():
            drain.task = asyncio.create_task(self._supervise(key, drain))
        if self.serve_http:
            server = StatusServer(self)
            await server.start(*self.cfg.listen_host_port())
            self._http = server
        self.ready = True
        signals = [signal for _, signal in self._pulled()]
        log.info(
            "collector started",
            extra={
                "metrics_clusters": signals.count(METRICS), "logs_clusters": signals.count(LOGS),
                "sink": self._centre.sink_name(METRICS),
            },
        )  # fmt: skip

    def _pulled(self) -> list[Key]:
        """The pipelines that pull a cluster (all but the collector's own metrics)."""
        return [key for key, p in self.pipelines.items() if p is not self._own]

    def pulling(self, signal: Signal) -> dict[str, Pipeline]:
        """The pipelines of `signal` that pull a cluster, by cluster name."""
        return {key[0]: self.pipelines[key] for key in self._pulled() if key[1] == signal}

    # -- the status server's provider -------------------------------------------------------------
    def refresh_gauges(self) -> None:
        """Queue gauges from the queues' live state: right at scrape time, not as of the last send."""
        for drain in self._drains.values():
            drain.delivery.update_gauges()

    def is_ready(self) -> bool:
        return self.ready

    def cycle_interval(self) -> float | None:
        return self.cfg.interval

    def metrics_text(self) -> bytes:
        self.refresh_gauges()
        return generate_latest(self.telemetry.registry)

    def status_document(self) -> dict[str, Any]:
        """`/status`: per cluster, each pulling pipeline's own section (`prometheus`, `loki`); the queues."""
        now = time.time()
        clusters: dict[str, Any] = {}
        for key in self._pulled():
            pipeline = self.pipelines[key]
            clusters.setdefault(pipeline.cluster, {})[pipeline.source] = pipeline.status()
        queues: dict[str, Any] = {}
        for key, pipeline in self.pipelines.items():
            st = pipeline.queue.stats()
            queues[_name(key)] = {
                "bytes": st.bytes,
                "records": st.records,
                "oldest_age_seconds": round(now - st.oldest_created, 3) if st.oldest_created else 0.0,
            }
        return {
            "version": __version__,
            "started_at": self.started_at,
            "ready": self.ready,
            **self._centre.describe(),
            "clusters": clusters,
            "queues": queues,
            **{name: build() for name, build in self.status_sections.items()},
        }

    # -- lifecycle --------------------------------------------------------------------------------
    async def run_once(self) -> CycleReport:
        """One cycle of every pipeline, then flush every queue within `shutdown_timeout`."""
        await self.start()
        pulled = self._pulled()
        outcomes = await asyncio.gather(*(self.pipelines[key].cycle() for key in pulled))
        if self._own is not None:
            await self._own.cycle()
        await self._flush()
        report = CycleReport(
            outcomes=dict(zip(pulled, outcomes, strict=True)),
            undelivered={_name(key): p.queue.stats().records for key, p in self.pipelines.items()},
            dropped=self._dropped_counts(),
        )
        await self.close()
        return report

    def _dropped_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for metric in self.telemetry.dropped_samples.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value > 0:
                    key = f"{sample.labels['cluster']}/{sample.labels['reason']}"
                    out[key] = out.get(key, 0) + int(sample.value)
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle every pipeline each `interval`, each on its own loop, until `stop` is set; then flush."""
        await self.start()
        self._run_stop = stop
        for key in self._pulled():
            self._loops[key] = asyncio.create_task(self._loop(self.pipelines[key], stop))
        own: asyncio.Task[None] | None = None
        if self._own is not None:
            own = asyncio.create_task(self._loop(self._own, stop, first_after=self.cfg.interval))
        await stop.wait()
        log.info(
            "collector stopping: no more pulls, flushing queues",
            extra={"deadline": self.cfg.shutdown_timeout},
        )
        loops = [*self._loops.values(), *([own] if own is not None else []), *self._retiring.values()]
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self._loops.clear()
        if self._own is not None:
            await self._own.cycle()  # the final counts, flushed with the rest
        await self._flush()
        await self.close()

    # -- live changes -------------------------------------------------------------------------------
    async def reconfigure(self, cfg: Config) -> ReloadReport:
        """Apply a new config while running: clusters added start within a cycle, changed ones restart on
        their queues (nothing queued is lost), removed ones are retired (see `_retire`).

        Only `clusters` (and the generators' `alerts`, `grafana`) change live; a change anywhere else
        (central, queue, interval, relabel_configs, listen, ...) raises ConfigError naming the keys, and the
        running config stays.
        """
        require_service_config(cfg)
        live = {"clusters", "alerts", "grafana"}
        old, new = self.cfg.model_dump(exclude=live), cfg.model_dump(exclude=live)
        fixed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if fixed:
            raise ConfigError([f"{key}: changed, and only a restart applies it (clusters change live)" for key in fixed])
        before = {c.name: c for c in self.cfg.clusters}
        after = {c.name: c for c in cfg.clusters}
        report = ReloadReport(
            added=sorted(after.keys() - before.keys()),
            removed=sorted(before.keys() - after.keys()),
            changed=sorted(n for n in before.keys() & after.keys() if before[n] != after[n]),
        )
        self.cfg = cfg
        self._centre.cfg = cfg
        for name in report.added:
            if (retiring := self._retiring.pop(name, None)) is not None:  # back before its queues were deleted
                retiring.cancel()
                await asyncio.gather(retiring, return_exceptions=True)
                await self._close_cluster(name)  # its queues stay and are reopened below
        for name in report.changed:
            await self._close_cluster(name)  # queues closed, not drained: the new pipelines reopen them
        for name in report.removed:
            self._retire(name)
        for name in [*report.changed, *report.added]:
            try:
                self._open_cluster(after[name])
            except ObserveError as exc:  # its TLS files, its queue's disk: this cluster waits, the others go on
                log.error("cluster could not be started", extra={"cluster": name, "error": str(exc)})
        if report.added or report.changed or report.removed:
            log.info("fleet changed", extra={"added": report.added, "changed": report.changed, "removed": report.removed})
        return report

    def _keys(self, cluster: str) -> list[Key]:
        return [key for key in self.pipelines if key[0] == cluster and self.pipelines[key] is not self._own]

    async def _close_cluster(self, cluster: str) -> None:
        """Stop the cluster's loops and deliveries and close its pipelines and queues (what is queued stays)."""
        for key in self._keys(cluster):
            loop = self._loops.pop(key, None)
            if loop is not None:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
            drain = self._drains.pop(key)
            drain.stop.set()
            if drain.task is not None:
                await asyncio.gather(drain.task, return_exceptions=True)
            pipeline = self.pipelines.pop(key)
            await pipeline.close()
            pipeline.queue.close()

    def _retire(self, cluster: str) -> None:
        """The cluster left the fleet: stop pulling it, queue its staleness markers (where the protocol
        allows), let its queues drain for up to `removal_grace`, then delete them and its cursors."""
        task = self._retiring[cluster] = asyncio.create_task(self._retire_after(cluster))
        task.add_done_callback(lambda t: self._retiring.pop(cluster, None) if self._retiring.get(cluster) is t else None)

    async def _retire_after(self, cluster: str) -> None:
        keys = self._keys(cluster)
        for key in keys:
            loop = self._loops.pop(key, None)
            if loop is not None:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
            await self.pipelines[key].retire()
        deadline = time.monotonic() + self.cfg.removal_grace
        # polled: an ack has no event to wait on, and once a second is plenty for a drain of minutes
        while time.monotonic() < deadline and any(self.pipelines[k].queue.stats().records for k in keys):  # noqa: ASYNC110
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        left = {_name(k): self.pipelines[k].queue.stats().records for k in keys}
        await self._close_cluster(cluster)
        removed = remove_cluster_state(self.cfg.data_dir, cluster)
        log.info(
            "cluster retired: pulling stopped, queues drained and removed",
            extra={"cluster": cluster, "records_left": left, "removed": removed},
        )

    async def _loop(self, pipeline: Pipeline, stop: asyncio.Event, *, first_after: float = 0.0) -> None:
        interval = self.cfg.interval
        next_at = time.monotonic() + first_after
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), first_after)
        while not stop.is_set():
            try:
                await pipeline.cycle()
            except Exception:  # a bug must not end this pipeline's loop for good: log it, try next cycle
                log.exception(
                    "pipeline cycle crashed", extra={"cluster": pipeline.cluster, "signal": pipeline.signal}
                )
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # the cycle overran: skip the missed ticks rather than bursting to catch up
                next_at = time.monotonic()
                delay = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _supervise(self, key: Key, drain: _Drain) -> None:
        """Keep a delivery running: a QueueError (disk trouble) ends `run()`; start it again once the
        disk may have recovered, instead of leaving the queue undrained until a restart."""
        backoff = _RESTART_BACKOFF
        while not drain.stop.is_set():
            try:
                await drain.delivery.run(drain.stop)
                return
            except QueueError as exc:
                log.error(
                    "delivery stopped by a queue error; restarting it",
                    extra={"queue": _name(key), "error": str(exc), "retry_in": backoff},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drain.stop.wait(), backoff)
            backoff = min(backoff * 2, _RESTART_BACKOFF_MAX)

    async def _flush(self) -> None:
        deadline = time.monotonic() + self.cfg.shutdown_timeout
        for drain in self._drains.values():
            drain.stop.set()
        for drain in self._drains.values():
            if drain.task is not None:
                with contextlib.suppress(Exception):
                    await drain.task
                drain.task = None
        await asyncio.gather(*(d.delivery.drain(deadline) for d in self._drains.values()))

    async def close(self) -> None:
        self.ready = False
        if self._http is not None:
            await self._http.stop()
            self._http = None
        for pipeline in self.pipelines.values():
            await pipeline.close()
        if self._own_logs is not None:
            from observe.telemetry.own_logs import stop_shipping

            stop_shipping(self._own_logs)
            self._own_logs = None
        for key, drain in self._drains.items():
            if drain.task is not None:
                drain.task.cancel()
            self.pipelines[key].queue.close()
        await self._centre.close()
        self._drains.clear()
        log.info("collector stopped")
