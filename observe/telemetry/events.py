"""The collector's own telemetry: every metric it exports, and one function per notable event.

Each event function both counts and (where worth a line) logs once, structured; nothing is logged per
sample or per line. Metric names follow Prometheus conventions and are a public contract: the generated
alerts (rules/) and dashboards (dashboards/) query them, so rename nothing without regenerating those.

Labels: `cluster` is always the *monitored* cluster (or the management cluster's `self_cluster` name
for the collector's own queue); `signal` is `metrics` or `logs`; `source` is `prometheus` or `loki`;
`reason` is one of the constants of `observe.reasons`, never a free-form string. Nothing outside this
module calls `.labels()` on a metric: every count goes through an event here.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from observe import __version__
from observe.model import LOGS, METRICS
from observe.reasons import (
    DROP_LABEL_LIMITS,
    DROP_LINE_TOO_LONG,
    DROP_PERMANENT_ERROR,
    DROP_QUEUE_FULL,
    DROP_TOO_OLD,
    FAIL_UNREACHABLE,
)

log = logging.getLogger("observe")


class Telemetry:
    """All self-metrics in one registry of their own (tests build one per collector)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Info("observe_build", "Version of the observe collector.", registry=r)
        self.build_info.info({"version": __version__})
        self.cluster_up = Gauge(
            "observe_cluster_up",
            "1 if the last pull of the cluster's Prometheus succeeded, else 0.",
            ["cluster"],
            registry=r,
        )
        self.source_up = Gauge(
            "observe_source_up",
            "1 if the last pull of this source succeeded, else 0.",
            ["cluster", "source"],
            registry=r,
        )
        self.last_success = Gauge(
            "observe_last_success_timestamp_seconds",
            "Unix time of the last successful pull of this source.",
            ["cluster", "source"],
            registry=r,
        )
        self.pull_duration = Histogram(
            "observe_pull_duration_seconds",
            "Duration of one pull of one source, failed or not.",
            ["cluster", "source"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
            registry=r,
        )
        self.pull_failures = Counter(
            "observe_pull_failures_total",
            "Failed pulls by reason.",
            ["cluster", "source", "reason"],
            registry=r,
        )
        self.series_pulled = Gauge(
            "observe_series_pulled", "Series returned by the last successful pull.", ["cluster"], registry=r
        )
        self.samples_pulled = Counter(
            "observe_samples_pulled_total", "Samples read from sources.", ["cluster"], registry=r
        )
        self.exposition_errors = Counter(
            "observe_exposition_errors_total",
            "Lines of a federation response that could not be parsed and were skipped.",
            ["cluster"],
            registry=r,
        )
        self.label_collisions = Counter(
            "observe_label_collisions_total",
            "Series or streams that already carried a label observe sets; theirs moved to exported_<label>.",
            ["cluster", "label"],
            registry=r,
        )
        self.relabel_dropped = Counter(
            "observe_relabel_dropped_series_total",
            "Series dropped on purpose by relabel_configs (keep/drop rules), counted once per cycle.",
            ["cluster"],
            registry=r,
        )
        self.stale_markers = Counter(
            "observe_stale_markers_total",
            "Staleness markers emitted for series that vanished or whose cluster became unreachable.",
            ["cluster"],
            registry=r,
        )
        self.samples_queued = Counter(
            "observe_samples_queued_total",
            "Fresh samples (not staleness markers) put into the durable queue.",
            ["cluster"],
            registry=r,
        )
        self.samples_sent = Counter(
            "observe_samples_sent_total",
            "Samples acknowledged (2xx) by the central receiver.",
            ["cluster", "sink"],
            registry=r,
        )
        self.requests_sent = Counter(
            "observe_send_requests_total", "Requests acknowledged (2xx) by a sink.", ["sink"], registry=r
        )
        self.send_failures = Counter(
            "observe_send_failures_total",
            "Failed sends by reason (each retry counts).",
            ["sink", "reason"],
            registry=r,
        )
        self.send_duration = Histogram(
            "observe_send_duration_seconds",
            "Duration of one request to a sink, failed or not.",
            ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.dropped_samples = Counter(
            "observe_dropped_samples_total",
            "Samples (or log entries) lost on purpose, by reason.",
            ["cluster", "signal", "reason"],
            registry=r,
        )
        self.queue_bytes = Gauge(
            "observe_queue_bytes", "Bytes held in the durable queue.", ["cluster", "signal"], registry=r
        )
        self.queue_max_bytes = Gauge(
            "observe_queue_max_bytes", "The durable queue's size bound.", ["cluster", "signal"], registry=r
        )
        self.queue_records = Gauge(
            "observe_queue_records", "Records not yet acknowledged.", ["cluster", "signal"], registry=r
        )
        self.queue_oldest_age = Gauge(
            "observe_queue_oldest_record_age_seconds",
            "Age of the oldest record not yet acknowledged (0 when empty).",
            ["cluster", "signal"],
            registry=r,
        )
        # -- logs path ------------------------------------------------------------------------------
        self.log_entries_pulled = Counter(
            "observe_log_entries_pulled_total",
            "Log entries read from the cluster's Loki (each once: page-boundary repeats are not counted).",
            ["cluster"],
            registry=r,
        )
        self.log_bytes_pulled = Counter(
            "observe_log_bytes_pulled_total", "Bytes of query_range replies read from the cluster's Loki.",
            ["cluster"], registry=r,
        )  # fmt: skip
        self.log_entries_sent = Counter(
            "observe_log_entries_sent_total", "Log entries acknowledged (2xx) by the central Loki.",
            ["cluster"], registry=r,
        )  # fmt: skip
        self.log_bytes_sent = Counter(
            "observe_log_bytes_sent_total",
            "Bytes of push bodies (as sent: snappy protobuf or JSON) acknowledged by the central Loki.",
            ["cluster"],
            registry=r,
        )
        self.log_lag = Gauge(
            "observe_log_lag_seconds",
            "Now minus the cluster's oldest log cursor: how far behind its Loki the collector reads "
            "(at least logs.safety_lag).",
            ["cluster"],
            registry=r,
        )
        self.log_throttled = Counter(
            "observe_log_throttled_total",
            "HTTP 429 answers on the logs path: endpoint=query (the cluster's Loki) or push (central Loki).",
            ["cluster", "endpoint"],
            registry=r,
        )
        self.log_pagination_gaps = Counter(
            "observe_log_pagination_gaps_total",
            "Nanoseconds holding more entries of one stream than two query pages: some of them were missed.",
            ["cluster"],
            registry=r,
        )

        # -- remote-read ------------------------------------------------------------------------------
        self.remote_read_lag = Gauge(
            "observe_remote_read_lag_seconds",
            "Now minus the cluster's remote-read cursor: how far behind its Prometheus the centre is "
            "(at least remote_read.safety_lag).",
            ["cluster"], registry=r,
        )  # fmt: skip
        self.remote_read_backlog = Gauge(
            "observe_remote_read_backlog_seconds",
            "Seconds of the cluster's samples still to read after the last cycle: above 0 while a gap is "
            "being filled.",
            ["cluster"], registry=r,
        )  # fmt: skip
        self.remote_read_samples = Counter(
            "observe_remote_read_samples_total",
            "Samples read through remote-read, by response type (streamed_xor_chunks or samples).",
            ["cluster", "response_type"], registry=r,
        )  # fmt: skip
        self.remote_read_bytes = Counter(
            "observe_remote_read_bytes_total", "Bytes of remote-read responses read.", ["cluster"], registry=r
        )
        self.remote_read_chunks_skipped = Counter(
            "observe_remote_read_chunks_skipped_total",
            "Chunks not decoded because of their encoding (native histograms): counted, never misread.",
            ["cluster", "encoding"], registry=r,
        )  # fmt: skip
        self.remote_read_skipped = Counter(
            "observe_remote_read_skipped_seconds_total",
            "Seconds of a gap not read because they were older than remote_read.backfill_limit.",
            ["cluster"], registry=r,
        )  # fmt: skip
        self.discovered_clusters = Gauge(
            "observe_discovered_clusters", "Clusters the last read of an inventory found.", ["source"], registry=r
        )
        self.discovery_problems = Gauge(
            "observe_discovery_problems",
            "Inventory objects (secrets, contexts) the last read could not turn into a cluster.",
            ["source"], registry=r,
        )  # fmt: skip
        self.source_protocol = Gauge(
            "observe_source_protocol",
            "1 for the protocol the cluster's Prometheus is pulled with (remote_read or federate).",
            ["cluster", "protocol"], registry=r,
        )  # fmt: skip

    # -- events: pulls ---------------------------------------------------------------------------
    def pull_succeeded(self, cluster: str, source: str, *, duration: float, at: float) -> None:
        """Any source's pull finished (what it brought is counted by the signal's own event)."""
        self.pull_duration.labels(cluster, source).observe(duration)
        self.source_up.labels(cluster, source).set(1)
        self.last_success.labels(cluster, source).set(at)

    def pull_failed(self, cluster: str, source: str, *, duration: float, reason: str, message: str) -> None:
        self.pull_duration.labels(cluster, source).observe(duration)
        self.pull_failures.labels(cluster, source, reason).inc()
        self.source_up.labels(cluster, source).set(0)
        log.warning(
            "pull failed", extra={"cluster": cluster, "source": source, "reason": reason, "error": message}
        )

    def metrics_pulled(
        self, cluster: str, *, series: int, samples: int, queued: int, stale: int, relabel_dropped: int
    ) -> None:
        """A metrics cycle read `samples` samples of `series` series and queued `queued` fresh ones (and
        `stale` markers). Federation reads one sample per series; remote-read every one since the cursor."""
        self.cluster_up.labels(cluster).set(1)
        self.series_pulled.labels(cluster).set(series)
        self.samples_pulled.labels(cluster).inc(samples)
        self.samples_queued.labels(cluster).inc(queued)
        self.stale_markers.labels(cluster).inc(stale)
        self.relabel_dropped.labels(cluster).inc(relabel_dropped)

    def metrics_unreachable(self, cluster: str, *, stale: int) -> None:
        """A metrics cycle failed: the cluster is down for the centre, its series marked stale."""
        self.cluster_up.labels(cluster).set(0)
        self.stale_markers.labels(cluster).inc(stale)

    def label_collision(self, cluster: str, label: str) -> None:
        """A series or stream already had a label observe sets: theirs moved to exported_<label>."""
        self.label_collisions.labels(cluster, label).inc()

    def exposition_error(self, cluster: str, lineno: int, message: str) -> None:
        self.exposition_errors.labels(cluster).inc()
        log.debug("bad exposition line skipped", extra={"cluster": cluster, "line": lineno, "error": message})

    def dropped(
        self, cluster: str, signal: str, reason: str, count: int, *, detail: str = "", quiet: bool = False
    ) -> None:
        """Count a drop; `quiet` when the caller already logged this kind once (e.g. per distinct 4xx)."""
        if count <= 0:
            return
        self.dropped_samples.labels(cluster, signal, reason).inc(count)
        if quiet:
            return
        log.warning(
            "data dropped",
            extra={"cluster": cluster, "signal": signal, "reason": reason, "count": count, "detail": detail},
        )

    # -- events: remote-read ----------------------------------------------------------------------
    def remote_read_window(
        self,
        cluster: str,
        *,
        samples: int,
        response_type: str,
        body_bytes: int,
        chunks_skipped: dict[str, int],
    ) -> None:
        self.remote_read_samples.labels(cluster, response_type).inc(samples)
        self.remote_read_bytes.labels(cluster).inc(body_bytes)
        for encoding, n in chunks_skipped.items():
            self.remote_read_chunks_skipped.labels(cluster, encoding).inc(n)

    def remote_read_progress(self, cluster: str, *, lag: float, backlog: float) -> None:
        self.remote_read_lag.labels(cluster).set(lag)
        self.remote_read_backlog.labels(cluster).set(backlog)

    def remote_read_cut(self, cluster: str, seconds: float) -> None:
        """A gap's oldest `seconds` were skipped (older than backfill_limit); the pipeline logged it."""
        self.remote_read_skipped.labels(cluster).inc(seconds)

    def discovery_state(self, clusters: dict[str, int], problems: dict[str, int]) -> None:
        """After a read of the inventories: clusters found and objects refused, per source."""
        for source, n in clusters.items():
            self.discovered_clusters.labels(source).set(n)
        for source, n in problems.items():
            self.discovery_problems.labels(source).set(n)

    def pulled_with(self, cluster: str, protocol: str) -> None:
        """The cluster's Prometheus is now pulled with `protocol` (the other one's series goes to 0)."""
        for name in ("remote_read", "federate"):
            self.source_protocol.labels(cluster, name).set(1 if name == protocol else 0)

    # -- events: sends and queues -------------------------------------------------------------------
    def send_attempted(self, sink: str, seconds: float) -> None:
        """One request to a sink finished, whatever its answer."""
        self.send_duration.labels(sink).observe(seconds)

    def send_succeeded(self, sink: str) -> None:
        self.requests_sent.labels(sink).inc()

    def send_failed(self, sink: str, reason: str) -> None:
        """A send to be retried (each retry counts)."""
        self.send_failures.labels(sink, reason).inc()

    def samples_delivered(self, cluster: str, sink: str, count: int) -> None:
        self.samples_sent.labels(cluster, sink).inc(count)

    def queue_state(
        self, cluster: str, signal: str, *, bytes_: int, records: int, oldest_age: float, max_bytes: int
    ) -> None:
        """The queue gauges, set from the queue's live state."""
        self.queue_bytes.labels(cluster, signal).set(bytes_)
        self.queue_records.labels(cluster, signal).set(records)
        self.queue_oldest_age.labels(cluster, signal).set(oldest_age)
        self.queue_max_bytes.labels(cluster, signal).set(max_bytes)

    # -- events: logs -------------------------------------------------------------------------------
    def logs_pulled(self, cluster: str, *, entries: int, body_bytes: int) -> None:
        self.log_entries_pulled.labels(cluster).inc(entries)
        self.log_bytes_pulled.labels(cluster).inc(body_bytes)

    def logs_sent(self, cluster: str, *, entries: int, body_bytes: int) -> None:
        self.log_entries_sent.labels(cluster).inc(entries)
        self.log_bytes_sent.labels(cluster).inc(body_bytes)

    def log_lag_seconds(self, cluster: str, seconds: float) -> None:
        self.log_lag.labels(cluster).set(max(0.0, seconds))

    def log_throttled_429(self, cluster: str, endpoint: str) -> None:
        self.log_throttled.labels(cluster, endpoint).inc()

    def log_pagination_gap(self, cluster: str, count: int) -> None:
        """Counted only: the source already logged the gap with its selector and nanosecond."""
        self.log_pagination_gaps.labels(cluster).inc(count)

    # -- series created at 0, so `rate()` and absence checks work from the first scrape -------------
    def init_logs(self, cluster: str, *, source: str) -> None:
        for metric in (
            self.log_entries_pulled, self.log_bytes_pulled, self.log_entries_sent, self.log_bytes_sent,
            self.log_lag, self.log_pagination_gaps,
        ):  # fmt: skip
            metric.labels(cluster)
        for endpoint in ("query", "push"):
            self.log_throttled.labels(cluster, endpoint)
        self.source_up.labels(cluster, source)
        self.pull_failures.labels(cluster, source, FAIL_UNREACHABLE)
        reasons = (DROP_QUEUE_FULL, DROP_TOO_OLD, DROP_PERMANENT_ERROR, DROP_LINE_TOO_LONG, DROP_LABEL_LIMITS)
        for reason in reasons:
            self.dropped_samples.labels(cluster, LOGS, reason)

    def init_metrics(self, cluster: str, *, source: str, sink: str) -> None:
        self.source_up.labels(cluster, source)
        self.pull_failures.labels(cluster, source, FAIL_UNREACHABLE)
        self.cluster_up.labels(cluster)
        self.samples_pulled.labels(cluster)
        self.exposition_errors.labels(cluster)
        self.stale_markers.labels(cluster)
        self.samples_sent.labels(cluster, sink)
        for reason in (DROP_QUEUE_FULL, DROP_TOO_OLD, DROP_PERMANENT_ERROR):
            self.dropped_samples.labels(cluster, METRICS, reason)

    def init_remote_read(self, cluster: str) -> None:
        for metric in (
            self.remote_read_lag,
            self.remote_read_backlog,
            self.remote_read_bytes,
            self.remote_read_skipped,
        ):
            metric.labels(cluster)
        for response_type in ("streamed_xor_chunks", "samples"):
            self.remote_read_samples.labels(cluster, response_type)
        self.pulled_with(cluster, "remote_read")
