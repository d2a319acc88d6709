"""Capacity and failover: requests vs. allocatable (kube-state-metrics), the N-1 arithmetic per
cluster, cross-cluster traffic from Istio's `istio_requests_total{source_cluster,destination_cluster}`
(https://istio.io/latest/docs/reference/config/metrics/) and global DNS failover from k8gb
(https://www.k8gb.io/docs/metrics.html).
"""

from __future__ import annotations

from observe.generate.rules import recording as R
from observe.generate.rules.catalogue.base import Fleet, regex_of
from observe.generate.rules.catalogue.cases import Case, CaseBuilder, Check, Ctx, gauge_cases, sel
from observe.generate.rules.model import Alert, Group, Record, num

# -- capacity and N-1 failover (kube-state-metrics) ----------------------------------------------------


def capacity_recording(f: Fleet) -> Group:
    rules: list[Record] = [
        Record(
            R.REQUESTS,
            'sum by (cluster, resource) (\n  kube_pod_container_resource_requests{resource=~"cpu|memory"}\n'
            "  * on (cluster, namespace, pod) group_left ()\n"
            '  max by (cluster, namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"} == 1)\n)',
        ),
        Record(
            R.ALLOCATABLE, 'sum by (cluster, resource) (kube_node_status_allocatable{resource=~"cpu|memory"})'
        ),
        Record(R.ALLOCATABLE_FREE, f"clamp_min({R.ALLOCATABLE} - on (cluster, resource) {R.REQUESTS}, 0)"),
    ]
    # N-1, written out per cluster: PromQL has no "sum over the clusters other than this one". Each peer's
    # series is copied to `peer` (so the set stays unique) and renamed to the cluster it would absorb. No
    # peer reporting counts as zero free capacity, not as "no data".
    for pool in f.failover_pools():
        for name in pool:
            peers = [p for p in pool if p != name]
            rules.append(
                Record(
                    R.FAILOVER_PEERS_FREE,
                    "sum by (cluster, resource) (\n  label_replace(\n    label_replace("
                    f'{R.ALLOCATABLE_FREE}{{cluster=~"{regex_of(peers)}"}},'
                    ' "peer", "$1", "cluster", "(.+)"),\n'
                    f'    "cluster", "{name}", "cluster", ".+"\n  )\n)\n'
                    f'or on (cluster, resource)\n{R.REQUESTS}{{cluster="{name}"}} * 0',
                )
            )
    return Group("capacity-recording", tuple(rules))


def capacity(f: Fleet) -> Group:
    a = f.cfg.alerts
    rules = [
        Alert(
            "FleetClusterResourceRequestsHigh",
            f"{R.REQUESTS} / on (cluster, resource) {R.ALLOCATABLE} > {num(a.requests_ratio)}",
            "warning",
            "platform",
            "Cluster {{ $labels.cluster }} has {{ $labels.resource }} requests near its allocatable",
            "Pods of cluster {{ $labels.cluster }} request more than "
            + f"{a.requests_ratio:.0%}"
            + " of the allocatable {{ $labels.resource }}: new pods may not schedule, and it has no room to "
            "absorb a failover.",
            "failover",
            for_=a.requests_ratio_for,
        )
    ]
    if f.failover_pools():
        lhs = R.REQUESTS if a.failover_headroom == 1 else f"{R.REQUESTS} * {num(a.failover_headroom)}"
        rules.append(
            Alert(
                "FleetFailoverCapacityInsufficient",
                f"{lhs} > on (cluster, resource) {R.FAILOVER_PEERS_FREE}",
                "warning",
                "platform",
                "The fleet could not absorb losing cluster {{ $labels.cluster }} ({{ $labels.resource }})",
                "The free allocatable {{ $labels.resource }} of the other clusters of its failover "
                "pool is less "
                "than what cluster {{ $labels.cluster }} requests: if it failed now, its workloads would not "
                "fit elsewhere.",
                "failover",
                for_=a.failover_for,
            )
        )
    return Group("capacity", tuple(rules))


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


# -- cross-cluster traffic (Istio) and global DNS failover (k8gb) --------------------------------------


def traffic_recording(f: Fleet) -> Group:
    rules = [
        Record(R.ISTIO_REQUESTS_RATE, 'sum by (cluster) (rate(istio_requests_total{reporter="source"}[5m]))')
    ]
    # PromQL cannot compare two labels (destination_cluster != cluster), so one term per known cluster.
    for c in f.metrics_clusters:
        away = f'cluster="{c.name}", reporter="source", destination_cluster!="{f.istio_id(c.name)}"'
        rules.append(
            Record(R.ISTIO_CROSS_CLUSTER_RATE, f"sum by (cluster) (rate(istio_requests_total{{{away}}}[5m]))")
        )
        rules.append(
            Record(
                R.ISTIO_CROSS_CLUSTER_ERRORS_RATE,
                f'sum by (cluster) (rate(istio_requests_total{{{away}, response_code=~"5.."}}[5m]))',
            )
        )
    return Group("traffic-recording", tuple(rules))


