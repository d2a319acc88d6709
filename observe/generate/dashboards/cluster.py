"""Cluster detail (`$cluster`): the fleet's signals for one cluster in depth, with its logs and a way back."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.models import dashboard as model

from observe.generate.dashboards import signals as sig
from observe.generate.dashboards.board import (
    Grid,
    custom_variable,
    dashboard,
    datasource_variables,
    query_variable,
    textbox_variable,
)
from observe.generate.dashboards.fleet import REPORTING_MAP
from observe.generate.dashboards.panels import (
    ANY_IS_BAD,
    BAD,
    HIGH_IS_BAD,
    OK,
    WARN,
    ColumnStyle,
    Panel,
    explore_url,
    logql,
    logs,
    organize,
    prom,
    stat,
    steps,
    table,
    timeseries,
    value_text,
)
from observe.generate.dashboards.signals import Scope


def _pod_list(title: str, expr: str, *, last_column: str) -> Panel:
    """One row per series of `expr` (an instant query > 0), its labels as columns, the value hidden."""
    return table(
        title,
        [prom(expr, instant=True, table=True)],
        w=12,
        transformations=[organize(hide=("Time", "Value"))],
        styles={last_column: ColumnStyle("string", cell="auto")},
        sort_by="namespace",
    )


def _explore_link(title: str, expr: str, *, loki: bool) -> sdk.DashboardLink:
    """A dashboard link opening Explore (in a new tab) on `expr`."""
    return (
        sdk.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(explore_url(expr, loki=loki))
        .icon("compass")
        .target_blank(True)
    )


def build(s: Scope, *, prometheus_uid: str, loki_uid: str) -> dict[str, Any]:
    c = s.label
    ns = 'namespace=~"$namespace"'
    grid = Grid()

    grid.row("Status").add(
        stat(
            "Reporting",
            [prom(sig.reporting(s))],
            unit="none",
            w=3,
            thresholds=steps((None, BAD), (1, OK)),
            mappings=value_text({v: (t, col) for v, t, col in REPORTING_MAP}),
        ),
        stat(
            "Data age", [prom(sig.freshness(s))], unit="s", w=3, thresholds=sig.freshness_steps(s), decimals=0
        ),
        stat(
            "Critical alerts",
            [prom(s.or_zero(sig.firing_alerts(s, "critical", c)))],
            unit="none",
            w=3,
            thresholds=ANY_IS_BAD,
        ),
        stat(
            "API targets up",
            [prom(sig.apiserver_up(s, c))],
            unit="percentunit",
            w=3,
            thresholds=steps((None, BAD), (0.99, WARN), (1, OK)),
        ),
        stat("Nodes not ready", [prom(sig.nodes_not_ready(s, c))], unit="none", w=3, thresholds=ANY_IS_BAD),
        stat(
            "Pods not running",
            [prom(sig.pods_not_running(s, c))],
            unit="none",
            w=3,
            thresholds=steps((None, OK), (1, WARN), (10, BAD)),
        ),
        stat(
            "Crash-looping",
            [prom(s.or_zero(sig.crash_looping(s, c)))],
            unit="none",
            w=3,
            thresholds=ANY_IS_BAD,
        ),
        stat(
            "CPU requested",
            [prom(sig.requests_commitment(s, "cpu", c))],
            unit="percentunit",
            w=3,
            thresholds=sig.commitment_steps(s),
        ),
    )

    grid.row("Alerts").add(
        table(
            "Firing alerts",
            [
                prom(
                    f'sum by (alertname, severity, namespace) (ALERTS{{{s.sel}, alertstate="firing"}})',
                    instant=True,
                    table=True,
                )
            ],
            w=24,
            h=7,
            transformations=[organize(rename={"Value": "Series"})],
            styles={"Series": ColumnStyle("none", cell="auto")},
            sort_by="severity",
        )
    )

    grid.row("Control plane").add(
        timeseries(
            "API requests by code",
            [
                prom(
                    f"sum by (code) (rate(apiserver_request_total{{{s.sel}, {s.alerts.apiserver_selector}}}"
                    "[$__rate_interval]))",
                    "{{code}}",
                )
            ],
            unit="reqps",
            w=12,
            stack=True,
        ),
        timeseries(
            "API 5xx ratio by verb",
            [prom(sig.apiserver_5xx_ratio(s, "verb"), "{{verb}}")],
            unit="percentunit",
            w=12,
            thresholds=sig.error_ratio_steps(s),
            min_val=0,
        ),
    )

    grid.row("Nodes").add(
        timeseries(
            "CPU utilisation by node",
            [prom(sig.cpu_utilisation(s, "instance"), "{{instance}}")],
            unit="percentunit",
            w=12,
            thresholds=HIGH_IS_BAD,
            min_val=0,
            max_val=1,
        ),
        timeseries(
            "Memory utilisation by node",
            [prom(sig.memory_utilisation(s, "instance"), "{{instance}}")],
            unit="percentunit",
            w=12,
            thresholds=HIGH_IS_BAD,
            min_val=0,
            max_val=1,
        ),
        timeseries(
            "Nodes by condition",
            [
                prom(
                    f'sum by (condition) (kube_node_status_condition{{{s.sel}, status="true"}})',
                    "{{condition}}",
                )
            ],
            unit="none",
            w=12,
        ),
        timeseries(
            "Requests / allocatable",
            [
                prom(sig.requests_commitment(s, "cpu", c), "CPU"),
                prom(sig.requests_commitment(s, "memory", c), "memory"),
            ],
            unit="percentunit",
            w=12,
            thresholds=sig.commitment_steps(s),
            min_val=0,
        ),
    )

    grid.row("Workloads ($namespace)").add(
        timeseries(
            "Pods by phase",
            [prom(f"sum by (phase) (kube_pod_status_phase{{{s.sel}, {ns}}})", "{{phase}}")],
            unit="none",
            w=12,
            stack=True,
        ),
        timeseries(
            "Container restarts",
            [
                prom(
                    f"topk(10, sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total"
                    f"{{{s.sel}, {ns}}}[$__rate_interval])))",
                    "{{namespace}}/{{pod}}",
                )
            ],
            unit="none",
            w=12,
            bars=True,
        ),
        _pod_list(
            "Pods not running",
            f"sum by (namespace, pod, phase) (kube_pod_status_phase{{{s.sel}, {ns}, "
            f'phase=~"Pending|Failed|Unknown"}}) > 0',
            last_column="phase",
        ),
        _pod_list(
            "Containers crash-looping",
            "sum by (namespace, pod, container) "
            f"(kube_pod_container_status_waiting_reason{{{s.sel}, {ns}, "
            f'reason="CrashLoopBackOff"}}) > 0',
            last_column="container",
        ),
    )

    log_query = f'{{{s.sel}, {ns}}} |~ "(?i)$search"'
    grid.row("Logs").add(
        timeseries(
            "Log volume by level",
            [logql(f"sum by (detected_level) (rate({log_query} [$__auto]))", "{{detected_level}}")],
            unit="cps",
            w=24,
            h=6,
            stack=True,
        ),
        logs(
            "Logs",
            logql(log_query),
            h=14,
            description="The cluster's logs in the central Loki, filtered by namespace and the search text.",
        ),
    )

    return dashboard(
        "cluster",
        "Cluster detail",
        description="One cluster in depth: status, alerts, control plane, nodes, workloads and logs.",
        tags=["fleet", "cluster"],
        variables=[
            *datasource_variables(prometheus_uid, loki_uid),
            custom_variable("cluster", "Cluster", s.clusters, multi=False, include_all=False),
            query_variable(
                "namespace", "Namespace", f"label_values(kube_namespace_status_phase{{{s.sel}}}, namespace)"
            ),
            textbox_variable(
                "search", "Search logs", "A regular expression the log lines must match (case-insensitive)."
            ),
        ],
        grid=grid,
        extra_links=[
            _explore_link("Explore metrics", f'up{{{c}="$cluster"}}', loki=False),
            _explore_link("Explore logs", f'{{{c}="$cluster"}}', loki=True),
        ],
    )
