"""The collector itself (observe/telemetry/events.py's self-metrics, shipped with `self_cluster`), the central
pipeline (Thanos Receive, the ruler's alert sender) and the always-firing Watchdog.
"""

from __future__ import annotations

from observe.generate.rules.catalogue.base import COLLECTOR_HEARTBEAT, LOSS_REASONS, Fleet
from observe.generate.rules.catalogue.cases import (
    DYING,
    Case,
    CaseBuilder,
    Check,
    Ctx,
    gauge_cases,
    matcher_labels,
    sel,
)
from observe.generate.rules.model import Alert, Group, num
from observe.units import format_duration


def observe(f: Fleet) -> Group:
    a = f.cfg.alerts
    me = f.cfg.self_cluster
    # Alerts about the collector as a whole or about the centre name the management cluster they run in.
    here = {"cluster": me}
    rules: list[Alert] = []
    if f.cfg.self_metrics:
        queue = "max by (cluster, self_cluster, signal) (observe_queue_bytes / observe_queue_max_bytes)"
        # observe_send_* have no `cluster`: a sink serves every cluster. `here` names the collector's own.
        mine = f'{{self_cluster="{me}"}}'
        failures = f"sum by (cluster, self_cluster, sink) (rate(observe_send_failures_total{mine}[5m]))"
        successes = f"sum by (cluster, self_cluster, sink) (rate(observe_send_requests_total{mine}[5m]))"
        rules += [
            Alert(
                "ObserveCollectorDown",
                # absent() is exact here: one collector, known by name; the equality matcher becomes a label.
                f'absent({COLLECTOR_HEARTBEAT}{{self_cluster="{me}"}})',
                "critical",
                "platform",
                "The observe collector of {{ $labels.self_cluster }} is down",
                "No self-metric of collector {{ $labels.self_cluster }} reaches the centre: no cluster's "
                "telemetry is being collected. The fleet's 'missing' alerts are muted while this fires.",
                "collector",
                for_=a.collector_down_for,
                labels=here,
            ),
            Alert(
                "ObserveQueueFilling",
                f"{queue} > {num(a.queue_usage_warning)}",
                "warning",
                "platform",
                "The collector's {{ $labels.signal }} queue for {{ $labels.cluster }} is filling",
                "The durable queue of {{ $labels.signal }} for cluster {{ $labels.cluster }} is more than "
                + f"{a.queue_usage_warning:.0%}"
                + " full: the centre accepts less than arrives. When full, the oldest data is dropped.",
                "collector",
                for_=a.queue_usage_for,
            ),
            Alert(
                "ObserveQueueFilling",
                f"{queue} > {num(a.queue_usage_critical)}",
                "critical",
                "platform",
                "The collector's {{ $labels.signal }} queue for {{ $labels.cluster }} is nearly full",
                "The durable queue of {{ $labels.signal }} for cluster {{ $labels.cluster }} is more than "
                + f"{a.queue_usage_critical:.0%}"
                + " full: data of this cluster is about to be dropped.",
                "collector",
                for_=a.queue_usage_for,
            ),
            Alert(
                "ObserveQueueLagging",
                "max by (cluster, self_cluster, signal) (observe_queue_oldest_record_age_seconds) > "
                + num(a.queue_lag),
                "warning",
                "platform",
                "{{ $labels.signal }} of cluster {{ $labels.cluster }} reach the centre late",
                "The oldest unsent {{ $labels.signal }} record of cluster {{ $labels.cluster }} is "
                "older than "
                + format_duration(a.queue_lag)
                + ": central dashboards and alerts of this cluster lag behind.",
                "collector",
                for_=a.queue_lag_for,
            ),
            Alert(
                "ObserveRemoteReadFallingBehind",
                # Behind and still falling behind: a gap being filled shrinks (deriv < 0) and stays silent.
                "max by (cluster, self_cluster) (observe_remote_read_lag_seconds) > "
                + num(a.remote_read_lag)
                + "\nand\nmax by (cluster, self_cluster) (deriv(observe_remote_read_lag_seconds[10m])) > 0",
                "warning",
                "platform",
                "The collector falls further behind cluster {{ $labels.cluster }}'s Prometheus",
                "The remote-read cursor of cluster {{ $labels.cluster }} is more than "
                + format_duration(a.remote_read_lag)
                + " behind and the gap keeps growing: the source cannot be read, or reading is slower than "
                "its samples arrive. Past remote_read.backfill_limit the oldest part of the gap is skipped.",
                "collector",
                for_=a.remote_read_lag_for,
            ),
            Alert(
                "ObserveDroppingData",
                "sum by (cluster, self_cluster, signal, reason) "
                f'(increase(observe_dropped_samples_total{{reason=~"{"|".join(LOSS_REASONS)}"}}[10m])) > 0',
                "warning",
                "platform",
                "The collector dropped {{ $labels.signal }} of cluster {{ $labels.cluster }}",
                "Collector {{ $labels.self_cluster }} dropped {{ $labels.signal }} of cluster {{ "
                "$labels.cluster }}"
                " in the last 10 minutes (reason {{ $labels.reason }}): that data is lost.",
                "collector",
            ),
            Alert(
                "ObserveRemoteWriteFailing",
                f"{failures}\n/\n({failures}\n + {successes})\n> {num(a.send_failure_ratio)}",
                "warning",
                "platform",
                "The collector's sends to {{ $labels.sink }} fail",
                "More than "
                + f"{a.send_failure_ratio:.0%}"
                + " of collector {{ $labels.self_cluster }}'s requests to {{ $labels.sink }} fail; "
                "it retries, "
                "and its queues grow meanwhile.",
                "collector",
                for_=a.send_failing_for,
                labels=here,
            ),
        ]
    receive = a.thanos_receive_selector
    received = f'sum by (cluster, job) (rate(http_requests_total{{{receive}, handler="receive"}}[5m]))'
    rejected = (
        f'sum by (cluster, job) (rate(http_requests_total{{{receive}, handler="receive", code=~"5.."}}[5m]))'
    )
    rules += [
        Alert(
            "ThanosReceiveErrorsHigh",
            f"{rejected}\n/\n{received}\n> {num(a.receive_error_ratio)}",
            "critical",
            "platform",
            "Thanos Receive ({{ $labels.job }}) rejects remote writes",
            "More than "
            + f"{a.receive_error_ratio:.0%}"
            + " of remote-write requests to {{ $labels.job }} answer 5xx: the fleet's metrics are not being "
            "stored; collectors queue them meanwhile.",
            "collector",
            for_=a.receive_errors_for,
            labels=here,
        ),
        Alert(
            "FleetRulerAlertsDropped",
            "sum by (cluster, job) (rate(thanos_alert_sender_alerts_dropped_total[5m])) > 0\n"
            "or\nsum by (cluster, job) (rate(prometheus_notifications_dropped_total[5m])) > 0",
            "critical",
            "platform",
            "The ruler {{ $labels.job }} cannot deliver alerts",
            "The ruler {{ $labels.job }} drops alerts it could not send to Alertmanager: pages are "
            "being lost. "
            "This alert itself may not arrive; the Watchdog heartbeat stopping is the other sign.",
            "fleet",
            for_=a.ruler_send_failing_for,
            labels=here,
        ),
        Alert(
            "Watchdog",
            "vector(1)",
            "info",
            "platform",
            "The alerting pipeline is alive",
            "Always firing, routed to a dead man's switch: when its heartbeat stops, the ruler, Alertmanager "
            "or the path between them is broken.",
            "fleet",
            labels=here,
        ),
    ]
    return Group("observe", tuple(rules))


