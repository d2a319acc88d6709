"""`promtool test rules` files for the generated Prometheus rules: every alert fires in one case, with its
exact labels and annotations, and stays silent in another.

Format: https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/. Input series use
promtool's expanding notation (`0+60x20` = 0, 60, ... 21 samples, one per minute; `stale` is a
staleness marker). Each case is built from the config, so the tests hold for any fleet and thresholds:
the target cluster fails while another cluster stays healthy, and `exp_alerts` being exact proves the
healthy one raises nothing. Generation fails if an alert has no case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from observe.config import Config
from observe.generate.rules import recording as R
from observe.generate.rules.catalogue import COLLECTOR_HEARTBEAT, Fleet
from observe.generate.rules.model import (
    Alert,
    RuleFile,
    RuleGenerationError,
    prom_duration,
    rename_cluster_label,
    render_template,
)
from observe.generate.rules.prometheus import alert_annotations, alert_labels

LOOKBACK = 300.0  # Prometheus' default query.lookback-delta: a series without samples stays visible this long
Labels = dict[str, str]


@dataclass(frozen=True)
class Check:
    at: float  # seconds since the start of the case
    alert: str
    fires: tuple[Labels, ...]  # the alert's series labels plus `severity`; empty: must stay silent


@dataclass(frozen=True)
class Case:
    series: tuple[tuple[str, str], ...]  # (series selector, promtool values)
    checks: tuple[Check, ...]
    comment: str = ""


@dataclass
class Ctx:
    """What a case needs: the fleet, a target cluster that fails, another that stays healthy."""

    cfg: Config
    fleet: Fleet = field(init=False)

    def __post_init__(self) -> None:
        self.fleet = Fleet(self.cfg)
        names = [c.name for c in self.fleet.metrics_clusters]
        self.target = names[0]
        self.other: str | None = names[1] if len(names) > 1 else None
        self.me = self.cfg.self_cluster
        self.ei = self.cfg.alerts.evaluation_interval
        self.a = self.cfg.alerts

    @property
    def healthy(self) -> list[str]:
        return [self.other] if self.other else []

    def inventory(self, name: str) -> Labels:
        return {**self.cfg.cluster(name).labels, "cluster": name, "self_cluster": self.me}

    def after(self, seconds: float, evals: int = 2) -> float:
        """A time when a condition true since t=0 has held for `seconds`, with rate windows filled."""
        return _ceil(seconds, self.ei) + 60 + evals * self.ei

    def n(self, until: float) -> int:
        """Samples (one a minute) to cover a case until `until`, with a margin."""
        return int(until // 60) + 5


def _ceil(seconds: float, step: float) -> float:
    return math.ceil(seconds / step) * step


def sel(metric: str, labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def matcher_labels(selector: str) -> Labels:
    """Label values that satisfy a matcher list like `job="apiserver"` or `job=~".*thanos-receive.*"`."""
    out: Labels = {}
    for name, op, value in re.findall(
        r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', selector
    ):
        if op == "=":
            out[name] = value
        elif op == "=~":
            guess = value.replace(".*", "").replace(".+", "x")
            if not re.fullmatch(value, guess):
                raise RuleGenerationError(
                    f"cannot build a test series matching {name}=~{value!r}; use = or .*word.*"
                )
            out[name] = guess
    return out


# -- the cases, one function per alert -------------------------------------------------------------


def _missing(c: Ctx) -> list[Case]:
    m = c.a.cluster_missing_for
    metric = c.a.presence_metric
    last = 600.0  # the target's last sample, at 10m
    fire_death = _ceil(last + LOOKBACK + 60, c.ei) + _ceil(m, c.ei)  # + 60: v2 lookback is inclusive
    n = c.n(fire_death + 120)
    others = [
        (sel(metric, {"cluster": o, "job": "prometheus"}), f"1x{n}") for o in _all_metrics(c) if o != c.target
    ]
    tgt = sel(metric, {"cluster": c.target, "job": "prometheus"})
    fires = (c.inventory(c.target) | {"severity": "critical"},)
    alert = "FleetClusterTelemetryMissing"
    stale_from = last + 60
    fire_stale = _ceil(stale_from, c.ei) + _ceil(m, c.ei)
    return [
        Case(
            (*others, (tgt, "1x10")),
            (
                Check(last + LOOKBACK + m - c.ei, alert, ()),
                Check(fire_death, alert, fires),
            ),
            "silent death: no staleness marker, so the series stays visible for the 5m lookback, then `for`",
        ),
        Case(
            (*others, (tgt, "1x10 stale")),
            (Check(fire_stale - c.ei, alert, ()), Check(fire_stale, alert, fires)),
            "clean stop: a staleness marker ends the series at once; only `for` delays the alert",
        ),
        Case((*others, (tgt, f"1x{n}")), (Check(fire_death, alert, ()),), "healthy"),
    ]


def _all_metrics(c: Ctx) -> list[str]:
    return [x.name for x in c.fleet.metrics_clusters]


def _gauge_cases(
    c: Ctx,
    alert: str,
    metric: str,
    labels: Labels,
    bad: str,
    good: str,
    severity: str,
    for_: float,
    *,
    expect: Labels | None = None,
    per_cluster: bool = True,
) -> list[Case]:
    """The common shape: the target's series holds `bad`, the healthy cluster's `good`; silent: all good."""
    at = c.after(for_)
    n = c.n(at)
    t_labels = ({"cluster": c.target} if per_cluster else {}) | labels
    exp = (expect if expect is not None else t_labels) | {"severity": severity}
    healthy = (
        [(sel(metric, {"cluster": o} | labels), f"{good}x{n}") for o in c.healthy] if per_cluster else []
    )
    return [
        Case((*healthy, (sel(metric, t_labels), f"{bad}x{n}")), (Check(at, alert, (exp,)),), "fires"),
        Case((*healthy, (sel(metric, t_labels), f"{good}x{n}")), (Check(at, alert, ()),), "silent"),
    ]


def _unreachable(c: Ctx) -> list[Case]:
    return _gauge_cases(
        c, "FleetClusterUnreachable", "observe_cluster_up", {"self_cluster": c.me}, "0", "1", "critical",
        c.a.cluster_unreachable_for,
    )  # fmt: skip


def _delayed(c: Ctx) -> list[Case]:
    # The target's last success stays at t=0 while time() moves on; the healthy one's follows time().
    at = c.after(c.a.telemetry_delay + c.a.telemetry_delayed_for)
    n = c.n(at)
    lbl = {"self_cluster": c.me, "source": "prometheus"}
    metric = "observe_last_success_timestamp_seconds"
    healthy = [(sel(metric, {"cluster": o} | lbl), f"0+60x{n}") for o in c.healthy]
    tgt = sel(metric, {"cluster": c.target} | lbl)
    fires = ({"cluster": c.target} | lbl | {"severity": "warning"},)
    return [
        Case((*healthy, (tgt, f"0x{n}")), (Check(at, "FleetClusterTelemetryDelayed", fires),), "fires"),
        Case((*healthy, (tgt, f"0+60x{n}")), (Check(at, "FleetClusterTelemetryDelayed", ()),), "silent"),
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


def _apiserver_down(c: Ctx) -> list[Case]:
    at = c.after(c.a.apiserver_down_for)
    n = c.n(at)
    job = matcher_labels(c.a.apiserver_selector)
    others = [(sel("up", {"cluster": o} | job), f"1x{n}") for o in _all_metrics(c) if o != c.target]
    tgt = sel("up", {"cluster": c.target} | job)
    fires = (c.inventory(c.target) | {"severity": "critical"},)
    return [
        Case((*others, (tgt, f"0x{n}")), (Check(at, "KubeAPIServerDown", fires),), "target down"),
        Case((*others, (tgt, f"1x{n}")), (Check(at, "KubeAPIServerDown", ()),), "silent"),
    ]


def _error_budget(c: Ctx) -> list[Case]:
    budget = 1 - c.a.apiserver_availability_slo
    crit, warn = 14.4 * budget, 6 * budget
    at = c.after(max(c.a.apiserver_burn_critical_for, c.a.apiserver_burn_warning_for), evals=3)
    n = c.n(at)
    job = matcher_labels(c.a.apiserver_selector)

    def requests(cluster: str, ratio: float) -> list[tuple[str, str]]:
        errors = round(1000 * ratio)
        return [
            (
                sel("apiserver_request_total", {"cluster": cluster, "code": "200"} | job),
                f"0+{1000 - errors}x{n}",
            ),
            (sel("apiserver_request_total", {"cluster": cluster, "code": "500"} | job), f"0+{errors}x{n}"),
        ]

    healthy = [s for o in c.healthy for s in requests(o, 0)]
    alert = "KubeAPIServerErrorBudgetBurn"
    both = tuple({"cluster": c.target, "severity": s} for s in ("critical", "warning"))
    cases = [Case((*healthy, *requests(c.target, 0)), (Check(at, alert, ()),), "silent")]
    if crit < 1:
        cases.append(
            Case((*healthy, *requests(c.target, (crit + 1) / 2)), (Check(at, alert, both),), "fast burn")
        )
    mid = (warn + min(crit, 1)) / 2
    cases.append(
        Case((*healthy, *requests(c.target, mid)), (Check(at, alert, both[1:]),), "slow burn: warning")
    )
    return cases


def _nodes(c: Ctx) -> list[Case]:
    w, cr = c.a.nodes_not_ready_warning, c.a.nodes_not_ready_critical
    total = next(t for t in (20, 100, 1000) if (math.floor(w * t) + 1) / t <= cr)
    at = c.after(c.a.nodes_not_ready_for)
    n = c.n(at)

    def nodes(cluster: str, not_ready: int) -> list[tuple[str, str]]:
        lbl = {"cluster": cluster, "condition": "Ready", "status": "true"}
        return [
            (
                sel("kube_node_status_condition", lbl | {"node": f"node-{i}"}),
                f"{0 if i < not_ready else 1}x{n}",
            )
            for i in range(total)
        ]

    healthy = [s for o in c.healthy for s in nodes(o, 0)]
    alert = "KubeClusterNodesNotReady"
    warn_only = ({"cluster": c.target, "severity": "warning"},)
    both = ({"cluster": c.target, "severity": "critical"}, *warn_only)
    return [
        Case(
            (*healthy, *nodes(c.target, math.floor(w * total) + 1)), (Check(at, alert, warn_only),), "warning"
        ),
        Case((*healthy, *nodes(c.target, total)), (Check(at, alert, both),), "critical and warning"),
        Case((*healthy, *nodes(c.target, 0)), (Check(at, alert, ()),), "silent"),
    ]


def _capacity_series(cluster: str, allocatable: float, requests: float, n: int) -> list[tuple[str, str]]:
    pod = {"cluster": cluster, "namespace": "shop", "pod": "web-0"}
    return [
        (sel("kube_node_status_allocatable", {"cluster": cluster, "node": "node-0", "resource": "cpu"}),
         f"{allocatable:g}x{n}"),
        (sel("kube_pod_container_resource_requests", pod | {"container": "web", "resource": "cpu"}),
         f"{requests:g}x{n}"),
        (sel("kube_pod_status_phase", pod | {"phase": "Running"}), f"1x{n}"),
    ]  # fmt: skip


def _requests_high(c: Ctx) -> list[Case]:
    at = c.after(c.a.requests_ratio_for)
    n = c.n(at)
    healthy = [s for o in c.healthy for s in _capacity_series(o, 10, 1, n)]
    high = 10 * (c.a.requests_ratio + 1) / 2
    alert = "FleetClusterResourceRequestsHigh"
    fires = ({"cluster": c.target, "resource": "cpu", "severity": "warning"},)
    return [
        Case((*healthy, *_capacity_series(c.target, 10, high, n)), (Check(at, alert, fires),), "fires"),
        Case((*healthy, *_capacity_series(c.target, 10, 1, n)), (Check(at, alert, ()),), "silent"),
    ]


def _failover(c: Ctx) -> list[Case]:
    # The target is big and full; its peers are small and half free: it cannot fail over, they can
    # (the target's free capacity, 10 x headroom, covers any one peer's 5 x headroom).
    pool = c.fleet.failover_pools()[0]
    target, peers = pool[0], pool[1:]
    h = c.a.failover_headroom
    at = c.after(c.a.failover_for, evals=3)  # three chained recording rules
    n = c.n(at)
    alert = "FleetFailoverCapacityInsufficient"
    fires = ({"cluster": target, "resource": "cpu", "severity": "warning"},)
    full = [s for p in peers for s in _capacity_series(p, 10, 5, n)]
    idle = [s for p in peers for s in _capacity_series(p, 10, 0, n)]
    return [
        Case((*full, *_capacity_series(target, 90 + 10 * h, 90, n)), (Check(at, alert, fires),), "no room"),
        Case((*idle, *_capacity_series(target, 100, 1, n)), (Check(at, alert, ()),), "silent"),
    ]


def _istio(c: Ctx, alert: str) -> list[Case]:
    at = c.after(max(c.a.cross_cluster_traffic_for, c.a.cross_cluster_errors_for))
    n = c.n(at)
    per_min = max(600, round(120 * c.a.cross_cluster_min_rps))  # total rate well above the min_rps guard
    remote_dst = c.fleet.istio_id(c.other) if c.other else "elsewhere"

    def traffic(cluster: str, remote_share: float, error_ratio: float) -> list[tuple[str, str]]:
        me = c.fleet.istio_id(cluster)
        base = {"cluster": cluster, "reporter": "source", "source_cluster": me}
        remote = round(per_min * remote_share)
        errors = round(remote * error_ratio)
        dst = remote_dst if cluster == c.target else c.fleet.istio_id(c.target)
        return [
            (sel("istio_requests_total", base | {"destination_cluster": me, "response_code": "200"}),
             f"0+{per_min - remote}x{n}"),
            (sel("istio_requests_total", base | {"destination_cluster": dst, "response_code": "200"}),
             f"0+{remote - errors}x{n}"),
            (sel("istio_requests_total", base | {"destination_cluster": dst, "response_code": "503"}),
             f"0+{errors}x{n}"),
        ]  # fmt: skip

    healthy = [s for o in c.healthy for s in traffic(o, 0.1, 0)]
    fires = ({"cluster": c.target, "severity": "warning"},)
    share, ratio = c.a.cross_cluster_traffic_share, c.a.cross_cluster_error_ratio
    if alert == "FleetCrossClusterTrafficHigh":
        bad, good = traffic(c.target, (share + 1) / 2, 0), traffic(c.target, share / 2, 0)
    else:
        bad, good = traffic(c.target, 0.5, (ratio + 1) / 2), traffic(c.target, 0.5, ratio / 2)
    return [
        Case((*healthy, *bad), (Check(at, alert, fires),), "fires"),
        Case((*healthy, *good), (Check(at, alert, ()),), "silent"),
    ]


def _gslb(c: Ctx, alert: str) -> list[Case]:
    gslb = {"namespace": "shop", "name": "web"}
    if alert == "K8gbGslbNoHealthyRecords":
        return _gauge_cases(c, alert, "k8gb_gslb_healthy_records", gslb, "0", "3", "critical", c.a.gslb_for)
    return _gauge_cases(
        c, alert, "k8gb_gslb_ingress_hosts_per_status", gslb | {"status": "Unhealthy"}, "2", "0", "warning",
        c.a.gslb_for, expect={"cluster": c.target} | gslb,
    )  # fmt: skip


def _velero_old(c: Ctx) -> list[Case]:
    # A last success at -max_age is already too old at t=0; one that follows time() never is.
    at = c.after(c.a.backup_failed_for)
    n = c.n(at)
    metric, lbl = "velero_backup_last_successful_timestamp", {"schedule": "daily"}
    healthy = [(sel(metric, {"cluster": o} | lbl), f"0+60x{n}") for o in c.healthy]
    tgt = sel(metric, {"cluster": c.target} | lbl)
    fires = ({"cluster": c.target, "schedule": "daily", "severity": "warning"},)
    return [
        Case(
            (*healthy, (tgt, f"-{c.a.backup_max_age:g}x{n}")),
            (Check(at, "VeleroBackupTooOld", fires),),
            "old",
        ),
        Case((*healthy, (tgt, f"0+60x{n}")), (Check(at, "VeleroBackupTooOld", ()),), "silent"),
    ]


def _argocd(c: Ctx, alert: str) -> list[Case]:
    app = {
        "namespace": "argocd",
        "name": "shop",
        "project": "default",
        "dest_server": "https://kubernetes.default.svc",
    }
    expect = {"cluster": c.target, "namespace": "argocd", "name": "shop", "project": "default"}
    if alert == "ArgoCDAppOutOfSync":
        bad, good, for_ = {"sync_status": "OutOfSync"}, {"sync_status": "Synced"}, c.a.argocd_out_of_sync_for
        rest = {"health_status": "Healthy"}
    else:
        bad, good, for_ = (
            {"health_status": "Degraded"},
            {"health_status": "Healthy"},
            c.a.argocd_unhealthy_for,
        )
        rest = {"sync_status": "Synced"}
    at = c.after(for_)
    n = c.n(at)
    healthy = [(sel("argocd_app_info", {"cluster": o} | app | good | rest), f"1x{n}") for o in c.healthy]
    tgt = {"cluster": c.target} | app | rest
    return [
        Case((*healthy, (sel("argocd_app_info", tgt | bad), f"1x{n}")),
             (Check(at, alert, (expect | {"severity": "warning"},)),), "fires"),
        Case((*healthy, (sel("argocd_app_info", tgt | good), f"1x{n}")), (Check(at, alert, ()),), "silent"),
    ]  # fmt: skip


def _collector_down(c: Ctx) -> list[Case]:
    m = c.a.collector_down_for
    fire = _ceil(600 + LOOKBACK + 60, c.ei) + _ceil(m, c.ei)
    n = c.n(fire)
    mine = sel(COLLECTOR_HEARTBEAT, {"cluster": c.target, "source": "prometheus", "self_cluster": c.me})
    # Another collector (another management cluster) staying up must not hide ours.
    theirs = (sel(COLLECTOR_HEARTBEAT, {"cluster": "elsewhere", "source": "prometheus", "self_cluster": "x"}),
              f"1x{n}")  # fmt: skip
    fires = ({"self_cluster": c.me, "cluster": c.me, "severity": "critical"},)
    return [
        Case(
            (theirs, (mine, "1x10")),
            (Check(fire, "ObserveCollectorDown", fires),),
            "silent death of the collector",
        ),
        Case((theirs, (mine, f"1x{n}")), (Check(fire, "ObserveCollectorDown", ()),), "silent"),
    ]


def _queue(c: Ctx, alert: str) -> list[Case]:
    lbl = {"self_cluster": c.me, "signal": "metrics"}
    if alert == "ObserveQueueLagging":
        old = f"{2 * c.a.queue_lag:g}"
        metric = "observe_queue_oldest_record_age_seconds"
        return _gauge_cases(c, alert, metric, lbl, old, "0", "warning", c.a.queue_lag_for)
    w, cr = c.a.queue_usage_warning, c.a.queue_usage_critical
    at = c.after(c.a.queue_usage_for)
    n = c.n(at)

    def queue(cluster: str, used: float) -> list[tuple[str, str]]:
        q = {"cluster": cluster} | lbl
        return [
            (sel("observe_queue_bytes", q), f"{used:g}x{n}"),
            (sel("observe_queue_max_bytes", q), f"1000x{n}"),
        ]

    healthy = [s for o in c.healthy for s in queue(o, 0)]
    exp = {"cluster": c.target} | lbl
    cases = [
        Case((*healthy, *queue(c.target, round(1000 * (w + cr) / 2))),
             (Check(at, alert, (exp | {"severity": "warning"},)),), "warning"),
        Case((*healthy, *queue(c.target, 10)), (Check(at, alert, ()),), "silent"),
    ]  # fmt: skip
    if cr < 1:
        both = (exp | {"severity": "critical"}, exp | {"severity": "warning"})
        cases.append(
            Case((*healthy, *queue(c.target, round(1000 * (cr + 1) / 2))), (Check(at, alert, both),), "full")
        )
    return cases


def _dropping(c: Ctx) -> list[Case]:
    at = c.after(0)
    n = c.n(at)
    metric = "observe_dropped_samples_total"
    lbl = {"self_cluster": c.me, "signal": "metrics"}
    # A healthy cluster's out_of_order drops are re-reads, not losses: they must not fire.
    healthy = [
        (sel(metric, {"cluster": o} | lbl | {"reason": "out_of_order"}), f"0+100x{n}") for o in c.healthy
    ]
    tgt = sel(metric, {"cluster": c.target} | lbl | {"reason": "queue_full"})
    fires = ({"cluster": c.target} | lbl | {"reason": "queue_full", "severity": "warning"},)
    return [
        Case((*healthy, (tgt, f"0+100x{n}")), (Check(at, "ObserveDroppingData", fires),), "fires"),
        Case((*healthy, (tgt, f"0x{n}")), (Check(at, "ObserveDroppingData", ()),), "silent"),
    ]


def _sends(c: Ctx) -> list[Case]:
    at = c.after(c.a.send_failing_for)
    n = c.n(at)
    sink = {"self_cluster": c.me, "sink": "remote_write"}
    fail = round(100 * (c.a.send_failure_ratio + 1) / 2)

    def sends(failures: int) -> list[tuple[str, str]]:
        return [
            (sel("observe_send_failures_total", sink | {"reason": "http_5xx"}), f"0+{failures}x{n}"),
            (sel("observe_send_requests_total", sink), f"0+{100 - failures}x{n}"),
        ]

    fires = (sink | {"cluster": c.me, "severity": "warning"},)
    return [
        Case(tuple(sends(fail)), (Check(at, "ObserveRemoteWriteFailing", fires),), "fires"),
        Case(tuple(sends(0)), (Check(at, "ObserveRemoteWriteFailing", ()),), "silent"),
    ]


def _receive(c: Ctx) -> list[Case]:
    at = c.after(c.a.receive_errors_for)
    n = c.n(at)
    lbl = matcher_labels(c.a.thanos_receive_selector) | {"handler": "receive"}
    bad = round(100 * (c.a.receive_error_ratio + 1) / 2)

    def requests(errors: int) -> tuple[tuple[str, str], ...]:
        return (
            (sel("http_requests_total", lbl | {"code": "200"}), f"0+{100 - errors}x{n}"),
            (sel("http_requests_total", lbl | {"code": "500"}), f"0+{errors}x{n}"),
        )

    fires = ({k: v for k, v in lbl.items() if k == "job"} | {"cluster": c.me, "severity": "critical"},)
    return [
        Case(requests(bad), (Check(at, "ThanosReceiveErrorsHigh", fires),), "fires"),
        Case(requests(0), (Check(at, "ThanosReceiveErrorsHigh", ()),), "silent"),
    ]


def _ruler(c: Ctx) -> list[Case]:
    at = c.after(c.a.ruler_send_failing_for)
    n = c.n(at)
    series = sel("thanos_alert_sender_alerts_dropped_total", {"job": "thanos-ruler"})
    fires = ({"job": "thanos-ruler", "cluster": c.me, "severity": "critical"},)
    return [
        Case(((series, f"0+5x{n}"),), (Check(at, "FleetRulerAlertsDropped", fires),), "fires"),
        Case(((series, f"0x{n}"),), (Check(at, "FleetRulerAlertsDropped", ()),), "silent"),
    ]


def _watchdog(c: Ctx) -> list[Case]:
    # Always firing by design: it has no silent case (the coverage test knows this one exception).
    return [Case((), (Check(0, "Watchdog", ({"cluster": c.me, "severity": "info"},)),), "always firing")]


CASES: dict[str, Callable[[Ctx], list[Case]]] = {
    "FleetClusterTelemetryMissing": _missing,
    "FleetClusterUnreachable": _unreachable,
    "FleetClusterTelemetryDelayed": _delayed,
    "FleetClusterLogsMissing": _logs_missing,
    "KubeAPIServerDown": _apiserver_down,
    "KubeAPIServerErrorBudgetBurn": _error_budget,
    "KubeClusterNodesNotReady": _nodes,
    "FleetClusterResourceRequestsHigh": _requests_high,
    "FleetFailoverCapacityInsufficient": _failover,
    "FleetCrossClusterTrafficHigh": lambda c: _istio(c, "FleetCrossClusterTrafficHigh"),
    "FleetCrossClusterErrorRatioHigh": lambda c: _istio(c, "FleetCrossClusterErrorRatioHigh"),
    "K8gbGslbNoHealthyRecords": lambda c: _gslb(c, "K8gbGslbNoHealthyRecords"),
    "K8gbGslbHostsUnhealthy": lambda c: _gslb(c, "K8gbGslbHostsUnhealthy"),
    "VeleroBackupTooOld": _velero_old,
    "VeleroBackupFailed": lambda c: _gauge_cases(
        c, "VeleroBackupFailed", "velero_backup_last_status", {"schedule": "daily"}, "0", "1", "warning",
        c.a.backup_failed_for,
    ),
    "ArgoCDAppOutOfSync": lambda c: _argocd(c, "ArgoCDAppOutOfSync"),
    "ArgoCDAppUnhealthy": lambda c: _argocd(c, "ArgoCDAppUnhealthy"),
    "ArgoCDClusterConnectionLost": lambda c: _gauge_cases(
        c, "ArgoCDClusterConnectionLost", "argocd_cluster_connection_status",
        {"server": "https://api.spoke.example:6443"}, "0", "1", "warning", c.a.argocd_connection_for,
    ),
    "ObserveCollectorDown": _collector_down,
    "ObserveQueueFilling": lambda c: _queue(c, "ObserveQueueFilling"),
    "ObserveQueueLagging": lambda c: _queue(c, "ObserveQueueLagging"),
    "ObserveDroppingData": _dropping,
    "ObserveRemoteWriteFailing": _sends,
    "ThanosReceiveErrorsHigh": _receive,
    "FleetRulerAlertsDropped": _ruler,
    "Watchdog": _watchdog,
}  # fmt: skip


# -- rendering -----------------------------------------------------------------------------------------


def render(rule_file: RuleFile, cfg: Config, rule_paths: list[str]) -> dict[str, Any] | None:
    """The promtool test file for one rule file (None when it has no alerts); `rule_paths` relative to it."""
    alerts = rule_file.alerts()
    if not alerts:
        return None
    ctx = Ctx(cfg)
    by_key: dict[tuple[str, str], Alert] = {(a.name, a.severity): a for a in alerts}
    groups: list[dict[str, Any]] = []
    for name in dict.fromkeys(a.name for a in alerts):
        if name not in CASES:
            raise RuleGenerationError(f"alert {name} has no promtool test case in promtool_tests.CASES")
        for case in CASES[name](ctx):
            groups.append(_group(case, by_key, cfg))
    return {
        "rule_files": rule_paths,
        "evaluation_interval": prom_duration(cfg.alerts.evaluation_interval),
        "tests": groups,
    }


def _group(case: Case, by_key: Mapping[tuple[str, str], Alert], cfg: Config) -> dict[str, Any]:
    label = cfg.cluster_label
    out: dict[str, Any] = {
        "interval": "1m",
        "input_series": [
            {"series": rename_cluster_label(s, label), "values": v} for s, v in sorted(case.series)
        ],
        "alert_rule_test": [],
    }
    if case.comment:
        out["name"] = case.comment
    for check in case.checks:
        expected = []
        for fired in check.fires:
            alert = by_key[(check.alert, fired["severity"])]
            series = {(label if k == "cluster" else k): v for k, v in fired.items() if k != "severity"}
            labels = series | alert_labels(alert, cfg)
            notes = {k: render_template(v, series) for k, v in alert_annotations(alert, cfg).items()}
            expected.append({"exp_labels": labels, "exp_annotations": notes})
        expected.sort(key=lambda e: sorted(e["exp_labels"].items()))
        out["alert_rule_test"].append(
            {"eval_time": prom_duration(check.at), "alertname": check.alert, "exp_alerts": expected}
        )
    return out
