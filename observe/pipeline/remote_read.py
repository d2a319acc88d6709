"""One cluster's metrics through remote-read: every raw sample, exactly once, in order, gaps filled.

    window (cursor, min(cursor + max_window, now - safety_lag)]
      -> PrometheusRemoteReadSource.read(window)     observe/sources/prometheus_remote_read.py (one request;
                                                     replicas tried in order, the working one kept)
      -> drop replica_label, normalize + relabel     once per source label set (cached)
      -> encode, one group per window                data_dir/queue/<cluster>/metrics
      -> ReadCursor.save(window end)                 only after the append returned

The cursor moves only once its window is in the queue, and the queue's acknowledged position only after
the receiver's 2xx, so delivery is at-least-once end to end; a re-read window is byte-identical and
receivers accept an identical sample again silently. After an outage the gap is read oldest first, one
bounded window after another, so each series reaches the receiver in time order; a cycle stops after
`interval` of reading and the next one goes on from the cursor. In the steady state a cycle reads only
once the window spans `min_window` (give or take half an interval; the first cycle of a process, and any
after a failure, always read): the source pays per series per request, whatever the window holds, so
fewer, longer windows cost it less per sample. A cycle in between asks only `GET /-/ready`, so an outage
is still seen within an interval. A gap longer than `backfill_limit` is
cut: its oldest part is skipped, counted in seconds (`observe_remote_read_skipped_seconds_total`) and
said, because the receiver would refuse samples that old.

Staleness: the source's own staleness markers (Prometheus writes them when a target or series goes away)
are read and forwarded bit for bit. When the source cannot be read, nothing is invented: a synthetic
marker at "now" would make every backfilled older sample of that series out of order at the receiver.
The centre learns of the outage from the collector's own `observe_cluster_up{cluster} == 0`
(shipped like any metric), which the generated alerts key on, and the gap is filled once it is back.

Fallback (`protocol: auto`): a source that does not serve remote-read (404, 405, 501, a reply that is not
protobuf: an old Prometheus, a proxy that only lets GET through) is pulled with federation from then
on, said once as a warning, and shown in `/status` and `observe check`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from observe.config import ClusterConfig, Config, RemoteReadConfig
from observe.errors import QueueError, SourceError
from observe.http import new_session, safe_url
from observe.model import METRICS, Signal
from observe.pipeline.base import (
    DeliveryPlan,
    append_cycle,
    build_normalizer,
    max_samples_per_record,
    open_queue,
)
from observe.pipeline.metrics import MetricsOutcome, MetricsPipeline
from observe.protocol.remote_read import RemoteReadFormatError, decode_series_labels
from observe.protocol.remote_write import (
    compress,
    encode_labels,
    encode_stale_series,
    encode_write_request,
    series_prefix,
)
from observe.queue.durable import DurableQueue
from observe.reasons import FAIL_BAD_RESPONSE
from observe.sources.prometheus_remote_read import (
    PrometheusRemoteReadSource,
    ReadResult,
    RemoteReadUnsupported,
    WindowTooLarge,
    remote_read_sources,
)
from observe.sources.read_cursor import ReadCursor
from observe.telemetry import Telemetry
from observe.transform.normalize import Normalizer

__all__ = ["RemoteReadOutcome", "RemoteReadPipeline"]

log = logging.getLogger("observe.pipeline.remote_read")

_MIN_WINDOW_MS: Final = 1000  # halving a refused window stops here: one second of one cluster is small
_MAX_LABEL_CACHE: Final = 200_000  # source label sets remembered with their encoded form (~300 B each)
_DROPPED: Final = b""  # label-cache value of a series relabel_configs dropped


@dataclass
class RemoteReadOutcome(MetricsOutcome):
    protocol: str = "remote_read"
    windows: int = 0
    lag_seconds: float | None = None
    backlog_seconds: float = 0.0  # how much of the gap is still to read after this cycle
    replica: str | None = None

    def figures(self) -> dict[str, int | float | None]:
        lag = None if self.lag_seconds is None else round(self.lag_seconds)
        return {**super().figures(), "windows": self.windows, "lag s": lag}


class RemoteReadPipeline:
    """One cluster's Prometheus through remote-read: `await cycle()` once per interval."""

    signal: Signal = METRICS
    source = "prometheus"

    def __init__(
        self,
        cfg: Config,
        cluster: ClusterConfig,
        *,
        sources: list[PrometheusRemoteReadSource],
        normalizer: Normalizer,
        queue: DurableQueue,
        cursor: ReadCursor,
        telemetry: Telemetry,
        fallback: Callable[[], MetricsPipeline] | None = None,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        prom = cluster.prometheus
        assert prom is not None and sources
        self.cluster = cluster.name
        self.read_cfg: RemoteReadConfig = cfg.remote_read_for(cluster)
        self.selectors = list(dict.fromkeys(prom.match))
        self.replica_label = prom.replica_label
        self.sources = sources
        self.normalizer = normalizer
        self.queue = queue
        self.cursor = cursor
        self.telemetry = telemetry
        self.clock = clock
        self.budget = cfg.interval  # a cycle returns after this long, so /status and the lag stay fresh
        self.max_samples = max_samples_per_record(cfg)
        self._make_fallback = fallback
        self._federate: MetricsPipeline | None = None
        self._fallback_why: str | None = None
        self._session = session  # owned: closed with the pipeline
        self._active = 0  # the replica that answered last: tried first
        self._window_ms = int(self.read_cfg.max_window * 1000)
        # Give or take half a cycle, so that cycles 30s apart with a 2m min_window read every fourth one
        # rather than every fifth (a window just short of 2m would wait a whole cycle more).
        # At most half of backfill_limit: a gap is cut to that, so a longer span would never be reached.
        min_window = min(self.read_cfg.min_window, self.read_cfg.backfill_limit / 2)
        self._min_span_ms = max(0, int((min_window - cfg.interval / 2) * 1000))
        self._position: int | None = None  # the cursor, once loaded
        self._lag: float | None = None  # now minus the cursor, as of the last cycle (one that waited too)
        self._labels: dict[bytes, bytes] = {}  # the source's label bytes -> ours (or _DROPPED)
        self._newest: dict[bytes, int] = {}  # encoded labels -> newest timestamp sent, for `retire`
        self._last: MetricsOutcome = RemoteReadOutcome()

    @classmethod
    def wanted(cls, cluster: ClusterConfig) -> bool:
        return cluster.prometheus is not None and cluster.prometheus.protocol != "federate"

    @classmethod
    def open(
        cls, cfg: Config, cluster: ClusterConfig, *, telemetry: Telemetry, sink: str
    ) -> RemoteReadPipeline:
        prom = cluster.prometheus
        assert prom is not None
        name = cluster.name
        session = new_session(prom)
        sources = remote_read_sources(cluster, session)  # the urls, or through the API server's proxy
        queue = open_queue(cfg, name, METRICS, telemetry, max_age=cfg.queue.max_age, fsync=cfg.queue.fsync)
        normalizer = build_normalizer(cfg, cluster, telemetry)
        telemetry.init_metrics(name, source=cls.source, sink=sink)
        telemetry.init_remote_read(name)

        def fallback() -> MetricsPipeline:
            return MetricsPipeline.over(
                cfg, cluster, telemetry=telemetry, queue=queue, session=session, normalizer=normalizer
            )

        return cls(
            cfg, cluster, sources=sources, normalizer=normalizer, queue=queue, telemetry=telemetry,
            cursor=ReadCursor(Path(cfg.data_dir) / "read_cursors", name, sync=cfg.queue.fsync != "never"),
            fallback=fallback if prom.protocol == "auto" else None, session=session,
        )  # fmt: skip

    @property
    def last(self) -> MetricsOutcome:
        return self._last

    @property
    def protocol(self) -> str:
        return "federate" if self._federate is not None else "remote_read"

    def delivery_plan(self, sink: str) -> DeliveryPlan:
        # Each series is in at most one record of a window's group, so the group's records may go out
        # together (the receiver's max_in_flight); the next window waits for the whole group's acks.
        telemetry, cluster = self.telemetry, self.cluster
        return DeliveryPlan(
            max_in_flight=None, on_sent=lambda r: telemetry.samples_delivered(cluster, sink, r.count)
        )

    # -- the cycle ------------------------------------------------------------------------------------------
    async def cycle(self) -> MetricsOutcome:
        """Read windows from the cursor up to now - safety_lag (or until the time budget is spent)."""
        if self._federate is not None:
            self._last = await self._federate.cycle()
            return self._last
        started = time.monotonic()
        now = self.clock()
        head = int((now - self.read_cfg.safety_lag) * 1000)
        position = self._load(now)
        position = self._cut_backlog(position, head)
        # Too little new data for min_window: ask the source only whether it is up (a failure reads now,
        # and the read says what is wrong, or fails over to another replica).
        if self._last.ok and head - position < self._min_span_ms and await self.sources[self._active].alive():
            return self._wait(now, position)
        result = RemoteReadOutcome()
        try:
            while position < head:
                if result.windows and time.monotonic() - started > self.budget:
                    break  # the saved cursor is where the next cycle goes on
                end = min(position + self._window_ms, head)
                try:
                    read = await self._read(position, end)
                except WindowTooLarge as exc:
                    if self._window_ms <= _MIN_WINDOW_MS:
                        raise SourceError(str(exc), reason=exc.reason) from exc
                    self._window_ms = max(_MIN_WINDOW_MS, self._window_ms // 2)
                    log.warning(
                        "remote-read window refused as too large; halving it",
                        extra={"cluster": self.cluster, "window_ms": self._window_ms, "error": str(exc)},
                    )
                    continue
                self._queue_window(read, result)
                self.cursor.save(end, selectors=self.selectors)  # after the append: never ahead of the queue
                self._position = position = end
                result.windows += 1
        except RemoteReadUnsupported as exc:
            if self._make_fallback is None:
                result.error, result.reason = str(exc), exc.reason
                self._failed(result, started, exc)
            else:
                return await self._fall_back(exc)
        except SourceError as exc:
            result.error, result.reason = str(exc), exc.reason
            self._failed(result, started, exc)
        except QueueError as exc:
            # the disk under the queue or the cursor failed: nothing lost (the cursor did not move past what
            # is queued); the next cycle reads the window again
            result.error, result.reason = str(exc), "queue"
            log.error(
                "remote-read cycle stopped: queue or cursor write failed",
                extra={"cluster": self.cluster, "error": str(exc)},
            )
        result.duration = time.monotonic() - started
        result.finished_at = self.clock()
        result.lag_seconds = self._lag = max(0.0, now - position / 1000)
        result.backlog_seconds = max(0.0, (head - position) / 1000)
        result.replica = safe_url(self.sources[self._active].base_url)
        result.ok = result.error is None
        self.telemetry.remote_read_progress(
            self.cluster, lag=result.lag_seconds, backlog=result.backlog_seconds
        )
        if result.ok:
            self.telemetry.pull_succeeded(
                self.cluster, self.source, duration=result.duration, at=result.finished_at
            )
            self.telemetry.metrics_pulled(
                self.cluster, series=result.series, samples=result.samples, queued=result.samples - result.stale,
                stale=result.stale,
                relabel_dropped=0,
            )  # fmt: skip
        self._last = result
        return result

    def _wait(self, now: float, position: int) -> MetricsOutcome:
        """Too little new data for `min_window`, and the source is up: read nothing this cycle. The last
        read's outcome (its counts, its time) stands; only the lag, which grows, is told."""
        last = self._last
        backlog = last.backlog_seconds if isinstance(last, RemoteReadOutcome) else 0.0
        self._lag = max(0.0, now - position / 1000)
        self.telemetry.remote_read_progress(self.cluster, lag=self._lag, backlog=backlog)
        return last

    def _load(self, now: float) -> int:
        if self._position is None:
            saved = self.cursor.load()
            if saved is None:
                saved = int((now - self.read_cfg.start_from) * 1000)
                log.info("remote-read starts", extra={"cluster": self.cluster, "from_ms": saved})
            self._position = saved
        return self._position

    def _cut_backlog(self, position: int, head: int) -> int:
        """Skip what is older than backfill_limit: the receiver would refuse it."""
        oldest = head - int(self.read_cfg.backfill_limit * 1000)
        if position >= oldest:
            return position
        skipped = (oldest - position) / 1000
        self.telemetry.remote_read_cut(self.cluster, skipped)
        log.warning(
            "remote-read gap longer than backfill_limit: its oldest part is skipped",
            extra={"cluster": self.cluster, "skipped_seconds": round(skipped, 3), "backfill_limit": self.read_cfg.backfill_limit},
        )  # fmt: skip
        self._position = oldest
        return oldest

    async def _read(self, start_ms: int, end_ms: int) -> ReadResult:
        """The window from the replica that answered last, then the others in order."""
        errors: list[SourceError] = []
        n = len(self.sources)
        for i in range(n):
            index = (self._active + i) % n
            try:
                read = await self.sources[index].read(start_ms, end_ms)
            except (RemoteReadUnsupported, WindowTooLarge):
                raise
            except SourceError as exc:
                errors.append(exc)
                if n > 1:
                    log.warning(
                        "replica failed; trying the next", extra={"cluster": self.cluster, "error": str(exc)}
                    )
                continue
            if index != self._active:
                log.warning(
                    "remote-read failed over to another replica",
                    extra={"cluster": self.cluster, "replica": safe_url(self.sources[index].base_url)},
                )
                self._active = index
            return read
        if len(errors) == 1:
            raise errors[0]
        raise SourceError(
            f"cluster {self.cluster!r}: every replica failed: " + "; ".join(str(e) for e in errors),
            reason=errors[-1].reason,
        )

    def _failed(self, result: RemoteReadOutcome, started: float, exc: SourceError) -> None:
        self.telemetry.pull_failed(
            self.cluster,
            self.source,
            duration=time.monotonic() - started,
            reason=exc.reason,
            message=str(exc),
        )
        self.telemetry.metrics_unreachable(self.cluster, stale=0)  # no invented markers: see the docstring

    async def _fall_back(self, exc: RemoteReadUnsupported) -> MetricsOutcome:
        assert self._make_fallback is not None
        self._federate = self._make_fallback()
        self._fallback_why = str(exc)
        self.telemetry.pulled_with(self.cluster, "federate")
        log.warning(
            "remote-read refused by the source: falling back to federation (only the newest sample of each "
            "series, no backfill); set prometheus.protocol: federate to silence this",
            extra={"cluster": self.cluster, "error": str(exc)},
        )
        self._last = await self._federate.cycle()
        return self._last

    # -- one window -----------------------------------------------------------------------------------------
    def _queue_window(self, read: ReadResult, result: RemoteReadOutcome) -> None:
        """Encode the window's series and append them as groups: each series in one record per group."""
        # Imported on first use: NumPy is ~15 MiB a federation-only collector does not pay.
        from observe.protocol.sample_fields import SampleFields

        fields = SampleFields(read.timestamps, read.values)
        timestamps = read.timestamps
        max_samples = self.max_samples
        layers: list[list[tuple[bytes, int]]] = [
            []
        ]  # layer i: the i-th piece of each series too long for one
        stale = samples = series = 0
        start = 0
        cache, newest, first_layer, take = self._labels, self._newest, layers[0], fields.take
        for source_labels, end in zip(read.label_bytes, read.ends, strict=True):
            first, start = start, end
            label_bytes = cache.get(source_labels)
            if label_bytes is None:
                label_bytes = self._encoded(source_labels)
            if label_bytes is _DROPPED or first == end:
                continue
            series += 1
            samples += end - first
            if fields.has_stale:
                stale += fields.stale(first, end)
            if end - first <= max_samples:  # the usual case, inlined: one piece
                newest[label_bytes] = timestamps[end - 1]
                body = take(first, end)
                first_layer.append((series_prefix(label_bytes, len(body)) + body, end - first))
                continue
            for layer, i in enumerate(range(first, end, max_samples)):
                j = min(i + max_samples, end)
                if layer == len(layers):
                    layers.append([])
                self._newest[label_bytes] = timestamps[j - 1]
                body = fields.take(i, j)
                layers[layer].append((series_prefix(label_bytes, len(body)) + body, j - i))
        for group in layers:  # one group each: a later piece of a series waits for the earlier one's ack
            append_cycle(self.queue, _records(group, max_samples))
        result.series = max(result.series, series)
        result.samples += samples
        result.stale += stale
        self.telemetry.remote_read_window(
            self.cluster, samples=read.samples, response_type=read.response_type, body_bytes=read.body_bytes,
            chunks_skipped=read.chunks_skipped,
        )  # fmt: skip

    def _encoded(self, source_labels: bytes) -> bytes:
        """The series' labels as we send them (replica label dropped, normalized, relabeled, encoded),
        cached by the source's own bytes for them: a known series costs one dict lookup."""
        got = self._labels.get(source_labels)
        if got is not None:
            return got
        try:
            labels = decode_series_labels(source_labels)
        except RemoteReadFormatError as exc:
            raise SourceError(
                f"cluster {self.cluster!r}: malformed remote-read response: {exc}", reason=FAIL_BAD_RESPONSE
            ) from exc
        source = dict(labels)
        if self.replica_label is not None:
            source.pop(self.replica_label, None)
        final = self.normalizer.apply(source)
        if final is None or not final.get("__name__"):
            encoded = _DROPPED
        else:
            encoded = encode_labels(tuple(sorted((k, v) for k, v in final.items() if v != "")))
        if len(self._labels) >= _MAX_LABEL_CACHE:
            self._labels.clear()
        self._labels[source_labels] = encoded
        return encoded

    def status(self) -> dict[str, object]:
        if self._federate is not None:
            return {**self._federate.status(), "protocol": "federate", "fallback_reason": self._fallback_why}
        last = self._last
        lag = self._lag
        backlog = last.backlog_seconds if isinstance(last, RemoteReadOutcome) else 0.0
        return {
            "url": safe_url(self.sources[self._active].url),
            **last.status(),
            "protocol": "remote_read",
            "series": last.series,
            "samples_last_cycle": last.samples,
            "stale_markers_last_cycle": last.stale,
            "lag_seconds": None if lag is None else round(lag, 3),
            "backlog_seconds": round(backlog, 3),
        }

    async def retire(self) -> None:
        """The cluster left the fleet: no backfill will follow, so a staleness marker at "now" (after each
        series' newest sample) is safe here, and ends every series at the centre at once."""
        if self._federate is not None:
            await self._federate.retire()
            return
        now_ms = int(self.clock() * 1000)
        series = [encode_stale_series(lb, max(now_ms, ts + 1)) for lb, ts in self._newest.items()]
        for i in range(0, len(series), self.max_samples):
            append_cycle(
                self.queue, _records([(s, 1) for s in series[i : i + self.max_samples]], self.max_samples)
            )
        self.telemetry.metrics_unreachable(self.cluster, stale=len(series))
        self._newest.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _records(series: list[tuple[bytes, int]], max_samples: int) -> list[tuple[bytes, int]]:
    """Pack (encoded series, samples) into WriteRequests of at most `max_samples` samples each."""
    out: list[tuple[bytes, int]] = []
    batch: list[bytes] = []
    count = 0
    for encoded, n in series:
        if batch and count + n > max_samples:
            out.append((compress(encode_write_request(batch)), count))
            batch, count = [], 0
        batch.append(encoded)
        count += n
    if batch:
        out.append((compress(encode_write_request(batch)), count))
    return out
