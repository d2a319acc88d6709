"""The Kubernetes core exporters of a simulated cluster, with the upstream metric names and labels.

- kube-state-metrics v2 (https://github.com/kubernetes/kube-state-metrics/tree/main/docs/metrics);
- node-exporter (https://github.com/prometheus/node_exporter), `instance` relabelled to the node name
  as kube-prometheus does;
- cAdvisor via the kubelet (`job="kubelet"`, `metrics_path="/metrics/cadvisor"`);
- kube-apiserver (https://kubernetes.io/docs/reference/instrumentation/metrics/).
"""

from __future__ import annotations

import math
from typing import Final

from observe.demo.series import (
    ALWAYS,
    CONST,
    COUNTER,
    GAUGE,
    STATE,
    WHEN_HEALTHY,
    WHEN_UNHEALTHY,
    SeriesTable,
    format_value,
)
from observe.demo.topology import K8S_VERSION, Draw, Topology, add_up

_PHASES: Final = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_CONDITIONS: Final = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
# node_cpu_seconds_total: share of each CPU second per mode (sums to 1)
_CPU_MODES: Final = (
    ("idle", 0.62), ("user", 0.24), ("system", 0.08), ("iowait", 0.02), ("softirq", 0.015), ("irq", 0.005),
    ("steal", 0.005), ("nice", 0.015),
)  # fmt: skip
# kube-apiserver's apiserver_request_duration_seconds buckets (k8s >= 1.23)
_APISERVER_BUCKETS: Final = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0,
)  # fmt: skip
# verb -> (requests/s at scale 1, success code, scope, median latency s); WATCH has no latency histogram
# here because its duration is the watch's lifetime, which every SLO rule excludes anyway.
_VERBS: Final = {
    "GET": (8.0, "200", "resource", 0.012),
    "LIST": (1.5, "200", "namespace", 0.06),
    "WATCH": (0.2, "200", "namespace", 0.0),
    "POST": (0.6, "201", "namespace", 0.03),
    "PUT": (0.4, "200", "resource", 0.03),
    "PATCH": (1.2, "200", "resource", 0.025),
    "DELETE": (0.2, "200", "resource", 0.03),
}
# resource -> (API group, share of requests)
_RESOURCES: Final = {
    "pods": ("", 1.0),
    "nodes": ("", 0.3),
    "configmaps": ("", 0.5),
    "secrets": ("", 0.4),
    "deployments": ("apps", 0.3),
    "leases": ("coordination.k8s.io", 1.5),
}


