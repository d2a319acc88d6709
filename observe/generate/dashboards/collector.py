"""The collector itself: pulls, throughput, the durable queue, sends, drops and label collisions.

Every query reads the self-metrics named in observe/telemetry/events.py (a test checks each name exists there).
Their `cluster` label is the monitored cluster, or `self_cluster` for the collector's own queue.
"""

from __future__ import annotations

from typing import Any

from observe.generate.dashboards import signals as sig
from observe.generate.dashboards.board import (
    Grid,
    custom_variable,
    dashboard,
    datasource_variables,
)
from observe.generate.dashboards.panels import (
    ANY_IS_BAD,
    BAD,
    OK,
    WARN,
    Column,
    key_table,
    legend,
    prom,
    steps,
    timeseries,
)
from observe.generate.dashboards.signals import SELF_LABEL, Scope

UP_MAP = ((0, "Down", BAD), (1, "Up", OK))


def _rate(metric: str, sel: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{sel}}}[$__rate_interval]))"


def _p99(metric: str, sel: str, by: str) -> str:
    return f"histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))"


def build(s: Scope, *, prometheus_uid: str, loki_uid: str) -> dict[str, Any]:
    c = SELF_LABEL
    sel = s.self_sel
    prom_src = f'{sel}, source="prometheus"'
    loki_src = f'{sel}, source="loki"'
    a = s.alerts
    fill = steps((None, OK), (a.queue_usage_warning, WARN), (a.queue_usage_critical, BAD))
    age = sig.freshness_steps(s)
    lag = steps(
        (None, OK), (3 * s.interval_s, WARN), (max(a.queue_lag, 4 * s.interval_s), BAD)
    )  # alerts.queue_lag
    grid = Grid()

    grid.row("Sources").add(
        key_table(
            "Per cluster",
            c,
            [
                Column(
                    "Prometheus",
                    f"max by ({c}) (observe_source_up{{{prom_src}}})",
                    "none",
                    steps((None, BAD), (1, OK)),
                    UP_MAP,
                ),
                Column(
                    "Metrics age",
                    f"time() - max by ({c}) (observe_last_success_timestamp_seconds{{{prom_src}}})",
                    "s",
                    age,
                    decimals=0,
                ),
                Column(
                    "Loki",
                    f"max by ({c}) (observe_source_up{{{loki_src}}})",
                    "none",
                    steps((None, BAD), (1, OK)),
                    UP_MAP,
                ),
                Column(
                    "Logs age",
                    f"time() - max by ({c}) (observe_last_success_timestamp_seconds{{{loki_src}}})",
                    "s",
                    age,
                    decimals=0,
                ),
                Column("Series", f"sum by ({c}) (observe_series_pulled{{{sel}}})", "short"),
                Column(
                    "Pull p99",
                    _p99("observe_pull_duration_seconds", prom_src, c),
                    "s",
                    steps((None, OK), (0.5 * s.interval_s, WARN), (0.8 * s.interval_s, BAD)),
                ),
                Column(
                    "Queue used",
                    f"sum by ({c}) (observe_queue_bytes{{{sel}}}) / sum by ({c}) "
                    f"(observe_queue_max_bytes{{{sel}}})",
                    "percentunit",
                    fill,
                ),
                Column(
                    "Oldest queued",
                    f"max by ({c}) (observe_queue_oldest_record_age_seconds{{{sel}}})",
                    "s",
                    lag,
                    decimals=0,
                ),
            ],
            h=4 + len(s.clusters) + 1,
            description="Missing Loki cells: the cluster has no Loki source configured.",
        ),
        timeseries(
            "Pull duration p99",
            [prom(_p99("observe_pull_duration_seconds", sel, f"{c}, source"), legend(c, "source"))],
            unit="s",
            w=8,
            thresholds=steps((None, OK), (0.8 * s.interval_s, BAD)),
            description=f"Above {0.8 * s.interval_s:g}s a pull nearly overlaps the next cycle (interval "
            f"{s.interval_s:g}s).",
        ),
        timeseries(
            "Pull success ratio",
            [
                prom(
                    f"1 - ({_rate('observe_pull_failures_total', sel, f'{c}, source')} or 0 * "
                    f"{_rate('observe_pull_duration_seconds_count', sel, f'{c}, source')})"
                    f" / {_rate('observe_pull_duration_seconds_count', sel, f'{c}, source')}",
                    legend(c, "source"),
                )
            ],
            unit="percentunit",
            w=8,
            min_val=0,
            max_val=1,
            thresholds=steps((None, BAD), (0.9, WARN), (0.99, OK)),
        ),
        timeseries(
            "Pull failures by reason",
            [
                prom(
                    _rate("observe_pull_failures_total", sel, f"{c}, source, reason") + " > 0",
                    legend(c, "source", "reason"),
                )
            ],
            unit="ops",
            w=8,
            bars=True,
        ),
    )

    grid.row("Throughput").add(
        timeseries(
            "Samples pulled per second",
            [prom(_rate("observe_samples_pulled_total", sel, c), legend(c))],
            unit="ops",
            w=8,
            stack=True,
        ),
        timeseries(
            "Samples sent per second",
            [prom(_rate("observe_samples_sent_total", sel, c), legend(c))],
            unit="ops",
            w=8,
            stack=True,
            description="Acknowledged (2xx) by the central remote-write receiver.",
        ),
        timeseries(
            "Series per cluster",
            [prom(f"sum by ({c}) (observe_series_pulled{{{sel}}})", legend(c))],
            unit="short",
            w=8,
        ),
        timeseries(
            "Log entries pulled per second",
            [prom(_rate("observe_log_entries_pulled_total", sel, c), legend(c))],
            unit="ops",
            w=8,
            stack=True,
        ),
        timeseries(
            "Log entries sent per second",
            [prom(_rate("observe_log_entries_sent_total", sel, c), legend(c))],
            unit="ops",
            w=8,
            stack=True,
            description="Acknowledged (2xx) by the central Loki.",
        ),
        timeseries(
            "Log read lag",
            [prom(f"max by ({c}) (observe_log_lag_seconds{{{sel}}})", legend(c))],
            unit="s",
            w=8,
            thresholds=lag,
            description="How far behind its cluster's Loki the collector reads (at least logs.safety_lag).",
        ),
    )

    read_lag = steps((None, OK), (3 * s.interval_s, WARN), (a.remote_read_lag, BAD))  # alerts.remote_read_lag
    grid.row("Remote-read").add(
        timeseries(
            "Remote-read lag",
            [prom(f"max by ({c}) (observe_remote_read_lag_seconds{{{sel}}})", legend(c))],
            unit="s",
            w=6,
            thresholds=read_lag,
            description="Now minus the cluster's remote-read cursor (at least remote_read.safety_lag). "
            "Growing: the source cannot be read, or reading is slower than its samples arrive.",
        ),
        timeseries(
            "Backfill still to read",
            [prom(f"max by ({c}) (observe_remote_read_backlog_seconds{{{sel}}})", legend(c))],
            unit="s",
            w=6,
            description="Seconds of samples still to read after the last cycle: above 0 while a gap is filled.",
        ),
        timeseries(
            "Samples read per second, by response type",
            [
                prom(
                    f"sum by ({c}, response_type) (rate(observe_remote_read_samples_total{{{sel}}}[$__rate_interval]))",
                    legend(c, "response_type"),
                )
            ],
            unit="ops",
            w=6,
            stack=True,
        ),
        timeseries(
            "Chunks skipped, gap skipped",
            [
                prom(
                    f"sum by ({c}, encoding) (rate(observe_remote_read_chunks_skipped_total{{{sel}}}[$__rate_interval]))",
                    legend(c, "encoding"),
                ),
                prom(_rate("observe_remote_read_skipped_seconds_total", sel, c), legend(c) + " (gap s/s)"),
            ],
            unit="short",
            w=6,
            description="Chunks in encodings observe does not decode (native histograms), and seconds of a "
            "gap older than remote_read.backfill_limit that were not read.",
        ),
    )

    grid.row("Durable queue").add(
        timeseries(
            "Queue bytes",
            [prom(f"sum by ({c}, signal) (observe_queue_bytes{{{sel}}})", legend(c, "signal"))],
            unit="bytes",
            w=8,
            stack=True,
        ),
        timeseries(
            "Queue fill",
            [
                prom(
                    f"sum by ({c}, signal) (observe_queue_bytes{{{sel}}}) / sum by ({c}, signal) "
                    f"(observe_queue_max_bytes{{{sel}}})",
                    legend(c, "signal"),
                )
            ],
            unit="percentunit",
            w=8,
            thresholds=fill,
            min_val=0,
            max_val=1,
            description="At 100% the oldest segment is dropped (reason queue_full).",
        ),
        timeseries(
            "Oldest record not yet sent",
            [
                prom(
                    f"max by ({c}, signal) (observe_queue_oldest_record_age_seconds{{{sel}}})",
                    legend(c, "signal"),
                )
            ],
            unit="s",
            w=8,
            thresholds=lag,
        ),
    )

    grid.row("Sends, drops and collisions").add(
        timeseries(
            "Send failures by reason",
            [
                prom(
                    "sum by (sink, reason) (rate(observe_send_failures_total[$__rate_interval])) > 0",
                    "{{sink}} {{reason}}",
                )
            ],
            unit="ops",
            w=8,
            bars=True,
            description="Every failed attempt counts, retried or not.",
        ),
        timeseries(
            "Send duration p99",
            [
                prom(
                    "histogram_quantile(0.99, sum by (sink, le) "
                    "(rate(observe_send_duration_seconds_bucket[$__rate_interval])))",
                    "{{sink}}",
                )
            ],
            unit="s",
            w=8,
        ),
        timeseries(
            "Dropped by reason",
            [
                prom(
                    _rate("observe_dropped_samples_total", sel, f"{c}, signal, reason") + " > 0",
                    legend(c, "signal", "reason"),
                )
            ],
            unit="ops",
            w=8,
            bars=True,
            thresholds=ANY_IS_BAD,
            description="Samples and log entries lost on purpose "
            "(queue_full, too_old, permanent_error, corrupt).",
        ),
        timeseries(
            "Label collisions",
            [
                prom(
                    _rate("observe_label_collisions_total", sel, f"{c}, label") + " > 0",
                    legend(c, "label"),
                )
            ],
            unit="ops",
            w=8,
            description="Series that already carried a label observe sets; theirs moved to exported_<label>.",
        ),
        timeseries(
            "Dropped by relabel_configs",
            [prom(_rate("observe_relabel_dropped_series_total", sel, c), legend(c))],
            unit="ops",
            w=8,
        ),
        timeseries(
            "Unparseable exposition lines",
            [prom(_rate("observe_exposition_errors_total", sel, c), legend(c))],
            unit="ops",
            w=8,
            thresholds=steps((None, OK), (0.001, WARN)),
        ),
    )

    return dashboard(
        "collector",
        "Collector",
        description="The observe collector: per-cluster pulls, throughput, durable queue, sends, drops "
        "and label collisions.",
        tags=["collector"],
        variables=[
            *datasource_variables(prometheus_uid, loki_uid),
            custom_variable(
                "cluster", "Cluster", (*s.clusters, s.self_cluster), multi=True, include_all=True
            ),
        ],
        grid=grid,
    )
