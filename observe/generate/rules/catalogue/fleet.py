"""Inventory and presence: which clusters exist, and is each one's telemetry arriving?

Series: the inventory is generated; presence is the cluster's own `up` (federated); the collector's
`observe_cluster_up` and `observe_last_success_timestamp_seconds` (observe/telemetry/events.py).
"""

from __future__ import annotations

from observe.generate.rules import recording as R
from observe.generate.rules.catalogue.base import Fleet
from observe.generate.rules.catalogue.cases import (
    DIES_AT,
    DYING,
    LOOKBACK,
    Case,
    CaseBuilder,
    Check,
    Ctx,
    clock,
    gauge_cases,
    sel,
)
from observe.generate.rules.model import Alert, Group, Record, num
from observe.units import format_duration

# -- inventory ----------------------------------------------------------------------------------------


def inventory(f: Fleet) -> Group:
    rules: list[Record] = []
    for name, clusters in (
        (R.CLUSTER_EXPECTED, f.cfg.clusters),
        (R.CLUSTER_METRICS_EXPECTED, f.metrics_clusters),
        (R.CLUSTER_LOGS_EXPECTED, f.logs_clusters),
    ):
        for c in clusters:
            labels = {**c.labels, "cluster": c.name, "self_cluster": f.cfg.self_cluster}
            rules.append(Record(name, "vector(1)", labels))
    return Group("fleet-inventory", tuple(rules))


# -- presence: is each cluster's telemetry arriving? ---------------------------------------------------


def presence(f: Fleet) -> Group:
    a = f.cfg.alerts
    rules: list[Alert] = [
        Alert(
            "FleetClusterTelemetryMissing",
            f"{R.CLUSTER_METRICS_EXPECTED} unless on (cluster) {a.presence_metric}",
            "critical",
            "cluster",
            "No telemetry from cluster {{ $labels.cluster }}",
            "The central store holds no `"
            + a.presence_metric
            + "` series from cluster {{ $labels.cluster }}: the cluster, its Prometheus, or the path from it "
            "to the centre is down. Every other alert of this cluster is muted while this fires.",
            "cluster",
            for_=a.cluster_missing_for,
            muted_by_collector_down=True,
        ),
        Alert(
            "FleetClusterUnreachable",
            f"(observe_cluster_up == 0) and on (cluster) {R.CLUSTER_METRICS_EXPECTED}",
            "critical",
            "cluster",
            "The collector cannot reach cluster {{ $labels.cluster }}",
            "Collector {{ $labels.self_cluster }} reports every pull of the Prometheus of cluster "
            "{{ $labels.cluster }} failing (`observe_pull_failures_total` says why). Every other alert of "
            "this cluster is muted while this fires.",
            "cluster",
            for_=a.cluster_unreachable_for,
        ),
        Alert(
            "FleetClusterTelemetryDelayed",
            f"time() - observe_last_success_timestamp_seconds > {num(a.telemetry_delay)}",
            "warning",
            "platform",
            "Telemetry of cluster {{ $labels.cluster }} ({{ $labels.source }}) is late",
            "The last successful pull of {{ $labels.source }} in cluster {{ $labels.cluster }} is older than "
            + format_duration(a.telemetry_delay)
            + ": dashboards and alerts of this cluster are looking at old data.",
            "collector",
            for_=a.telemetry_delayed_for,
        ),
    ]
    if f.logs_clusters:
        rules.append(
            Alert(
                "FleetClusterLogsMissing",
                f"{R.CLUSTER_LOGS_EXPECTED} unless on (cluster) ({R.CLUSTER_LOG_LINES_RATE} > 0)",
                "warning",
                "platform",
                "No logs from cluster {{ $labels.cluster }}",
                "The central Loki has received no log line from cluster {{ $labels.cluster }} for "
                + format_duration(a.logs_missing_for)
                + " (per the Loki ruler's `"
                + R.CLUSTER_LOG_LINES_RATE
                + "`).",
                "logs",
                for_=a.logs_missing_for,
                muted_by_collector_down=True,
            )
        )
    return Group("fleet-presence", tuple(rules))


# -- promtool cases ------------------------------------------------------------------------------------


def _missing(c: Ctx) -> list[Case]:
    m = c.a.cluster_missing_for
    metric = c.a.presence_metric
    fire_death = c.after_death(m)
    n = c.n(fire_death + 120)
    others = [(sel(metric, {"cluster": o, "job": "prometheus"}), f"1x{n}") for o in c.others]
    tgt = sel(metric, {"cluster": c.target, "job": "prometheus"})
    fires = (c.inventory(c.target) | {"severity": "critical"},)
    alert = "FleetClusterTelemetryMissing"
    fire_stale = c.after_death(m, stale=True)
    return [
        Case(
            (*others, (tgt, DYING)),
            (
                Check(DIES_AT + LOOKBACK + m - c.ei, alert, ()),
                Check(fire_death, alert, fires),
            ),
            "silent death: no staleness marker, so the series stays visible for the 5m lookback, then `for`",
        ),
        Case(
            (*others, (tgt, f"{DYING} stale")),
            (Check(fire_stale - c.ei, alert, ()), Check(fire_stale, alert, fires)),
            "clean stop: a staleness marker ends the series at once; only `for` delays the alert",
        ),
        Case((*others, (tgt, f"1x{n}")), (Check(fire_death, alert, ()),), "healthy"),
    ]


def _unreachable(c: Ctx) -> list[Case]:
    return gauge_cases(
        c, "FleetClusterUnreachable", "observe_cluster_up", {"self_cluster": c.me}, "0", "1", "critical",
        c.a.cluster_unreachable_for,
    )  # fmt: skip


def _delayed(c: Ctx) -> list[Case]:
    # The target's last success stays at t=0 while time() moves on; the healthy one's follows time().
    at = c.after(c.a.telemetry_delay + c.a.telemetry_delayed_for)
    n = c.n(at)
    lbl = {"self_cluster": c.me, "source": "prometheus"}
    metric = "observe_last_success_timestamp_seconds"
    healthy = [(sel(metric, {"cluster": o} | lbl), clock(n)) for o in c.healthy]
    tgt = sel(metric, {"cluster": c.target} | lbl)
    fires = ({"cluster": c.target} | lbl | {"severity": "warning"},)
    return [
        Case((*healthy, (tgt, f"0x{n}")), (Check(at, "FleetClusterTelemetryDelayed", fires),), "fires"),
        Case((*healthy, (tgt, clock(n))), (Check(at, "FleetClusterTelemetryDelayed", ()),), "silent"),
    ]


def _logs_missing(c: Ctx) -> list[Case]:
    logs = [x.name for x in c.fleet.logs_clusters]
    target = logs[0]
    at = c.after(c.a.logs_missing_for)
    n = c.n(at)
    others = [(sel(R.CLUSTER_LOG_LINES_RATE, {"cluster": o}), f"5x{n}") for o in logs[1:]]
    tgt = sel(R.CLUSTER_LOG_LINES_RATE, {"cluster": target})
    fires = (c.inventory(target) | {"severity": "warning"},)
    return [
        Case((*others, (tgt, f"0x{n}")), (Check(at, "FleetClusterLogsMissing", fires),), "no log lines"),
        Case((*others, (tgt, f"5x{n}")), (Check(at, "FleetClusterLogsMissing", ()),), "silent"),
    ]


CASES: dict[str, CaseBuilder] = {
    "FleetClusterTelemetryMissing": _missing,
    "FleetClusterUnreachable": _unreachable,
    "FleetClusterTelemetryDelayed": _delayed,
    "FleetClusterLogsMissing": _logs_missing,
}
