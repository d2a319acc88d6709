"""Names of the recording rules the generator emits: a public contract, imported by the dashboards.

Names follow Prometheus' `level:metric:operations` convention
(https://prometheus.io/docs/practices/rules/#naming-and-aggregation). Every series carries the cluster
label (`cluster` unless the config's `cluster_label` says otherwise).
"""

from __future__ import annotations

from typing import Final

# The fleet inventory: one series of value 1 per configured cluster, carrying the cluster, the collector's
# `self_cluster` and the cluster's static labels (region, provider, env...). "Missing" alerts are written
# as `inventory unless on (cluster) <healthy signal>`, so each carries the cluster that went missing.
CLUSTER_EXPECTED: Final = "fleet:cluster_expected:info"  # every configured cluster
CLUSTER_METRICS_EXPECTED: Final = "fleet:cluster_metrics_expected:info"  # clusters with a prometheus source
CLUSTER_LOGS_EXPECTED: Final = "fleet:cluster_logs_expected:info"  # clusters with a loki source

# Logs (Loki ruler recording rules, remote-written to the central Prometheus by the Loki ruler).
CLUSTER_LOG_LINES_RATE: Final = "fleet:cluster_log_lines:rate5m"
CLUSTER_LOG_BYTES_RATE: Final = "fleet:cluster_log_bytes:rate5m"
CLUSTER_LOG_ERROR_LINES_RATE: Final = "fleet:cluster_log_error_lines:rate5m"

# Kubernetes API server availability: the 5xx share of requests over each burn-rate window.
APISERVER_ERROR_RATIO: Final[dict[str, str]] = {
    w: f"cluster:apiserver_request_errors:ratio_rate{w}" for w in ("5m", "30m", "1h", "6h")
}
NODES_NOT_READY_RATIO: Final = "cluster:kube_nodes_not_ready:ratio"

# Capacity, by `resource` (cpu in cores, memory in bytes); requests count Pending and Running pods only.
REQUESTS: Final = "cluster:kube_pod_resource_requests:sum"
ALLOCATABLE: Final = "cluster:kube_node_allocatable:sum"
ALLOCATABLE_FREE: Final = "cluster:kube_node_allocatable_free:sum"
# N-1: for cluster X, the free allocatable of the other clusters of its failover pool.
FAILOVER_PEERS_FREE: Final = "fleet:failover_peers_allocatable_free:sum"

# Istio, client side (reporter="source"), per cluster.
ISTIO_REQUESTS_RATE: Final = "cluster:istio_requests:rate5m"
ISTIO_CROSS_CLUSTER_RATE: Final = "cluster:istio_requests_cross_cluster:rate5m"
ISTIO_CROSS_CLUSTER_ERRORS_RATE: Final = "cluster:istio_requests_cross_cluster_errors:rate5m"

ALL: Final[tuple[str, ...]] = (
    CLUSTER_EXPECTED,
    CLUSTER_METRICS_EXPECTED,
    CLUSTER_LOGS_EXPECTED,
    CLUSTER_LOG_LINES_RATE,
    CLUSTER_LOG_BYTES_RATE,
    CLUSTER_LOG_ERROR_LINES_RATE,
    *APISERVER_ERROR_RATIO.values(),
    NODES_NOT_READY_RATIO,
    REQUESTS,
    ALLOCATABLE,
    ALLOCATABLE_FREE,
    FAILOVER_PEERS_FREE,
    ISTIO_REQUESTS_RATE,
    ISTIO_CROSS_CLUSTER_RATE,
    ISTIO_CROSS_CLUSTER_ERRORS_RATE,
)
