"""The collector: per-cluster pull loops feeding durable queues, drained into the central sinks.

    per cluster:  PrometheusFederateSource --pull--> SeriesCache (normalize, relabel, encode)
                      --append--> DurableQueue(data_dir/queue/<cluster>/metrics) --Delivery--> sink
    self:         Telemetry registry --SelfMetricsEncoder--> DurableQueue(<self_cluster>) --> same sink

Every cluster has its own loop, queue and delivery task, so a slow, dead or backlogged cluster
never holds back another. The sink is the central remote-write receiver, or the embedded local
store under `data_dir` when `central.remote_write` is absent.

Shutdown is two-phase, as Prometheus' remote storage does it: stop pulling, then let the deliveries
drain within `shutdown_timeout`; whatever is left stays in the queues for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from observe.config import ClusterConfig, Config
from observe.errors import ConfigError, QueueError, SourceError
from observe.http import new_session
from observe.logs import ClusterLogs, LogsCycle, logs_delivery, open_logs_queue
from observe.queue.durable import DurableQueue
from observe.reasons import DROP_CORRUPT, DROP_QUEUE_ERROR
from observe.sinks import Sink
from observe.sinks.delivery import Delivery
from observe.sinks.remote_write import RemoteWriteSink
from observe.sources.prometheus_federate import PrometheusFederateSource
from observe.telemetry import Telemetry
from observe.telemetry.own_logs import OwnLogsHandler, ship_own_logs, stop_shipping
from observe.telemetry.own_metrics import SelfMetricsEncoder
from observe.transform.normalize import Normalizer
from observe.transform.relabel import Relabeler
from observe.transform.series_cache import SeriesCache

log = logging.getLogger("observe.service")

METRICS = "metrics"
LOGS = "logs"


@dataclass
class ClusterCycle:
    """The outcome of one cluster's last pull, as `/status` and `run --once` report it."""

    ok: bool = False
    series: int = 0
    samples: int = 0
    stale: int = 0
    bad_lines: int = 0
    error: str | None = None
    reason: str | None = None
    duration: float = 0.0
    finished_at: float | None = None


@dataclass
class CycleReport:
    clusters: dict[str, ClusterCycle] = field(default_factory=dict)
    logs: dict[str, LogsCycle] = field(default_factory=dict)
    undelivered: dict[str, int] = field(default_factory=dict)  # queue -> records still queued after the flush
    dropped: dict[str, int] = field(
        default_factory=dict
    )  # "cluster/reason" -> samples dropped during the run

    @property
    def ok(self) -> bool:
        return (
            all(c.ok for c in self.clusters.values())
            and all(c.ok for c in self.logs.values())
            and not any(self.undelivered.values())
            and not any(self.dropped.values())
        )


def _append(queue: DurableQueue, payloads: list[tuple[bytes, int]]) -> None:
    """Append one cycle's payloads as one group. The group number only has to differ from the previous
    append's (the queue keeps groups apart by change of number), also across restarts: last_seq + 1 does."""
    if payloads:
        queue.append_many(payloads, group=queue.last_seq + 1)


class _Pipe:
    """One queue and the delivery task draining it."""

    def __init__(self, queue: DurableQueue, delivery: Delivery) -> None:
        self.queue = queue
        self.delivery = delivery
        self.task: asyncio.Task[None] | None = None


