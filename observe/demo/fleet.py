"""A simulated Kubernetes cluster: the series its Prometheus would hold, with realistic names and labels.

It stands in for a cluster in `observe demo`, in the tests (as the exporter a real "cluster" Prometheus
scrapes with `honor_labels: true`) and in the benchmark. The metric names and labels are the upstream
exporters' own, so generated alerts and dashboards can be checked against it:

- kube-state-metrics v2 (https://github.com/kubernetes/kube-state-metrics/tree/main/docs/metrics):
  `kube_node_info`, `kube_node_status_condition`, `kube_node_status_allocatable`, `kube_pod_info`,
  `kube_pod_status_phase`, `kube_pod_container_resource_requests`, `kube_pod_container_status_restarts_total`,
  `kube_pod_container_status_waiting_reason` (only for a waiting container, as v2 does),
  `kube_deployment_spec_replicas`, `kube_deployment_status_replicas_available`;
- node-exporter: `node_cpu_seconds_total`, `node_memory_MemAvailable_bytes`, `node_memory_MemTotal_bytes`,
  `node_filesystem_avail_bytes`, `node_filesystem_size_bytes`, `node_load1`;
- cAdvisor (kubelet `/metrics/cadvisor`): `container_cpu_usage_seconds_total`,
  `container_memory_working_set_bytes`;
- kube-apiserver: `apiserver_request_total`, `apiserver_request_duration_seconds` (histogram with the
  upstream buckets);
- Istio standard metrics (https://istio.io/latest/docs/reference/config/metrics/): `istio_requests_total`,
  with traffic to and from the `peers` clusters;
- Velero (`pkg/metrics/metrics.go`): `velero_backup_last_successful_timestamp`, `velero_backup_attempt_total`,
  `velero_backup_success_total`, `velero_backup_failure_total`, `velero_backup_partial_failure_total`,
  `velero_backup_last_status`, `velero_backup_total`. Velero exports no backup-storage-location metric;
  an alert on BSL availability needs kube-state-metrics custom resource state, not simulated here;
- Argo CD (https://argo-cd.readthedocs.io/en/stable/operator-manual/metrics/): `argocd_app_info`,
  `argocd_app_sync_total`, `argocd_cluster_connection_status`;
- k8gb (https://github.com/k8gb-io/k8gb/blob/master/docs/metrics.md): `k8gb_gslb_healthy_records`,
  `k8gb_gslb_service_status_num`, `k8gb_gslb_reconciliation_loops_total`, `k8gb_gslb_errors_total`,
  `k8gb_endpoint_status_num`;
- `up{job,instance}` for every target above.

An outage (`healthy=False`, or `fail(at)` ... `recover(at)`) makes the last node NotReady (its
node-exporter and kubelet go down, their series vanish), one container per namespace crash-loop, the
apiserver answer 5xx and slowly, services answer 503, backups fail, Argo CD apps turn Degraded and k8gb
withdraw the cluster's records. Everything is deterministic for a given name, seed and `now`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Final

from observe.demo import addons, kubernetes
from observe.demo.logs import SimulatedLogs
from observe.demo.series import Selector, SeriesTable, Timeline
from observe.demo.topology import Draw, build_topology

__all__ = ["DEFAULT_EPOCH", "SimulatedCluster"]

DEFAULT_EPOCH: Final = 1_704_067_200.0  # 2024-01-01T00:00:00Z: counters start here, so they look long-lived

# Each exporter adds its families to the table, in this order (the order of random draws, so of values).
_EXPORTERS: Final = (
    kubernetes.kube_state_metrics,
    kubernetes.node_exporter,
    kubernetes.cadvisor,
    kubernetes.apiserver,
    addons.istio,
    addons.velero,
    addons.argocd,
    addons.k8gb,
)


class SimulatedCluster:
    """One cluster's worth of series and log lines; `exposition(now)` and `federate(now, ...)` render the
    series, `logs.entries(start_ns, end_ns)` gives the lines (observe/demo/logs.py)."""

    def __init__(
        self,
        name: str,
        *,
        nodes: int = 3,
        namespaces: int = 4,
        pods_per_namespace: int = 6,
        seed: int = 0,
        healthy: bool = True,
        peers: Sequence[str] = (),
        cpus_per_node: int = 4,
        epoch: float = DEFAULT_EPOCH,
    ) -> None:
        if nodes < 1 or namespaces < 1 or pods_per_namespace < 1 or cpus_per_node < 1:
            raise ValueError(
                f"{name}: nodes, namespaces, pods_per_namespace and cpus_per_node must be >= 1 "
                f"(got {nodes}, {namespaces}, {pods_per_namespace}, {cpus_per_node})"
            )
        self.name = name
        self.nodes_count = nodes
        self.namespaces_count = namespaces
        self.pods_per_namespace = pods_per_namespace
        self.seed = seed
        self.peers = tuple(p for p in peers if p != name)
        self.timeline = Timeline(epoch, healthy=healthy)
        rng = random.Random(f"{name}/{seed}")  # a str seed hashes the same in every process
        self.topology = build_topology(
            name,
            nodes=nodes,
            namespaces=namespaces,
            pods_per_namespace=pods_per_namespace,
            cpus_per_node=cpus_per_node,
            peers=self.peers,
            rng=rng,
        )
        self.table = SeriesTable(self.timeline)
        draw = Draw(rng)
        for exporter in _EXPORTERS:
            exporter(self.table, self.topology, draw)
        self.table.freeze()
        self.logs = SimulatedLogs(self.topology, self.timeline)  # its pods' log lines, for SimulatedLoki

    # -- public -----------------------------------------------------------------------------------
    @classmethod
    def for_series_count(cls, name: str, n: int, **kwargs: object) -> SimulatedCluster:
        """A cluster with about `n` series (within ~2%), scaling nodes, namespaces and pods as a real
        cluster grows (100k series ≈ 50 nodes, 25 namespaces, 7,000 pods). Below ~1,500 series the
        smallest cluster is returned."""
        nodes = max(1, min(200, n // 2000))
        namespaces = max(1, min(400, n // 4000))

        def size(ppn: int) -> int:
            probe = cls(name, nodes=nodes, namespaces=namespaces, pods_per_namespace=ppn, **kwargs)  # type: ignore[arg-type]
            return probe.series_count(probe.timeline.epoch)

        # Series grow linearly in pods per namespace when that is a multiple of 3 (one deployment per 3 pods).
        a, b = size(3), size(6)
        per_step = max(1, (b - a) / 3)
        ppn = max(1, round((3 + (n - a) / per_step) / 3) * 3)
        return cls(name, nodes=nodes, namespaces=namespaces, pods_per_namespace=ppn, **kwargs)  # type: ignore[arg-type]

    @property
    def healthy(self) -> bool:
        return self.timeline.healthy

    def fail(self, at: float | None = None) -> None:
        """Start an outage at `at` (default: now)."""
        self.timeline.fail(time.time() if at is None else at)

    def recover(self, at: float | None = None) -> None:
        self.timeline.recover(time.time() if at is None else at)

    def series_count(self, now: float) -> int:
        return self.table.count(now)

    def exposition(self, now: float) -> str:
        """The text format 0.0.4 body an exporter would serve (no timestamps; HELP and TYPE lines)."""
        return self.table.exposition(now)

    def federate(
        self,
        now: float,
        *,
        external_labels: Mapping[str, str],
        job: str,
        instance: str,
        select: Selector | None = None,
        timestamp: float | None = None,
    ) -> str:
        """What `/federate?match[]={__name__=~".+"}` of a Prometheus scraping this cluster returns."""
        return self.table.federate(
            now,
            external_labels=external_labels,
            job=job,
            instance=instance,
            select=select,
            timestamp=timestamp,
        )


def _bench(n: int = 100_000) -> None:
    """`python -m observe.demo.fleet`: build and render a 100k-series cluster."""
    t0 = time.perf_counter()
    c = SimulatedCluster.for_series_count("bench", n)
    t1 = time.perf_counter()
    now = time.time()
    body = c.exposition(now)
    t2 = time.perf_counter()
    c.federate(now, external_labels={"prometheus": "monitoring/k8s"}, job="sim", instance="127.0.0.1:1")
    t3 = time.perf_counter()
    fed = c.federate(
        now + 15, external_labels={"prometheus": "monitoring/k8s"}, job="sim", instance="127.0.0.1:1"
    )
    t4 = time.perf_counter()
    print(
        f"{c.series_count(now):,} series ({len(body) / 2**20:.1f} MiB exposition, "
        f"{len(fed) / 2**20:.1f} MiB federate): build {t1 - t0:.2f}s, exposition {t2 - t1:.2f}s, "
        f"first federate {t3 - t2:.2f}s, cached federate {t4 - t3:.2f}s"
    )


if __name__ == "__main__":
    _bench()
