"""Kubernetes control plane and nodes, per cluster: API server (`apiserver_request_total`, `up`) and
kube-state-metrics (`kube_node_status_condition`). Burn rates follow the SRE workbook's multiwindow
alerts (https://sre.google/workbook/alerting-on-slos/).
"""

from __future__ import annotations

from observe.generate.rules import recording as R
from observe.generate.rules.catalogue.base import Fleet
from observe.generate.rules.model import Alert, Group, Record, num

# -- Kubernetes control plane and nodes (API server, kube-state-metrics) -------------------------------


def kubernetes_recording(f: Fleet) -> Group:
    sel = f.cfg.alerts.apiserver_selector
    rules = [
        Record(
            name,
            f'sum by (cluster) (rate(apiserver_request_total{{{sel}, code=~"5.."}}[{w}]))\n'
            f"/\nsum by (cluster) (rate(apiserver_request_total{{{sel}}}[{w}]))",
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
    slo = f"{a.apiserver_availability_slo:.4g}"
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
                f"({ratio['1h']} > {num(14.4 * budget)})\nand on (cluster)\n"
                f"({ratio['5m']} > {num(14.4 * budget)})",
                "critical",
                "platform",
                "The API server of cluster {{ $labels.cluster }} burns its error budget fast",
                burn + f"the 30-day budget of a {slo} availability SLO is gone in about 2 days.",
                "cluster",
                for_=a.apiserver_burn_critical_for,
            ),
            Alert(
                "KubeAPIServerErrorBudgetBurn",
                f"({ratio['6h']} > {num(6 * budget)})\nand on (cluster)\n"
                f"({ratio['30m']} > {num(6 * budget)})",
                "warning",
                "platform",
                "The API server of cluster {{ $labels.cluster }} burns its error budget",
                burn + f"the 30-day budget of a {slo} availability SLO is gone in about 5 days.",
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