class ClusterMetrics:
    """One cluster's metrics path: pull, encode, enqueue."""

    def __init__(self, cfg: Config, cluster: ClusterConfig, *, telemetry: Telemetry, pipe: _Pipe) -> None:
        assert cluster.prometheus is not None
        self.name = cluster.name
        self.cfg = cluster.prometheus
        self.telemetry = telemetry
        self.pipe = pipe
        self.session: aiohttp.ClientSession = new_session(cluster.prometheus)
        self.source = PrometheusFederateSource(cluster.name, cluster.prometheus, self.session)
        relabeler = Relabeler(cfg.relabel_configs) if cfg.relabel_configs else None
        self.normalizer = Normalizer(
            cluster_label=cfg.cluster_label,
            cluster=cluster.name,
            static_labels=cluster.labels,
            relabeler=relabeler,
            on_collision=self._collision,
        )
        self.cache = SeriesCache(
            self.normalizer,
            max_samples_per_send=cfg.central.remote_write.max_samples_per_send
            if cfg.central.remote_write
            else 50_000,
            on_bad_line=self._bad_line,
        )
        self.last = ClusterCycle()

    def _collision(self, label: str) -> None:
        self.telemetry.label_collisions.labels(self.name, label).inc()

    def _bad_line(self, lineno: int, message: str) -> None:
        self.telemetry.exposition_error(self.name, lineno, message)

    async def cycle(self) -> ClusterCycle:
        """Pull once and enqueue what came back (or stale markers when the pull failed)."""
        start = time.monotonic()
        try:
            body = await self.source.pull()
        except SourceError as exc:
            duration = time.monotonic() - start
            self.telemetry.pull_failed(
                self.name, "prometheus", duration=duration, reason=exc.reason, message=str(exc)
            )
            batch = self.cache.fail(int(time.time() * 1000))
            self._enqueue(batch.payloads)
            self.telemetry.stale_markers.labels(self.name).inc(batch.stale)
            self.last = ClusterCycle(
                ok=False,
                stale=batch.stale,
                error=str(exc),
                reason=exc.reason,
                duration=duration,
                finished_at=time.time(),
            )
            return self.last
        # Parsing 100k lines takes a few hundred ms of CPU: off the event loop, so the other clusters'
        # pulls and the deliveries keep moving. The cache is only ever touched by this task.
        batch = await asyncio.to_thread(self.cache.process, body, int(time.time() * 1000))
        self._enqueue(batch.payloads)
        duration = time.monotonic() - start
        self.telemetry.pull_succeeded(
            self.name, "prometheus", duration=duration, series=batch.series, at=time.time()
        )
        self.telemetry.stale_markers.labels(self.name).inc(batch.stale)
        self.telemetry.samples_queued.labels(self.name).inc(batch.samples - batch.stale)
        self.telemetry.relabel_dropped.labels(self.name).inc(batch.dropped_by_relabel)
        self.last = ClusterCycle(
            ok=True,
            series=batch.series,
            samples=batch.samples,
            stale=batch.stale,
            bad_lines=batch.bad_lines,
            duration=duration,
            finished_at=time.time(),
        )
        return self.last

    def _enqueue(self, payloads: list[tuple[bytes, int]]) -> None:
        try:
            _append(self.pipe.queue, payloads)
        except QueueError as exc:
            # The disk refused (full with nothing older to give up, I/O error): this cycle's samples are
            # lost, counted and said once per cycle; the next cycle tries again.
            count = sum(n for _, n in payloads)
            self.telemetry.dropped(self.name, METRICS, DROP_QUEUE_ERROR, count, detail=str(exc))

    async def close(self) -> None:
        await self.session.close()


