"""Fleet overview: every cluster at one glance, each row and series linking to the cluster's detail."""

from __future__ import annotations

from typing import Any

from observe.generate.dashboards import signals as sig
from observe.generate.dashboards.board import (
    Grid,
    custom_variable,
    dashboard,
    datasource_variable,
)
from observe.generate.dashboards.panels import (
    ANY_IS_BAD,
    BAD,
    HIGH_IS_BAD,
    LOKI_VAR,
    OK,
    PROM_VAR,
    WARN,
    Column,
    Link,
    dashboard_link_url,
    key_table,
    prom,
    stat,
    steps,
    timeseries,
)
from observe.generate.dashboards.signals import Scope

REPORTING_MAP = ((0, "Not reporting", BAD), (1, "Reporting", OK))


def detail_link(s: Scope, value: str) -> Link:
    return Link("Cluster detail", dashboard_link_url("cluster", cluster=value))


def build(s: Scope, *, prometheus_uid: str, loki_uid: str) -> dict[str, Any]:
    c = s.label
    series_link = detail_link(s, "${__field.labels." + c + "}")
    fresh, commit, errors = sig.freshness_steps(s), sig.commitment_steps(s), sig.error_ratio_steps(s)
    grid = Grid()

    grid.row("Fleet at a glance").add(
        stat("Clusters reporting", [prom(f"sum({sig.reporting(s)})")], unit="none", w=4),
        stat(
            "Clusters not reporting",
            [prom(f"count(({sig.reporting(s)}) == 0) or vector(0)")],
            unit="none",
            w=4,
            thresholds=ANY_IS_BAD,
            description="Configured clusters whose Prometheus the collector could not pull on its last "
            "cycle.",
        ),
        stat(
            "Stale clusters",
            [prom(f"count(({sig.freshness(s)}) > {3 * s.interval_s:g}) or vector(0)")],
            unit="none",
            w=4,
            thresholds=ANY_IS_BAD,
            description="Clusters whose newest data is older than three pull cycles.",
        ),
        stat(
            "Critical alerts firing",
            [prom(f'sum(ALERTS{{{s.sel}, alertstate="firing", severity="critical"}}) or vector(0)')],
            unit="none",
            w=4,
            thresholds=ANY_IS_BAD,
        ),
        stat(
            "Nodes not ready",
            [prom(f"sum({sig.nodes_not_ready(s, c)}) or vector(0)")],
            unit="none",
            w=4,
            thresholds=ANY_IS_BAD,
        ),
        stat(
            "Pods crash-looping",
            [prom(f"sum({sig.crash_looping(s, c)}) or vector(0)")],
            unit="none",
            w=4,
            thresholds=ANY_IS_BAD,
        ),
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
            key_link=detail_link(s, "${__value.raw}"),
        )
    )

    grid.row("Alerts and control plane").add(
        timeseries(
            "Firing alerts by cluster and severity",
            [
                prom(
                    f'sum by ({c}, severity) (ALERTS{{{s.sel}, alertstate="firing"}})',
                    f"{{{{{c}}}}} {{{{severity}}}}",
                )
            ],
            unit="none",
            w=8,
            bars=True,
            stack=True,
            links=[series_link],
        ),
        timeseries(
            "API server targets up",
            [prom(sig.apiserver_up(s, c), f"{{{{{c}}}}}")],
            unit="percentunit",
            w=8,
            min_val=0,
            max_val=1,
            links=[series_link],
        ),
        timeseries(
            "API server 5xx ratio (5m)",
            [prom(sig.apiserver_5xx_ratio_recorded(s), f"{{{{{c}}}}}")],
            unit="percentunit",
            w=8,
            thresholds=errors,
            min_val=0,
            links=[series_link],
        ),
    )

    grid.row("Workloads").add(
        timeseries(
            "Nodes not ready",
            [prom(sig.nodes_not_ready(s, c), f"{{{{{c}}}}}")],
            unit="none",
            w=8,
            links=[series_link],
        ),
        timeseries(
            "Pods not running",
            [prom(sig.pods_not_running(s, c), f"{{{{{c}}}}}")],
            unit="none",
            w=8,
            links=[series_link],
        ),
        timeseries(
            "Containers crash-looping",
            [prom(s.or_zero(sig.crash_looping(s, c)), f"{{{{{c}}}}}")],
            unit="none",
            w=8,
            links=[series_link],
        ),
    )

    grid.row("Capacity").add(
        timeseries(
            "CPU utilisation",
            [prom(sig.cpu_utilisation(s, c), f"{{{{{c}}}}}")],
            unit="percentunit",
            w=6,
            thresholds=HIGH_IS_BAD,
            min_val=0,
            max_val=1,
            links=[series_link],
        ),
        timeseries(
            "Memory utilisation",
            [prom(sig.memory_utilisation(s, c), f"{{{{{c}}}}}")],
            unit="percentunit",
            w=6,
            thresholds=HIGH_IS_BAD,
            min_val=0,
            max_val=1,
            links=[series_link],
        ),
        timeseries(
            "CPU requests / allocatable",
            [prom(sig.requests_commitment_recorded(s, "cpu"), f"{{{{{c}}}}}")],
            unit="percentunit",
            w=6,
            thresholds=commit,
            min_val=0,
            links=[series_link],
        ),
        timeseries(
            "Memory requests / allocatable",
            [prom(sig.requests_commitment_recorded(s, "memory"), f"{{{{{c}}}}}")],
            unit="percentunit",
            w=6,
            thresholds=commit,
            min_val=0,
            links=[series_link],
        ),
    )

    grid.row("Logs").add(
        timeseries(
            "Log volume",
            [prom(sig.log_rate_recorded(s, errors=False), f"{{{{{c}}}}}")],
            unit="cps",
            w=12,
            stack=True,
            description="Log lines per second per cluster in the central Loki (5m rate, recorded by the Loki "
            "ruler: cheap for the whole fleet). The Logs dashboard queries Loki itself.",
            links=[series_link],
        ),
        timeseries(
            "Error log rate",
            [prom(sig.log_rate_recorded(s, errors=True), f"{{{{{c}}}}}")],
            unit="cps",
            w=12,
            description=f"Lines matching {sig.ERROR_LINES} per second per cluster (5m rate, recorded by the "
            "Loki ruler).",
            links=[series_link],
        ),
    )

    return dashboard(
        "fleet",
        "Fleet overview",
        description="Every cluster at one glance: reporting, freshness, alerts, control plane, workloads, "
        "capacity, logs.",
        tags=["fleet"],
        variables=[
            datasource_variable(PROM_VAR, "prometheus", "Metrics", prometheus_uid),
            datasource_variable(LOKI_VAR, "loki", "Logs", loki_uid),
            custom_variable("cluster", "Cluster", s.clusters, multi=True, include_all=True),
        ],
        grid=grid,
    )