def traffic(f: Fleet) -> Group:
    a = f.cfg.alerts
    return Group(
        "traffic",
        (
            Alert(
                "FleetCrossClusterTrafficHigh",
                f"({R.ISTIO_CROSS_CLUSTER_RATE} / on (cluster) {R.ISTIO_REQUESTS_RATE} > "
                f"{num(a.cross_cluster_traffic_share)})\nand on (cluster)\n"
                f"({R.ISTIO_REQUESTS_RATE} > {num(a.cross_cluster_min_rps)})",
                "warning",
                "platform",
                "Cluster {{ $labels.cluster }} sends much of its traffic to other clusters",
                "More than "
                + f"{a.cross_cluster_traffic_share:.0%}"
                + " of the requests leaving sidecars in cluster {{ $labels.cluster }} go to another cluster: "
                "its local backends are failing over, or locality load balancing is off.",
                "failover",
                for_=a.cross_cluster_traffic_for,
            ),
            Alert(
                "FleetCrossClusterErrorRatioHigh",
                f"({R.ISTIO_CROSS_CLUSTER_ERRORS_RATE} / on (cluster) {R.ISTIO_CROSS_CLUSTER_RATE} > "
                f"{num(a.cross_cluster_error_ratio)})\nand on (cluster)\n"
                f"({R.ISTIO_CROSS_CLUSTER_RATE} > {num(a.cross_cluster_min_rps)})",
                "warning",
                "platform",
                "Cross-cluster requests from cluster {{ $labels.cluster }} fail",
                "More than "
                + f"{a.cross_cluster_error_ratio:.0%}"
                + " of the requests that cluster {{ $labels.cluster }} sends to other clusters answer 5xx: "
                "failover traffic is not being served.",
                "failover",
                for_=a.cross_cluster_errors_for,
            ),
            Alert(
                "K8gbGslbNoHealthyRecords",
                "max by (cluster, namespace, name) (k8gb_gslb_healthy_records) == 0",
                "critical",
                "workload",
                "GSLB {{ $labels.namespace }}/{{ $labels.name }} has no healthy DNS record",
                "k8gb in cluster {{ $labels.cluster }} sees no healthy endpoint for GSLB {{ "
                "$labels.namespace }}/"
                "{{ $labels.name }}: global DNS has nowhere to send its clients.",
                "failover",
                for_=a.gslb_for,
            ),
            Alert(
                "K8gbGslbHostsUnhealthy",
                "max by (cluster, namespace, name) "
                '(k8gb_gslb_ingress_hosts_per_status{status="Unhealthy"}) > 0',
                "warning",
                "workload",
                "GSLB {{ $labels.namespace }}/{{ $labels.name }} has unhealthy hosts",
                "k8gb in cluster {{ $labels.cluster }} reports unhealthy hosts for GSLB {{ "
                "$labels.namespace }}/"
                "{{ $labels.name }}: DNS failover has taken them out of rotation.",
                "failover",
                for_=a.gslb_for,
            ),
        ),
    )


def _istio(c: Ctx, alert: str) -> list[Case]:
    at = c.after(max(c.a.cross_cluster_traffic_for, c.a.cross_cluster_errors_for))
    n = c.n(at)
    per_min = max(600, round(120 * c.a.cross_cluster_min_rps))  # total rate well above the min_rps guard
    remote_dst = c.fleet.istio_id(c.other) if c.other else "elsewhere"

    def flows(cluster: str, remote_share: float, error_ratio: float) -> list[tuple[str, str]]:
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

    healthy = [s for o in c.healthy for s in flows(o, 0.1, 0)]
    fires = ({"cluster": c.target, "severity": "warning"},)
    share, ratio = c.a.cross_cluster_traffic_share, c.a.cross_cluster_error_ratio
    if alert == "FleetCrossClusterTrafficHigh":
        bad, good = flows(c.target, (share + 1) / 2, 0), flows(c.target, share / 2, 0)
    else:
        bad, good = flows(c.target, 0.5, (ratio + 1) / 2), flows(c.target, 0.5, ratio / 2)
    return [
        Case((*healthy, *bad), (Check(at, alert, fires),), "fires"),
        Case((*healthy, *good), (Check(at, alert, ()),), "silent"),
    ]


def _gslb(c: Ctx, alert: str) -> list[Case]:
    gslb = {"namespace": "shop", "name": "web"}
    if alert == "K8gbGslbNoHealthyRecords":
        return gauge_cases(c, alert, "k8gb_gslb_healthy_records", gslb, "0", "3", "critical", c.a.gslb_for)
    return gauge_cases(
        c, alert, "k8gb_gslb_ingress_hosts_per_status", gslb | {"status": "Unhealthy"}, "2", "0", "warning",
        c.a.gslb_for, expect={"cluster": c.target} | gslb,
    )  # fmt: skip


CASES: dict[str, CaseBuilder] = {
    "FleetClusterResourceRequestsHigh": _requests_high,
    "FleetFailoverCapacityInsufficient": _failover,
    "FleetCrossClusterTrafficHigh": lambda c: _istio(c, "FleetCrossClusterTrafficHigh"),
    "FleetCrossClusterErrorRatioHigh": lambda c: _istio(c, "FleetCrossClusterErrorRatioHigh"),
    "K8gbGslbNoHealthyRecords": lambda c: _gslb(c, "K8gbGslbNoHealthyRecords"),
    "K8gbGslbHostsUnhealthy": lambda c: _gslb(c, "K8gbGslbHostsUnhealthy"),
}
