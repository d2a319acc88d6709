"""Fleet overview: every cluster at one glance, each row and series linking to the cluster's detail."""

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
    HIGH_IS_BAD,
    OK,
    WARN,
    Column,
    Link,
    Panel,
    dashboard_link_url,
    key_table,
    legend,
    prom,
    stat,
    steps,
    timeseries,
)
from observe.generate.dashboards.signals import Scope

REPORTING_MAP = ((0, "Not reporting", BAD), (1, "Reporting", OK))


def series_detail_link(s: Scope) -> Link:
    """On a series with the cluster label: opens that cluster's detail."""
    return Link("Cluster detail", dashboard_link_url("cluster", cluster="${__field.labels." + s.label + "}"))


def cell_detail_link(s: Scope) -> Link:
    """On a table's cluster column (`key_table(key_link=...)`): opens the row's cluster's detail."""
    return Link("Cluster detail", dashboard_link_url("cluster", cluster="${__value.raw}"))


def per_cluster(s: Scope, title: str, expr: str, **options: Any) -> Panel:
    """A time series per cluster (`expr` keeps the cluster label), each linking to its cluster's detail.

    `options` are `timeseries`' own (unit, w, thresholds, ...).
    """
    return timeseries(title, [prom(expr, legend(s.label))], links=[series_detail_link(s)], **options)


def _problem_count(title: str, expr: str, *, description: str = "") -> Panel:
    """A fleet-wide count of broken things: green at 0, red from 1; `or vector(0)` shows 0, not "No
    data", when there are none."""
    return stat(
        title,
        [prom(f"{expr} or vector(0)")],
        unit="none",
        w=4,
        thresholds=ANY_IS_BAD,
        description=description,
    )


