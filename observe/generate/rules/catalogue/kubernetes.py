"""Kubernetes control plane and nodes, per cluster: API server (`apiserver_request_total`, `up`) and
kube-state-metrics (`kube_node_status_condition`). Burn rates follow the SRE workbook's multiwindow
alerts (https://sre.google/workbook/alerting-on-slos/).
"""

from __future__ import annotations

import math

from observe.generate.rules import recording as R
from observe.generate.rules.catalogue.base import Fleet
from observe.generate.rules.catalogue.cases import Case, CaseBuilder, Check, Ctx, matcher_labels, sel
from observe.generate.rules.model import Alert, Group, Record, num

# The SRE workbook's burn rates over a 30-day budget: at 14.4x it lasts ~2 days (2% of it gone in 1h,
# the critical alert's long window), at 6x 5 days (5% in 6h, the warning's).
BUDGET_DAYS = 30
FAST_BURN = 14.4
SLOW_BURN = 6

# -- Kubernetes control plane and nodes (API server, kube-state-metrics) -------------------------------


def kubernetes_recording(f: Fleet) -> Group:
    selector = f.cfg.alerts.apiserver_selector
    rules = [
        Record(
            name,
            f'sum by (cluster) (rate(apiserver_request_total{{{selector}, code=~"5.."}}[{w}]))\n'
            f"/\nsum by (cluster) (rate(apiserver_request_total{{{selector}}}[{w}]))",
        )
        for w, name in R.APISERVER_ERROR_RATIO.items()
    ]
    ready = 'kube_node_status_condition{condition="Ready", status="true"}'
    rules.append(
        Record(R.NODES_NOT_READY_RATIO, f"1 - (sum by (cluster) ({ready}) / count by (cluster) ({ready}))")
    )
    return Group("kubernetes-recording", tuple(rules))


def kubernetes(f: Fleet) -> Group:
    a = f.cfg.alerts
    budget = 1 - a.apiserver_availability_slo
    ratio = R.APISERVER_ERROR_RATIO
    burn = "The API server of cluster {{ $labels.cluster }} answers too many requests with 5xx: at this rate "
    budget_of = f"the {BUDGET_DAYS}-day budget of a {a.apiserver_availability_slo:.4g} availability SLO"
    nodes = "{{ $labels.cluster }} has more than "
    return Group(
        "kubernetes",
        (
            Alert(
                "KubeAPIServerDown",
                f"{R.CLUSTER_METRICS_EXPECTED} unless on (cluster) (up{{{a.apiserver_selector}}} == 1)",
                "critical",
                "platform",
                "The API server of cluster {{ $labels.cluster }} is down",
                "No API server target of cluster {{ $labels.cluster }} is up: nothing can be "
                "deployed, scaled "
                "or healed there, and controllers are blind.",
                "cluster",
                for_=a.apiserver_down_for,
                muted_by_collector_down=True,
            ),
            Alert(
                "KubeAPIServerErrorBudgetBurn",
                f"({ratio['1h']} > {num(FAST_BURN * budget)})\nand on (cluster)\n"
                f"({ratio['5m']} > {num(FAST_BURN * budget)})",
                "critical",
                "platform",
                "The API server of cluster {{ $labels.cluster }} burns its error budget fast",
                burn + f"{budget_of} is gone in about {BUDGET_DAYS / FAST_BURN:.0f} days.",
                "cluster",
                for_=a.apiserver_burn_critical_for,
            ),
            Alert(
                "KubeAPIServerErrorBudgetBurn",
                f"({ratio['6h']} > {num(SLOW_BURN * budget)})\nand on (cluster)\n"
                f"({ratio['30m']} > {num(SLOW_BURN * budget)})",
                "warning",
                "platform",
                "The API server of cluster {{ $labels.cluster }} burns its error budget",
                burn + f"{budget_of} is gone in about {BUDGET_DAYS / SLOW_BURN:.0f} days.",
                "cluster",
                for_=a.apiserver_burn_warning_for,
            ),
            Alert(
                "KubeClusterNodesNotReady",
                f"{R.NODES_NOT_READY_RATIO} > {num(a.nodes_not_ready_warning)}",
                "warning",
                "platform",
                "Many nodes of cluster {{ $labels.cluster }} are not Ready",
                "Cluster " + nodes + f"{a.nodes_not_ready_warning:.0%} of its nodes not Ready.",
                "cluster",
                for_=a.nodes_not_ready_for,
            ),
            Alert(
                "KubeClusterNodesNotReady",
                f"{R.NODES_NOT_READY_RATIO} > {num(a.nodes_not_ready_critical)}",
                "critical",
                "platform",
                "A large share of the nodes of cluster {{ $labels.cluster }} are not Ready",
                "Cluster "
                + nodes
                + f"{a.nodes_not_ready_critical:.0%} of its nodes not Ready: its workloads "
                "are losing capacity.",
                "cluster",
                for_=a.nodes_not_ready_for,
            ),
        ),
    )


# -- promtool cases ------------------------------------------------------------------------------------


def _apiserver_down(c: Ctx) -> list[Case]:
    at = c.after(c.a.apiserver_down_for)
    n = c.n(at)
    job = matcher_labels(c.a.apiserver_selector)
    others = [(sel("up", {"cluster": o} | job), f"1x{n}") for o in c.others]
    tgt = sel("up", {"cluster": c.target} | job)
    fires = (c.inventory(c.target) | {"severity": "critical"},)
    return [
        Case((*others, (tgt, f"0x{n}")), (Check(at, "KubeAPIServerDown", fires),), "target down"),
        Case((*others, (tgt, f"1x{n}")), (Check(at, "KubeAPIServerDown", ()),), "silent"),
    ]


def _error_budget(c: Ctx) -> list[Case]:
    budget = 1 - c.a.apiserver_availability_slo
    crit, warn = FAST_BURN * budget, SLOW_BURN * budget
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


CASES: dict[str, CaseBuilder] = {
    "KubeAPIServerDown": _apiserver_down,
    "KubeAPIServerErrorBudgetBurn": _error_budget,
    "KubeClusterNodesNotReady": _nodes,
}
