"""The fleet signals as PromQL, shared by the fleet overview (one row per cluster) and the cluster detail.

Metric names are the upstream exporters' own, so the dashboards work on any cluster that runs them:
kube-state-metrics (https://github.com/kubernetes/kube-state-metrics/tree/main/docs/metrics),
node-exporter, the API server's `apiserver_request_total`, Prometheus' `ALERTS`, and our collector's
self-metrics (observe/telemetry/events.py), whose `cluster` label is always the *monitored* cluster (they
arrive centrally with `self_cluster` too, whatever `cluster_label` is).

Where the fleet overview would evaluate a heavy expression for every cluster at once, it reads the
recording rules `observe rules` generates (observe/generate/rules/recording.py) instead; thresholds
come from the same `alerts:` config as the alerts, so a red cell and a firing alert agree.

Every signal is grouped `by` the caller's labels (the cluster label for the fleet, node or namespace
for the detail), and selects `$cluster` with a regex match so one text serves single and multi-select.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from observe.config import AlertsConfig, Config
from observe.generate.dashboards.panels import BAD, OK, WARN, Steps, steps
from observe.generate.rules import recording as R
from observe.generate.rules.loki import ERROR_LINES as LOKI_ERROR_LINES

INVENTORY: Final = R.CLUSTER_EXPECTED  # one series per configured cluster
SELF_LABEL: Final = "cluster"  # the label name observe/telemetry/events.py gives the monitored cluster


@dataclass(frozen=True)
class Scope:
    """What the queries need to know about the fleet, taken from the config."""

    label: str  # the cluster label the collector stamps (config `cluster_label`)
    clusters: tuple[str, ...]
    self_cluster: str
    interval_s: float
    loki_clusters: tuple[str, ...]
    alerts: AlertsConfig

    @classmethod
    def of(cls, cfg: Config) -> Scope:
        return cls(
            label=cfg.cluster_label,
            clusters=tuple(c.name for c in cfg.clusters),
            self_cluster=cfg.self_cluster,
            interval_s=cfg.interval,
            loki_clusters=tuple(c.name for c in cfg.clusters if c.loki is not None),
            alerts=cfg.alerts,
        )

    @property
    def sel(self) -> str:
        """The matcher for the `$cluster` variable on fleet data."""
        return f'{self.label}=~"$cluster"'

    @property
    def self_sel(self) -> str:
        """The matcher for `$cluster` on the collector's self-metrics."""
        return f'{SELF_LABEL}=~"$cluster"'

    def self_metric(self, expr: str) -> str:
        """Self-metrics name the monitored cluster `cluster`; copy it to the fleet's label if that differs."""
        if self.label == SELF_LABEL:
            return expr
        return f'label_replace({expr}, "{self.label}", "$1", "{SELF_LABEL}", "(.*)")'

    def inventory(self) -> str:
        return f"group by ({self.label}) ({INVENTORY}{{{self.sel}}})"

    def or_zero(self, expr: str) -> str:
        """`expr`, or 0 for every configured cluster it has no series for (ksm omits zero-valued reasons)."""
        return f"({expr}) or on ({self.label}) (0 * {self.inventory()})"


def reporting(s: Scope) -> str:
    """1 if the collector's last pull of the cluster's Prometheus worked, 0 if not or never tried."""
    up = s.self_metric(f"max by ({SELF_LABEL}) (observe_cluster_up{{{s.self_sel}}})")
    return s.or_zero(up)


def freshness(s: Scope) -> str:
    """Seconds since the collector last pulled the cluster's Prometheus successfully."""
    return s.self_metric(
        f"time() - max by ({SELF_LABEL}) "
        f'(observe_last_success_timestamp_seconds{{{s.self_sel}, source="prometheus"}})'
    )


def firing_alerts(s: Scope, severity: str, by: str) -> str:
    return f'sum by ({by}) (ALERTS{{{s.sel}, alertstate="firing", severity=~"{severity}"}})'


def apiserver_up(s: Scope, by: str) -> str:
    """Share of the API server scrape targets that answer (`alerts.apiserver_selector`, as the alerts)."""
    return f"avg by ({by}) (up{{{s.sel}, {s.alerts.apiserver_selector}}})"