def build(s: Scope, *, prometheus_uid: str, loki_uid: str) -> dict[str, Any]:
    c = s.label
    fresh, commit, errors = sig.freshness_steps(s), sig.commitment_steps(s), sig.error_ratio_steps(s)
    grid = Grid()

    grid.row("Fleet at a glance").add(
        stat("Clusters reporting", [prom(f"sum({sig.reporting(s)})")], unit="none", w=4),
        _problem_count(
            "Clusters not reporting",
            f"count(({sig.reporting(s)}) == 0)",
            description="Configured clusters whose Prometheus the collector could not pull on its last "
            "cycle.",
        ),
        _problem_count(
            "Stale clusters",
            f"count(({sig.freshness(s)}) > {3 * s.interval_s:g})",
            description="Clusters whose newest data is older than three pull cycles.",
        ),
        _problem_count(
            "Critical alerts firing", f'sum(ALERTS{{{s.sel}, alertstate="firing", severity="critical"}})'
        ),
        _problem_count("Nodes not ready", f"sum({sig.nodes_not_ready(s, c)})"),
        _problem_count("Pods crash-looping", f"sum({sig.crash_looping(s, c)})"),
    )

    grid.row("Clusters").add(
        key_table(
            "Every cluster",
            c,
            [
                Column("Reporting", sig.reporting(s), "none", steps((None, BAD), (1, OK)), REPORTING_MAP),
                Column("Data age", sig.freshness(s), "s", fresh, decimals=0),
                Column("Critical", s.or_zero(sig.firing_alerts(s, "critical", c)), "none", ANY_IS_BAD),
                Column(
                    "Warnings",
                    s.or_zero(sig.firing_alerts(s, "warning", c)),
                    "none",
                    steps((None, OK), (1, WARN)),
                ),
                Column(
                    "API up", sig.apiserver_up(s, c), "percentunit", steps((None, BAD), (0.99, WARN), (1, OK))
                ),
                Column("API 5xx (5m)", sig.apiserver_5xx_ratio_recorded(s), "percentunit", errors),
                Column("Nodes not ready", sig.nodes_not_ready(s, c), "none", ANY_IS_BAD),
                Column(
                    "Pods not running",
                    sig.pods_not_running(s, c),
                    "none",
                    steps((None, OK), (1, WARN), (10, BAD)),
                ),
                Column("Crash-looping", s.or_zero(sig.crash_looping(s, c)), "none", ANY_IS_BAD),
                Column("CPU used", sig.cpu_utilisation(s, c), "percentunit", HIGH_IS_BAD),
                Column("Memory used", sig.memory_utilisation(s, c), "percentunit", HIGH_IS_BAD),
                Column("CPU requested", sig.requests_commitment_recorded(s, "cpu"), "percentunit", commit),
                Column(
                    "Memory requested", sig.requests_commitment_recorded(s, "memory"), "percentunit", commit
                ),
            ],
            h=4 + len(s.clusters),
            description="One row per configured cluster; click a cluster name for its detail.",
            key_link=cell_detail_link(s),
        )
    )

    grid.row("Alerts and control plane").add(
        timeseries(
            "Firing alerts by cluster and severity",
            [
                prom(
                    f'sum by ({c}, severity) (ALERTS{{{s.sel}, alertstate="firing"}})',
                    legend(c, "severity"),
                )
            ],
            unit="none",
            w=8,
            bars=True,
            stack=True,
            links=[series_detail_link(s)],
        ),
        per_cluster(
            s, "API server targets up", sig.apiserver_up(s, c), unit="percentunit", w=8, min_val=0, max_val=1
        ),
        per_cluster(
            s,
            "API server 5xx ratio (5m)",
            sig.apiserver_5xx_ratio_recorded(s),
            unit="percentunit",
            w=8,
            thresholds=errors,
            min_val=0,
        ),
    )

    grid.row("Workloads").add(
        per_cluster(s, "Nodes not ready", sig.nodes_not_ready(s, c), unit="none", w=8),
        per_cluster(s, "Pods not running", sig.pods_not_running(s, c), unit="none", w=8),
        per_cluster(s, "Containers crash-looping", s.or_zero(sig.crash_looping(s, c)), unit="none", w=8),
    )

    grid.row("Capacity").add(
        per_cluster(
            s,
            "CPU utilisation",
            sig.cpu_utilisation(s, c),
            unit="percentunit",
            w=6,
            thresholds=HIGH_IS_BAD,
            min_val=0,
            max_val=1,
        ),
        per_cluster(
            s,
            "Memory utilisation",
            sig.memory_utilisation(s, c),
            unit="percentunit",
            w=6,
            thresholds=HIGH_IS_BAD,
            min_val=0,
            max_val=1,
        ),
        per_cluster(
            s,
            "CPU requests / allocatable",
            sig.requests_commitment_recorded(s, "cpu"),
            unit="percentunit",
            w=6,
            thresholds=commit,
            min_val=0,
        ),
        per_cluster(
            s,
            "Memory requests / allocatable",
            sig.requests_commitment_recorded(s, "memory"),
            unit="percentunit",
            w=6,
            thresholds=commit,
            min_val=0,
        ),
    )

    grid.row("Logs").add(
        per_cluster(
            s,
            "Log volume",
            sig.log_rate_recorded(s, errors=False),
            unit="cps",
            w=12,
            stack=True,
            description="Log lines per second per cluster in the central Loki (5m rate, recorded by the Loki "
            "ruler: cheap for the whole fleet). The Logs dashboard queries Loki itself.",
        ),
        per_cluster(
            s,
            "Error log rate",
            sig.log_rate_recorded(s, errors=True),
            unit="cps",
            w=12,
            description=f"Lines matching {sig.ERROR_LINES} per second per cluster (5m rate, recorded by the "
            "Loki ruler).",
        ),
    )

    return dashboard(
        "fleet",
        "Fleet overview",
        description="Every cluster at one glance: reporting, freshness, alerts, control plane, workloads, "
        "capacity, logs.",
        tags=["fleet"],
        variables=[
            *datasource_variables(prometheus_uid, loki_uid),
            custom_variable("cluster", "Cluster", s.clusters, multi=True, include_all=True),
        ],
        grid=grid,
    )