class Collector:
    """The whole service; `run()` until stopped, or `run_once()` for one cycle and a flush."""

    def __init__(self, cfg: Config, *, telemetry: Telemetry | None = None, serve_http: bool = True) -> None:
        if cfg.central.loki is None:
            # Valid for the generators (rules and dashboards know the cluster has logs), not for running:
            # there is no embedded store for logs, and silently not collecting them would surprise.
            missing = [f"clusters[{i}].loki" for i, c in enumerate(cfg.clusters) if c.loki is not None]
            if missing:
                raise ConfigError(
                    [f"{where}: `observe run` needs central.loki to ship these logs to" for where in missing]
                )
        self.cfg = cfg
        self.telemetry = telemetry or Telemetry()
        self.serve_http = serve_http
        self.clusters: dict[str, ClusterMetrics] = {}
        self.logs: dict[str, ClusterLogs] = {}
        self._loki_session: aiohttp.ClientSession | None = None
        self._own_logs: OwnLogsHandler | None = None
        self.pipes: dict[str, _Pipe] = {}
        self.started_at: float | None = None
        self.ready = False
        self._sink_session: aiohttp.ClientSession | None = None
        self._shared_sink: Sink | None = None
        self._self_encoder: SelfMetricsEncoder | None = None
        self._http: object | None = None
        self._stop_deliveries = asyncio.Event()

    # -- wiring -----------------------------------------------------------------------------------
    def _sink_for(self, cluster: str) -> Sink:
        rw = self.cfg.central.remote_write
        if rw is None:
            from observe.sinks.local_store import LocalStoreSink  # pyarrow is heavy: import only when used

            return LocalStoreSink(self.cfg.data_dir / "store", cluster=cluster)
        if self._shared_sink is None:
            self._sink_session = new_session(rw)
            self._shared_sink = RemoteWriteSink(rw, self._sink_session)
        return self._shared_sink

    def _pipe(self, cluster: str, signal: str) -> _Pipe:
        q = self.cfg.queue
        directory = Path(self.cfg.data_dir) / "queue" / cluster / signal
        queue = DurableQueue(
            directory, max_bytes=q.max_bytes, segment_bytes=q.segment_bytes, max_age=q.max_age, fsync=q.fsync,
            on_drop=self._on_drop(cluster, signal),
        )  # fmt: skip
        sink = self._sink_for(cluster)
        rw = self.cfg.central.remote_write
        delivery = Delivery(
            queue,
            sink,
            cluster=cluster,
            signal=signal,
            telemetry=self.telemetry,
            max_in_flight=rw.max_in_flight if rw else 1,
            min_backoff=rw.min_backoff if rw else 0.5,
            max_backoff=rw.max_backoff if rw else 30.0,
            max_age=q.max_age,
        )
        delivery.update_gauges()
        return _Pipe(queue, delivery)

    def _on_drop(self, cluster: str, signal: str) -> Callable[[str, int], None]:
        def on_drop(reason: str, count: int) -> None:
            self.telemetry.dropped(cluster, signal, reason, count)
            if reason == DROP_CORRUPT:
                log.error("corrupt queue record skipped", extra={"cluster": cluster, "signal": signal})

        return on_drop

    def _start_logs(self) -> None:
        """Per cluster with a Loki: pipeline -> queue (data_dir/queue/<cluster>/logs) -> central Loki."""
        central = self.cfg.central.loki
        if central is None:
            return
        self._loki_session = new_session(central)
        for c in self.cfg.clusters:
            if c.loki is None:
                continue
            queue = open_logs_queue(self.cfg, c.name, self._on_drop(c.name, LOGS))
            pipe = _Pipe(queue, logs_delivery(self.cfg, c.name, queue, self._loki_session, self.telemetry))
            self.pipes[f"{c.name}/{LOGS}"] = pipe
            self.logs[c.name] = ClusterLogs(self.cfg, c, telemetry=self.telemetry, queue=queue)
            self.telemetry.init_logs(c.name)
            self.telemetry.queue_max_bytes.labels(c.name, LOGS).set(queue.max_bytes)
        self._own_logs = ship_own_logs(self.cfg)

    async def start(self) -> None:
        """Open queues (replaying what a previous run left), start deliveries and the HTTP server."""
        if self.started_at is not None:
            return
        self.started_at = time.time()
        sink_name = "remote_write" if self.cfg.central.remote_write else "local_store"
        for c in self.cfg.clusters:
            if c.prometheus is None:
                continue
            pipe = self._pipe(c.name, METRICS)
            self.pipes[f"{c.name}/{METRICS}"] = pipe
            self.clusters[c.name] = ClusterMetrics(self.cfg, c, telemetry=self.telemetry, pipe=pipe)
            self.telemetry.init_cluster(c.name, sources=("prometheus",), sink=sink_name)
        self._start_logs()
        if self.cfg.self_metrics:
            pipe = self._pipe(self.cfg.self_cluster, METRICS)
            self.pipes[f"{self.cfg.self_cluster}/{METRICS}"] = pipe
            self._self_encoder = SelfMetricsEncoder(
                self.telemetry.registry,
                self_label="self_cluster",
                self_cluster=self.cfg.self_cluster,
                max_samples=self.cfg.central.remote_write.max_samples_per_send
                if self.cfg.central.remote_write
                else 50_000,
            )
        for pipe in self.pipes.values():
            pipe.task = asyncio.create_task(self._supervise(pipe))
        if self.serve_http:
            from observe.server import StatusServer

            server = StatusServer(self)
            await server.start(*self.cfg.listen_host_port())
            self._http = server
        self.ready = True
        log.info(
            "collector started",
            extra={"metrics_clusters": len(self.clusters), "logs_clusters": len(self.logs), "sink": sink_name},
        )

    def refresh_gauges(self) -> None:
        """Queue gauges from the queues' live state: right at scrape time, not as of the last send."""
        for pipe in self.pipes.values():
            pipe.delivery.update_gauges()

    def _ship_self_metrics(self) -> None:
        if self._self_encoder is None:
            return
        self.refresh_gauges()
        payloads = self._self_encoder.encode(int(time.time() * 1000))
        _append(self.pipes[f"{self.cfg.self_cluster}/{METRICS}"].queue, payloads)

    async def _cycle_all(self) -> CycleReport:
        results = await asyncio.gather(*(c.cycle() for c in self.clusters.values()))
        logs = await asyncio.gather(*(c.cycle() for c in self.logs.values()))
        self._ship_self_metrics()
        return CycleReport(
            clusters=dict(zip(self.clusters, results, strict=True)),
            logs=dict(zip(self.logs, logs, strict=True)),
        )

    # -- lifecycle --------------------------------------------------------------------------------
    async def run_once(self) -> CycleReport:
        """One pull of every cluster, then flush every queue within `shutdown_timeout`."""
        await self.start()
        report = await self._cycle_all()
        await self._flush()
        report.undelivered = {name: p.queue.stats().records for name, p in self.pipes.items()}
        report.dropped = self._dropped_counts()
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
        """Pull every cluster each `interval`, each on its own loop, until `stop` is set; then flush."""
        await self.start()
        loops = [asyncio.create_task(self._cluster_loop(c, stop)) for c in self.clusters.values()]
        loops += [asyncio.create_task(self._cluster_loop(c, stop)) for c in self.logs.values()]
        loops.append(asyncio.create_task(self._self_loop(stop)))
        await stop.wait()
        log.info(
            "collector stopping: no more pulls, flushing queues",
            extra={"deadline": self.cfg.shutdown_timeout},
        )
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self._ship_self_metrics()
        await self._flush()
        await self.close()

    async def _cluster_loop(self, cluster: ClusterMetrics | ClusterLogs, stop: asyncio.Event) -> None:
        interval = self.cfg.interval
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                await cluster.cycle()
            except Exception:  # a bug must not end this cluster's loop for good: log it, try next cycle
                log.exception("cluster cycle crashed", extra={"cluster": cluster.name})
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # the cycle overran: skip the missed ticks rather than bursting to catch up
                next_at = time.monotonic()
                delay = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _self_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.interval)
            self._ship_self_metrics()

    async def _supervise(self, pipe: _Pipe) -> None:
        """Keep a delivery running: a QueueError (disk trouble) ends `run()`; start it again once the
        disk may have recovered, instead of leaving the queue undrained until a restart."""
        backoff = 1.0
        while not self._stop_deliveries.is_set():
            try:
                await pipe.delivery.run(self._stop_deliveries)
                return
            except QueueError as exc:
                log.error(
                    "delivery stopped by a queue error; restarting it",
                    extra={"queue": str(pipe.queue.directory), "error": str(exc), "retry_in": backoff},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_deliveries.wait(), backoff)
            backoff = min(backoff * 2, 60.0)

    async def _flush(self) -> None:
        deadline = time.monotonic() + self.cfg.shutdown_timeout
        self._stop_deliveries.set()
        for pipe in self.pipes.values():
            if pipe.task is not None:
                with contextlib.suppress(Exception):
                    await pipe.task
                pipe.task = None
        await asyncio.gather(*(p.delivery.drain(deadline) for p in self.pipes.values()))

    async def close(self) -> None:
        self.ready = False
        if self._http is not None:
            await self._http.stop()  # type: ignore[attr-defined]
            self._http = None
        for c in self.clusters.values():
            await c.close()
        for lc in self.logs.values():
            await lc.close()
        stop_shipping(self._own_logs)
        self._own_logs = None
        sinks: list[Sink] = []
        for p in self.pipes.values():
            if p.task is not None:
                p.task.cancel()
            p.queue.close()
            if p.delivery.sink not in sinks:
                sinks.append(p.delivery.sink)
        for sink in sinks:
            await sink.close()
        if self._sink_session is not None:
            await self._sink_session.close()
        if self._loki_session is not None:
            await self._loki_session.close()
        self.pipes.clear()
        log.info("collector stopped")
