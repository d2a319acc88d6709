"""The add-ons a fleet alerts on, as a simulated cluster exports them (upstream names and labels).

- Istio standard metrics (https://istio.io/latest/docs/reference/config/metrics/): `istio_requests_total`;
- Velero (`pkg/metrics/metrics.go` in vmware-tanzu/velero). Velero exports no backup-storage-location
  metric: alerting on BSL availability needs kube-state-metrics custom resource state, not simulated;
- Argo CD (https://argo-cd.readthedocs.io/en/stable/operator-manual/metrics/);
- k8gb (https://github.com/k8gb-io/k8gb/blob/master/docs/metrics.md).
"""

from __future__ import annotations

from observe.demo.series import (
    ALWAYS,
    BACKUP_LAST_STATUS,
    BACKUP_LAST_SUCCESS,
    BACKUP_RUNS,
    CONST,
    COUNTER,
    STATE,
    WHEN_HEALTHY,
    WHEN_UNHEALTHY,
    SeriesTable,
)
from observe.demo.topology import K8S_VERSION, Deployment, Draw, Pod, Topology, add_up


def istio(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """Istio's `istio_requests_total` from the sidecars, with east-west traffic to and from the peers."""
    t.family("istio_requests_total", "counter", "requests_total")
    by_ns: dict[str, list[Deployment]] = {}
    for d in topo.deployments:
        if d.namespace in topo.user_namespaces:
            by_ns.setdefault(d.namespace, []).append(d)

    def edge(
        proxy: Pod,
        proxy_ns: str,
        reporter: str,
        src: tuple[str, str, str],
        dst: tuple[str, str, str],
        rate: float,
    ) -> None:
        # Only what this cluster serves fails during its outage; calls to a healthy peer do not.
        ours = dst[2] == topo.name
        for code, ok_share, down_share in (
            ("200", 0.99, 0.6),
            ("404", 0.008, 0.008),
            ("503", 0.002, 0.35),
        ):
            labels = {
                "job": "envoy-stats", "instance": f"{proxy.ip}:15090", "namespace": proxy_ns,
                "pod": proxy.name, "reporter": reporter, "source_workload": src[0],
                "source_workload_namespace": src[1], "source_cluster": src[2],
                "destination_workload": dst[0],
                "destination_workload_namespace": dst[1],
                "destination_service": f"{dst[0]}.{dst[1]}.svc.cluster.local",
                "destination_service_name": dst[0], "destination_service_namespace": dst[1],
                "destination_cluster": dst[2], "request_protocol": "http",
                "response_code": code, "response_flags": "-", "connection_security_policy": "mutual_tls",
            }  # fmt: skip
            params = draw.counter(
                rate * ok_share * 86400, rate * ok_share, rate * (down_share if ours else ok_share)
            )
            t.add("istio_requests_total", labels, COUNTER, params)

    for ns, deps in by_ns.items():
        for i, d in enumerate(deps):
            src = (
                ("istio-ingressgateway", "istio-system", topo.name)
                if i == 0
                else (deps[i - 1].name, ns, topo.name)
            )
            edge(d.pods[0], ns, "destination", src, (d.name, ns, topo.name), draw.rng.uniform(2, 40))
    ns, deps = next(iter(by_ns.items()))
    api = deps[0]
    for peer in topo.peers:
        # East-west traffic: our first service calls its twin in each peer (our sidecar reports it as
        # source), and each peer's twin calls ours (our sidecar reports it as destination).
        edge(
            api.pods[0],
            ns,
            "source",
            (api.name, ns, topo.name),
            (api.name, ns, peer),
            draw.rng.uniform(0.5, 5),
        )
        edge(
            api.pods[0],
            ns,
            "destination",
            (api.name, ns, peer),
            (api.name, ns, topo.name),
            draw.rng.uniform(0.5, 5),
        )


def velero(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """Velero's backup metrics for a daily and an hourly schedule; runs started in an outage fail."""
    velero = topo.pod("velero", "velero")
    target = {"job": "velero", "instance": f"{velero.ip}:8085"}
    add_up(t, "velero", target["instance"])
    fams = {
        "velero_backup_last_successful_timestamp": (
            "gauge",
            "Last time a backup ran successfully, Unix timestamp in seconds",
        ),
        "velero_backup_attempt_total": ("counter", "Total number of attempted backups"),
        "velero_backup_success_total": ("counter", "Total number of successful backups"),
        "velero_backup_failure_total": ("counter", "Total number of failed backups"),
        "velero_backup_partial_failure_total": ("counter", "Total number of partially failed backups"),
        "velero_backup_last_status": (
            "gauge",
            "Last status of the backup. A value of 1 is success, 0 is failure",
        ),
        "velero_backup_total": ("gauge", "Current number of existent backups"),
    }
    for name, (type_, help_) in fams.items():
        t.family(name, type_, help_)
    t.add("velero_backup_total", target, CONST, (float(7 + 48),))  # 7 daily + 48 hourly kept
    for schedule, period, duration in (
        ("daily-full", 86400.0, 900.0),
        ("hourly-resources", 3600.0, 90.0),
    ):
        offset = draw.rng.uniform(0, period - duration)
        p = (period, offset, duration)
        s = {**target, "schedule": schedule}
        t.add("velero_backup_last_successful_timestamp", s, BACKUP_LAST_SUCCESS, p)
        t.add("velero_backup_attempt_total", s, BACKUP_RUNS, (*p, 0.0))
        t.add("velero_backup_success_total", s, BACKUP_RUNS, (*p, 1.0))
        t.add("velero_backup_failure_total", s, BACKUP_RUNS, (*p, 2.0))
        t.add("velero_backup_partial_failure_total", s, CONST, (0.0,))
        t.add("velero_backup_last_status", s, BACKUP_LAST_STATUS, p)


def argocd(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """Argo CD's application controller: one app per namespace, Degraded while its pods crash-loop."""
    ctrl = topo.pod("argocd", "argocd-application-controller")
    target = {"job": "argocd-metrics", "instance": f"{ctrl.ip}:8082"}
    add_up(t, "argocd-metrics", target["instance"])
    t.family("argocd_app_info", "gauge", "Information about application.")
    t.family("argocd_app_sync_total", "counter", "Number of application syncs.")
    t.family("argocd_cluster_connection_status", "gauge", "The k8s cluster current connection status.")
    server = "https://kubernetes.default.svc"
    t.add(
        "argocd_cluster_connection_status",
        {**target, "server": server, "k8s_version": K8S_VERSION[1:5]},
        STATE,
        (1.0, 0.0),
    )
    apps: dict[str, bool] = {}
    for d in topo.deployments:
        apps[d.namespace] = apps.get(d.namespace, False) or any(p.crashes for p in d.pods)
    for ns, degrades in apps.items():
        app = {
            **target, "name": ns, "namespace": "argocd",
            "project": "apps" if ns in topo.user_namespaces else "platform",
            "repo": f"https://git.example.com/fleet/{ns}.git", "dest_server": server,
            "dest_namespace": ns,
        }  # fmt: skip
        healthy = {**app, "sync_status": "Synced", "health_status": "Healthy"}
        t.add("argocd_app_info", healthy, CONST, (1.0,), presence=WHEN_HEALTHY if degrades else ALWAYS)
        if degrades:  # the app's status labels change, so its series is replaced, as Argo CD's is
            degraded = {**app, "sync_status": "Synced", "health_status": "Degraded"}
            t.add("argocd_app_info", degraded, CONST, (1.0,), presence=WHEN_UNHEALTHY)
        sync = {k: app[k] for k in ("job", "instance", "name", "namespace", "project", "dest_server")}
        t.add(
            "argocd_app_sync_total",
            {**sync, "phase": "Succeeded"},
            COUNTER,
            draw.counter(500, 1 / 900, 0.0),
        )
        t.add("argocd_app_sync_total", {**sync, "phase": "Failed"}, COUNTER, draw.counter(2, 0.0, 1 / 180))


def k8gb(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """k8gb's GSLB metrics: two ingress IPs per cluster; an unhealthy cluster withdraws its own."""
    k8gb = topo.pod("k8gb", "k8gb")
    target = {"job": "k8gb", "instance": f"{k8gb.ip}:8383"}
    add_up(t, "k8gb", target["instance"])
    t.family("k8gb_gslb_healthy_records", "gauge", "Number of healthy records observed by k8gb.")
    t.family("k8gb_gslb_service_status_num", "gauge", "Number of managed hosts observed by k8gb.")
    t.family("k8gb_gslb_reconciliation_loops_total", "counter", "Number of successful reconciliation loops.")
    t.family("k8gb_gslb_errors_total", "counter", "Number of errors")
    t.family("k8gb_endpoint_status_num", "gauge", "Number of targets in DNS endpoint.")
    clusters = 1 + len(topo.peers)
    for ns in topo.user_namespaces:
        g = {**target, "namespace": ns, "name": f"{ns}-gslb"}
        # two ingress IPs per cluster; an unhealthy cluster withdraws its own
        t.add("k8gb_gslb_healthy_records", g, STATE, (2.0 * clusters, 2.0 * (clusters - 1)))
        t.add("k8gb_gslb_service_status_num", {**g, "status": "Healthy"}, STATE, (1.0, 0.0))
        t.add("k8gb_gslb_service_status_num", {**g, "status": "Unhealthy"}, STATE, (0.0, 1.0))
        t.add("k8gb_gslb_service_status_num", {**g, "status": "NotFound"}, CONST, (0.0,))
        t.add("k8gb_gslb_reconciliation_loops_total", g, COUNTER, draw.counter(10_000, 1 / 30))
        t.add("k8gb_gslb_errors_total", g, COUNTER, draw.counter(0, 0.0, 1 / 30))
        t.add(
            "k8gb_endpoint_status_num",
            {**g, "dns_name": f"{ns}.cloud.example.com"},
            STATE,
            (2.0 * clusters, 2.0 * (clusters - 1)),
        )
