"""Failover readiness: could the fleet lose one cluster, and are the pieces a failover relies on healthy?

Sources: kube-state-metrics (capacity), Istio's standard metrics (`istio_requests_total` with
`source_cluster` / `destination_cluster`, https://istio.io/latest/docs/reference/config/metrics/),
k8gb (`k8gb_gslb_*`, https://www.k8gb.io/docs/metrics.html), Velero
(`velero_backup_last_successful_timestamp`) and Argo CD (`argocd_app_info`).
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as model

from observe.generate.dashboards import signals as sig
from observe.generate.dashboards.board import (
    Grid,
    custom_variable,
    dashboard,
    datasource_variables,
)
from observe.generate.dashboards.fleet import cell_detail_link
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
    table,
    timeseries,
)
from observe.generate.dashboards.signals import Scope
from observe.generate.rules import recording as R

FIVE_XX = ', response_code=~"5.."'


def n_minus_1_coverage(s: Scope, resource: str) -> str:
    """Per cluster X: what X's failover peers have free / what X requests (the N-1 alert's own terms).

    From the capacity recording rules: `fleet:failover_peers_allocatable_free:sum` is, for X, the free
    allocatable of the other clusters in its pool (`alerts.failover_pool_labels`). At 1 the peers can
    just absorb X's workloads; the alert wants `alerts.failover_headroom` times that.
    """
    sel = f'{s.sel}, resource="{resource}"'
    return (
        f"sum by ({s.label}) ({R.FAILOVER_PEERS_FREE}{{{sel}}}) / sum by ({s.label}) ({R.REQUESTS}{{{sel}}})"
    )


def _istio(s: Scope, extra: str = "") -> str:
    # reporter="source": every request counted once, by the calling side's proxy.
    return f'rate(istio_requests_total{{{s.sel}, reporter="source"{extra}}}[$__rate_interval])'


def _ratio(s: Scope, num: str, den: str) -> str:
    return f"sum by ({s.label}) ({num}{{{s.sel}}}) / sum by ({s.label}) ({den}{{{s.sel}}})"


def build(s: Scope, *, prometheus_uid: str, loki_uid: str) -> dict[str, Any]:
    c = s.label
    a = s.alerts
    coverage = steps((None, BAD), (a.failover_headroom, WARN), (round(1.2 * a.failover_headroom, 6), OK))
    commit = sig.commitment_steps(s)
    grid = Grid()

    grid.row("N-1 capacity").add(
        key_table(
            "If this cluster failed",
            c,
            [
                Column(
                    "Peers' free CPU / its requests", n_minus_1_coverage(s, "cpu"), "percentunit", coverage
                ),
                Column(
                    "Peers' free memory / its requests",
                    n_minus_1_coverage(s, "memory"),
                    "percentunit",
                    coverage,
                ),
                Column(
                    "CPU requested here", sig.requests_commitment_recorded(s, "cpu"), "percentunit", commit
                ),
                Column(
                    "Memory requested here",
                    sig.requests_commitment_recorded(s, "memory"),
                    "percentunit",
                    commit,
                ),
            ],
            h=4 + len(s.clusters),
            description="Could the cluster's failover peers (same "
            + (", ".join(a.failover_pool_labels) or "fleet")
            + ") schedule its workloads? Below 100% they cannot. Clusters without a peer have no row.",
            key_link=cell_detail_link(s),
        ),
        timeseries(
            "CPU: peers' free capacity / the cluster's requests",
            [prom(n_minus_1_coverage(s, "cpu"), "without " + legend(c))],
            unit="percentunit",
            w=12,
            thresholds=coverage,
            min_val=0,
        ),
        timeseries(
            "Memory: peers' free capacity / the cluster's requests",
            [prom(n_minus_1_coverage(s, "memory"), "without " + legend(c))],
            unit="percentunit",
            w=12,
            thresholds=coverage,
            min_val=0,
        ),
    )

    grid.row("Cross-cluster traffic (Istio)").add(
        table(
            "Traffic matrix (requests/s, source → destination)",
            [prom(f"sum by (source_cluster, destination_cluster) ({_istio(s)})", instant=True, table=True)],
            w=12,
            h=8,
            unit="reqps",
            transformations=[
                model.DataTransformerConfig(
                    id_val="groupingToMatrix",
                    options={
                        "columnField": "destination_cluster",
                        "rowField": "source_cluster",
                        "valueField": "Value",
                    },
                )
            ],
        ),
        timeseries(
            "Share of requests leaving the cluster (5m)",
            [prom(_ratio(s, R.ISTIO_CROSS_CLUSTER_RATE, R.ISTIO_REQUESTS_RATE), legend(c))],
            unit="percentunit",
            w=12,
            min_val=0,
            max_val=1,
            thresholds=steps((None, OK), (a.cross_cluster_traffic_share, WARN)),
            description="From the traffic recording rules: requests whose destination_cluster is another "
            "cluster, over all requests the cluster's proxies sent.",
        ),
        timeseries(
            "Cross-cluster error ratio by source cluster (5m)",
            [prom(_ratio(s, R.ISTIO_CROSS_CLUSTER_ERRORS_RATE, R.ISTIO_CROSS_CLUSTER_RATE), legend(c))],
            unit="percentunit",
            w=8,
            thresholds=steps((None, OK), (a.cross_cluster_error_ratio, BAD)),
            min_val=0,
        ),
        timeseries(
            "Error ratio by destination cluster",
            [
                prom(
                    f"sum by (destination_cluster) ({_istio(s, FIVE_XX)})"
                    f" / sum by (destination_cluster) ({_istio(s)})",
                    "{{destination_cluster}}",
                )
            ],
            unit="percentunit",
            w=8,
            thresholds=steps((None, OK), (a.cross_cluster_error_ratio, BAD)),
            min_val=0,
        ),
        timeseries(
            "Requests by destination cluster",
            [prom(f"sum by (destination_cluster) ({_istio(s)})", "{{destination_cluster}}")],
            unit="reqps",
            w=8,
            stack=True,
        ),
    )

    grid.row("Global DNS (k8gb), backups (Velero), GitOps (Argo CD)").add(
        timeseries(
            "GSLB healthy records",
            [prom(f"sum by ({c}, name) (k8gb_gslb_healthy_records{{{s.sel}}})", legend(c, "name"))],
            unit="none",
            w=8,
            description="DNS records k8gb serves as healthy per GSLB; empty where k8gb is not installed.",
        ),
        timeseries(
            "GSLB errors",
            [
                prom(
                    f"sum by ({c}) (rate(k8gb_gslb_errors_total{{{s.sel}}}[$__rate_interval]))",
                    legend(c),
                )
            ],
            unit="ops",
            w=8,
            thresholds=steps((None, OK), (0.001, BAD)),
        ),
        timeseries(
            "Argo CD apps out of sync or unhealthy",
            [
                prom(
                    f'sum by ({c}) (argocd_app_info{{{s.sel}, sync_status!="Synced"}})',
                    legend(c) + " out of sync",
                ),
                prom(
                    f'sum by ({c}) (argocd_app_info{{{s.sel}, health_status!="Healthy"}})',
                    legend(c) + " unhealthy",
                ),
            ],
            unit="none",
            w=8,
            thresholds=ANY_IS_BAD,
        ),
        key_table(
            "Backups and GitOps per cluster",
            c,
            [
                Column(
                    "Newest Velero backup age",
                    f"time() - max by ({c}) (velero_backup_last_successful_timestamp{{{s.sel}}})",
                    "s",
                    steps((None, OK), (a.backup_max_age, WARN), (2 * a.backup_max_age, BAD)),
                    decimals=0,
                ),
                Column(
                    "Failed backups in range",
                    s.or_zero(f"sum by ({c}) (increase(velero_backup_failure_total{{{s.sel}}}[$__range]))"),
                    "none",
                    ANY_IS_BAD,
                    decimals=0,
                ),
                Column(
                    "Apps out of sync",
                    s.or_zero(f'sum by ({c}) (argocd_app_info{{{s.sel}, sync_status!="Synced"}})'),
                    "none",
                    steps((None, OK), (1, WARN)),
                ),
                Column(
                    "Apps unhealthy",
                    s.or_zero(f'sum by ({c}) (argocd_app_info{{{s.sel}, health_status!="Healthy"}})'),
                    "none",
                    ANY_IS_BAD,
                ),
            ],
            h=4 + len(s.clusters),
            key_link=cell_detail_link(s),
        ),
    )

    return dashboard(
        "failover",
        "Failover readiness",
        description="N-1 capacity, cross-cluster traffic, global DNS, backup freshness and GitOps drift "
        "per cluster.",
        tags=["fleet", "failover"],
        variables=[
            *datasource_variables(prometheus_uid, loki_uid),
            custom_variable("cluster", "Cluster", s.clusters, multi=True, include_all=True),
        ],
        grid=grid,
        refresh="5m",
        time_from="now-24h",
    )