def kube_state_metrics(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """kube-state-metrics v2: nodes, pods, containers, deployments."""
    ksm = topo.pod("monitoring", "kube-state-metrics")
    target = {"job": "kube-state-metrics", "instance": f"{ksm.ip}:8080"}
    add_up(t, target["job"], target["instance"])
    t.family("kube_node_info", "gauge", "Information about a cluster node.")
    t.family("kube_node_status_condition", "gauge", "The condition of a cluster node.")
    t.family("kube_node_status_allocatable", "gauge", "The allocatable for different resources of a node.")
    t.family("kube_node_status_capacity", "gauge", "The capacity for different resources of a node.")
    for n in topo.nodes:
        t.add(
            "kube_node_info",
            {
                **target, "node": n.name, "internal_ip": n.ip, "kernel_version": "6.1.0-21-cloud-amd64",
                "os_image": "Debian GNU/Linux 12 (bookworm)", "container_runtime_version": "containerd://1.7.13",
                "kubelet_version": K8S_VERSION, "kubeproxy_version": K8S_VERSION,
                "pod_cidr": f"10.{topo.net}.{64 + n.index % 190}.0/24",
                "provider_id": f"sim://{topo.name}/{n.zone}/{n.name}",
            },
            CONST,
            (1.0,),
        )  # fmt: skip
        for cond in _CONDITIONS:
            ok = "true" if cond == "Ready" else "false"
            for status in ("true", "false", "unknown"):
                healthy_v = 1.0 if status == ok else 0.0
                # a NotReady node stops posting status: every condition turns Unknown
                down_v = (1.0 if status == "unknown" else 0.0) if n.failing else healthy_v
                t.add(
                    "kube_node_status_condition",
                    {**target, "node": n.name, "condition": cond, "status": status},
                    STATE,
                    (healthy_v, down_v),
                )
        for fam, reserve in (("kube_node_status_capacity", 0.0), ("kube_node_status_allocatable", 0.08)):
            t.add(
                fam,
                {**target, "node": n.name, "resource": "cpu", "unit": "core"},
                CONST,
                (n.cpus - reserve,),
            )
            t.add(
                fam,
                {**target, "node": n.name, "resource": "memory", "unit": "byte"},
                CONST,
                (float(n.memory - (int(reserve * 10 * 2**30) if reserve else 0)),),
            )
            t.add(fam, {**target, "node": n.name, "resource": "pods", "unit": "integer"}, CONST, (110.0,))

    t.family("kube_pod_info", "gauge", "Information about pod.")
    t.family("kube_pod_status_phase", "gauge", "The pods current phase.")
    t.family(
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
    )
    t.family(
        "kube_pod_container_status_restarts_total",
        "counter",
        "The number of container restarts per container.",
    )
    t.family(
        "kube_pod_container_status_waiting_reason",
        "gauge",
        "Describes the reason the container is currently in waiting state.",
    )
    t.family("kube_deployment_spec_replicas", "gauge", "Number of desired pods for a deployment.")
    t.family(
        "kube_deployment_status_replicas_available",
        "gauge",
        "The number of available replicas per deployment.",
    )
    for d in topo.deployments:
        for p in d.pods:
            pod = {**target, "namespace": d.namespace, "pod": p.name, "uid": p.uid}
            t.add(
                "kube_pod_info",
                {**pod, "node": p.node.name, "host_ip": p.node.ip, "pod_ip": p.ip,
                 "created_by_kind": "ReplicaSet",
                 "created_by_name": p.name.rsplit("-", 1)[0]},
                CONST,
                (1.0,),
            )  # fmt: skip
            for phase in _PHASES:
                t.add(
                    "kube_pod_status_phase",
                    {**pod, "phase": phase},
                    CONST,
                    (1.0 if phase == "Running" else 0.0,),
                )
            ctr = {**pod, "container": p.container}
            t.add(
                "kube_pod_container_resource_requests",
                {**ctr, "node": p.node.name, "resource": "cpu", "unit": "core"},
                CONST,
                (p.cpu,),
            )
            t.add(
                "kube_pod_container_resource_requests",
                {**ctr, "node": p.node.name, "resource": "memory", "unit": "byte"},
                CONST,
                (float(p.memory),),
            )
            base_restarts = float(draw.rng.choice((0, 0, 0, 0, 1, 2)))
            # CrashLoopBackOff restarts about once a minute at first (backoff 10s, 20s, 40s...)
            t.add(
                "kube_pod_container_status_restarts_total",
                ctr,
                COUNTER,
                draw.counter(base_restarts, 0.0, 1 / 60 if p.crashes else 0.0),
            )
            if p.crashes:
                t.add(
                    "kube_pod_container_status_waiting_reason",
                    {**ctr, "reason": "CrashLoopBackOff"},
                    CONST,
                    (1.0,),
                    presence=WHEN_UNHEALTHY,
                )
        dep = {**target, "namespace": d.namespace, "deployment": d.name}
        crashing = sum(p.crashes for p in d.pods)
        t.add("kube_deployment_spec_replicas", dep, CONST, (float(len(d.pods)),))
        t.add(
            "kube_deployment_status_replicas_available",
            dep,
            STATE,
            (float(len(d.pods)), float(len(d.pods) - crashing)),
        )


def node_exporter(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """node-exporter on every node; the failing node's series vanish during an outage."""
    t.family("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.")
    t.family("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes.")
    t.family("node_memory_MemAvailable_bytes", "gauge", "Memory information field MemAvailable_bytes.")
    t.family("node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users in bytes.")
    t.family("node_filesystem_size_bytes", "gauge", "Filesystem size in bytes.")
    t.family("node_load1", "gauge", "1m load average.")
    for n in topo.nodes:
        target = {
            "job": "node-exporter",
            "instance": n.name,
        }  # kube-prometheus relabels instance to the node
        add_up(t, "node-exporter", n.name, failing=n.failing)
        presence = WHEN_HEALTHY if n.failing else ALWAYS
        busy = draw.rng.uniform(0.6, 1.4)
        for cpu in range(n.cpus):
            for mode, share in _CPU_MODES:
                rate = share * (busy if mode != "idle" else 1.0)
                rate = rate if mode != "idle" else max(0.05, 1 - (1 - share) * busy)
                # boot ~30 days before the epoch: the counters hold a month of CPU time already
                t.add(
                    "node_cpu_seconds_total",
                    {**target, "cpu": str(cpu), "mode": mode},
                    COUNTER,
                    draw.counter(rate * 30 * 86400, rate, integer=False),
                    presence=presence,
                )
        t.add("node_memory_MemTotal_bytes", target, CONST, (float(n.memory),), presence=presence)
        t.add(
            "node_memory_MemAvailable_bytes",
            target,
            GAUGE,
            draw.gauge(n.memory * draw.rng.uniform(0.3, 0.6), 0.1, integer=True),
            presence=presence,
        )
        for device, mount, size in (
            ("/dev/nvme0n1p1", "/", 100 * 2**30),
            ("/dev/nvme1n1", "/var/lib/kubelet", 200 * 2**30),
        ):
            fs = {**target, "device": device, "fstype": "ext4", "mountpoint": mount}
            t.add("node_filesystem_size_bytes", fs, CONST, (float(size),), presence=presence)
            t.add(
                "node_filesystem_avail_bytes",
                fs,
                GAUGE,
                draw.gauge(size * draw.rng.uniform(0.25, 0.7), 0.02, integer=True),
                presence=presence,
            )
        t.add("node_load1", target, GAUGE, draw.gauge(n.cpus * 0.4 * busy, 0.3), presence=presence)


def cadvisor(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """cAdvisor through each kubelet's `/metrics/cadvisor`: one container per pod."""
    t.family("container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed in seconds.")
    t.family("container_memory_working_set_bytes", "gauge", "Current working set in bytes.")
    for n in topo.nodes:
        add_up(t, "kubelet", f"{n.ip}:10250", failing=n.failing)
    for d in topo.deployments:
        for p in d.pods:
            labels = {
                "job": "kubelet", "instance": f"{p.node.ip}:10250", "metrics_path": "/metrics/cadvisor",
                "node": p.node.name, "namespace": d.namespace, "pod": p.name, "container": p.container,
                "image": p.image,
                "id": f"/kubepods/burstable/pod{p.uid}/{draw.rng.getrandbits(64):016x}",
            }  # fmt: skip
            presence = WHEN_HEALTHY if p.node.failing else ALWAYS
            use = p.cpu * draw.rng.uniform(0.2, 1.1)
            t.add(
                "container_cpu_usage_seconds_total",
                labels,
                COUNTER,
                draw.counter(use * 86400, use, integer=False),
                presence=presence,
            )
            t.add(
                "container_memory_working_set_bytes",
                labels,
                GAUGE,
                draw.gauge(p.memory * draw.rng.uniform(0.4, 0.95), 0.05, integer=True),
                presence=presence,
            )


def apiserver(t: SeriesTable, topo: Topology, draw: Draw) -> None:
    """kube-apiserver request counts by code and latency histograms (upstream buckets)."""
    t.family(
        "apiserver_request_total",
        "counter",
        "Counter of apiserver requests broken out for each verb, dry run value, group, version, "
        "resource, scope, component, and HTTP response code.",
    )
    t.family(
        "apiserver_request_duration_seconds",
        "histogram",
        "Response latency distribution in seconds for each verb, dry run value, group, version, "
        "resource, subresource, scope and component.",
    )
    control_plane = topo.nodes[: 1 if len(topo.nodes) < 5 else 3]
    scale = max(1.0, len(topo.deployments) / 10)
    for cp in control_plane:
        target = {"job": "apiserver", "instance": f"{cp.ip}:6443"}
        add_up(t, "apiserver", target["instance"])
        for verb, (verb_rate, ok_code, scope, median) in _VERBS.items():
            for resource, (group, share) in _RESOURCES.items():
                base = {
                    **target,
                    "component": "apiserver",
                    "resource": resource,
                    "scope": scope,
                    "verb": verb,
                    "version": "v1",
                }
                if group:
                    base["group"] = group
                rate = verb_rate * share * scale / len(control_plane)
                codes = {ok_code: (0.985, 0.5)}
                if verb == "GET":
                    codes["404"] = (0.01, 0.01)
                if verb in ("PUT", "PATCH"):
                    codes["409"] = (0.01, 0.01)
                codes["500"] = (0.0005, 0.2)
                codes["503"] = (0.0005, 0.3)
                for code, (ok_share, down_share) in codes.items():
                    t.add(
                        "apiserver_request_total",
                        {**base, "code": code},
                        COUNTER,
                        draw.counter(rate * ok_share * 86400, rate * ok_share, rate * down_share),
                    )
                if not median:
                    continue
                # One request stream; its latency is log-normal (sigma 0.9), 20x slower during an outage.
                period, phase = draw.period(), draw.phase()

                def cdf(le: float, med: float) -> float:
                    return 0.5 * (1 + math.erf((math.log(le) - math.log(med)) / (0.9 * math.sqrt(2))))

                for le in (*_APISERVER_BUCKETS, math.inf):
                    ok_f = 1.0 if le == math.inf else cdf(le, median)
                    down_f = 1.0 if le == math.inf else cdf(le, median * 20)
                    t.add(
                        "apiserver_request_duration_seconds",
                        {**base, "le": format_value(le)},
                        COUNTER,
                        (rate * ok_f * 86400, rate * ok_f, rate * down_f, period, phase, 1.0),
                        suffix="_bucket",
                    )
                mean_ok = median * math.exp(0.9**2 / 2)
                t.add(
                    "apiserver_request_duration_seconds",
                    base,
                    COUNTER,
                    (rate * 86400, rate, rate, period, phase, 1.0),
                    suffix="_count",
                )
                t.add(
                    "apiserver_request_duration_seconds",
                    base,
                    COUNTER,
                    (rate * mean_ok * 86400, rate * mean_ok, rate * mean_ok * 20, period, phase, 0.0),
                    suffix="_sum",
                )