def apiserver_5xx_ratio(s: Scope, by: str) -> str:
    sel = f"{s.sel}, {s.alerts.apiserver_selector}"
    errors = f'sum by ({by}) (rate(apiserver_request_total{{{sel}, code=~"5.."}}[$__rate_interval]))'
    total = f"sum by ({by}) (rate(apiserver_request_total{{{sel}}}[$__rate_interval]))"
    # `or 0 * total`: a cluster without a single 5xx still gets a row, at 0.
    return f"({errors} or 0 * {total}) / {total}"


def nodes_not_ready(s: Scope, by: str) -> str:
    return f'sum by ({by}) (kube_node_status_condition{{{s.sel}, condition="Ready", status!="true"}})'


def pods_not_running(s: Scope, by: str) -> str:
    # Succeeded pods (finished Jobs) are fine; Pending, Failed and Unknown are not.
    return f'sum by ({by}) (kube_pod_status_phase{{{s.sel}, phase=~"Pending|Failed|Unknown"}})'


def crash_looping(s: Scope, by: str) -> str:
    return f'sum by ({by}) (kube_pod_container_status_waiting_reason{{{s.sel}, reason="CrashLoopBackOff"}})'


def cpu_utilisation(s: Scope, by: str) -> str:
    return f'1 - avg by ({by}) (rate(node_cpu_seconds_total{{{s.sel}, mode="idle"}}[$__rate_interval]))'


def memory_utilisation(s: Scope, by: str) -> str:
    return (
        f"1 - sum by ({by}) (node_memory_MemAvailable_bytes{{{s.sel}}})"
        f" / sum by ({by}) (node_memory_MemTotal_bytes{{{s.sel}}})"
    )


def apiserver_5xx_ratio_recorded(s: Scope) -> str:
    """The fleet-wide view of the same ratio, from the 5m recording rule the burn-rate alerts use."""
    return f"max by ({s.label}) ({R.APISERVER_ERROR_RATIO['5m']}{{{s.sel}}})"


def requests_commitment(s: Scope, resource: str, by: str) -> str:
    """Requested / allocatable: above 1 the cluster cannot reschedule every pod after a node loss."""
    return (
        f'sum by ({by}) (kube_pod_container_resource_requests{{{s.sel}, resource="{resource}"}})'
        f' / sum by ({by}) (kube_node_status_allocatable{{{s.sel}, resource="{resource}"}})'
    )


def requests_commitment_recorded(s: Scope, resource: str) -> str:
    """Requested / allocatable per cluster from the capacity recording rules (Pending and Running pods)."""
    sel = f'{s.sel}, resource="{resource}"'
    return f"sum by ({s.label}) ({R.REQUESTS}{{{sel}}}) / sum by ({s.label}) ({R.ALLOCATABLE}{{{sel}}})"


def log_rate_recorded(s: Scope, *, errors: bool) -> str:
    """Log lines/s per cluster, recorded by the Loki ruler and remote-written to the central Prometheus."""
    name = R.CLUSTER_LOG_ERROR_LINES_RATE if errors else R.CLUSTER_LOG_LINES_RATE
    return f"sum by ({s.label}) ({name}{{{s.sel}}})"


# Thresholds shared by every dashboard, from the alerts' own settings.
def freshness_steps(s: Scope) -> Steps:
    """Warn after three missed pull cycles; red from `alerts.telemetry_delay` (the delay alert's bound)."""
    return steps((None, OK), (3 * s.interval_s, WARN), (max(s.alerts.telemetry_delay, 4 * s.interval_s), BAD))


def commitment_steps(s: Scope) -> Steps:
    """Orange from `alerts.requests_ratio` (the alert's bound), red when requests exceed allocatable."""
    return steps((None, OK), (s.alerts.requests_ratio, WARN), (1, BAD))


def error_ratio_steps(s: Scope) -> Steps:
    """Orange once the API server's error budget burns at all (1 - SLO), red at the 6x slow-burn rate."""
    budget = round(1 - s.alerts.apiserver_availability_slo, 6)
    return steps((None, OK), (budget, WARN), (round(6 * budget, 6), BAD))


# LogQL: streams carry the cluster label the collector stamped; Loki 3 adds `detected_level` on ingest.
# An error line is what the Loki ruler's recording rules and alerts count: a case-insensitive line match.
ERROR_LINES: Final = LOKI_ERROR_LINES


def log_selector(s: Scope) -> str:
    return "{" + s.sel + "}"