# -- promtool cases ------------------------------------------------------------------------------------


def _collector_down(c: Ctx) -> list[Case]:
    fire = c.after_death(c.a.collector_down_for)
    n = c.n(fire)
    mine = sel(COLLECTOR_HEARTBEAT, {"cluster": c.target, "source": "prometheus", "self_cluster": c.me})
    # Another collector (another management cluster) staying up must not hide ours.
    theirs = (sel(COLLECTOR_HEARTBEAT, {"cluster": "elsewhere", "source": "prometheus", "self_cluster": "x"}),
              f"1x{n}")  # fmt: skip
    fires = ({"self_cluster": c.me, "cluster": c.me, "severity": "critical"},)
    return [
        Case(
            (theirs, (mine, DYING)),
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
        return gauge_cases(c, alert, metric, lbl, old, "0", "warning", c.a.queue_lag_for)
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


def _remote_read_lag(c: Ctx) -> list[Case]:
    at = c.after(c.a.remote_read_lag_for + 600)  # the 10m deriv window must fill first
    n = c.n(at)
    lbl = {"self_cluster": c.me}
    lag = c.a.remote_read_lag
    # A healthy cluster sits at safety_lag + interval; the target falls behind a second per second.
    healthy = [(sel("observe_remote_read_lag_seconds", {"cluster": o} | lbl), f"45x{n}") for o in c.healthy]
    tgt = sel("observe_remote_read_lag_seconds", {"cluster": c.target} | lbl)
    fires = ({"cluster": c.target} | lbl | {"severity": "warning"},)
    alert = "ObserveRemoteReadFallingBehind"
    return [
        Case((*healthy, (tgt, f"{lag:g}+60x{n}")), (Check(at, alert, fires),), "falling behind"),
        # far behind but catching up (a gap being filled after an outage): silent
        Case((*healthy, (tgt, f"{lag * 3:g}-30x{n}")), (Check(at, alert, ()),), "catching up"),
        Case((*healthy, (tgt, f"45x{n}")), (Check(at, alert, ()),), "silent"),
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


CASES: dict[str, CaseBuilder] = {
    "ObserveCollectorDown": _collector_down,
    "ObserveQueueFilling": lambda c: _queue(c, "ObserveQueueFilling"),
    "ObserveQueueLagging": lambda c: _queue(c, "ObserveQueueLagging"),
    "ObserveRemoteReadFallingBehind": _remote_read_lag,
    "ObserveDroppingData": _dropping,
    "ObserveRemoteWriteFailing": _sends,
    "ThanosReceiveErrorsHigh": _receive,
    "FleetRulerAlertsDropped": _ruler,
    "Watchdog": _watchdog,
}
