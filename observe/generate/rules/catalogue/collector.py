"""The collector itself (observe/telemetry/events.py's self-metrics, shipped with `self_cluster`), the central
pipeline (Thanos Receive, the ruler's alert sender) and the always-firing Watchdog.
"""

from __future__ import annotations

from observe.generate.rules.catalogue.base import COLLECTOR_HEARTBEAT, LOSS_REASONS, Fleet
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
    sel = a.thanos_receive_selector
    received = f'sum by (cluster, job) (rate(http_requests_total{{{sel}, handler="receive"}}[5m]))'
    rejected = (
        f'sum by (cluster, job) (rate(http_requests_total{{{sel}, handler="receive", code=~"5.."}}[5m]))'
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
