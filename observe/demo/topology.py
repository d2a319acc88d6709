"""What a simulated cluster is made of: nodes, namespaces, deployments and pods, with realistic names.

Built once from a seeded random source, so the same name and seed always give the same cluster. The
exporters in `kubernetes.py` and `addons.py` turn it into series; `Draw` gives them their constants
(rates, sizes, the phase and period of each series' daily-ish wobble) from the same source.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from typing import Final

from observe.demo.series import STATE, SeriesTable

_USER_NAMESPACES: Final = (
    "payments", "checkout", "catalog", "search", "accounts", "shipping", "notifications", "pricing",
    "inventory", "reviews", "media", "identity",
)  # fmt: skip
_ROLES: Final = ("api", "worker", "web", "cache", "scheduler", "gateway", "indexer", "consumer")
# (namespace, deployment, replicas, container, cpu request cores, memory request bytes)
SYSTEM_PODS: Final = (
    ("kube-system", "coredns", 2, "coredns", 0.1, 70 * 2**20),
    ("monitoring", "kube-state-metrics", 1, "kube-state-metrics", 0.1, 190 * 2**20),
    ("monitoring", "prometheus-k8s", 2, "prometheus", 0.5, 2 * 2**30),
    ("istio-system", "istiod", 1, "discovery", 0.5, 2 * 2**30),
    ("istio-system", "istio-ingressgateway", 2, "istio-proxy", 0.1, 128 * 2**20),
    ("velero", "velero", 1, "velero", 0.5, 128 * 2**20),
    ("argocd", "argocd-application-controller", 1, "argocd-application-controller", 0.25, 256 * 2**20),
    ("argocd", "argocd-server", 1, "argocd-server", 0.05, 64 * 2**20),
    ("k8gb", "k8gb", 1, "k8gb", 0.1, 32 * 2**20),
)
K8S_VERSION: Final = "v1.29.4"
_HASH_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


@dataclass
class Node:
    name: str
    ip: str
    cpus: int
    memory: int
    zone: str
    index: int
    failing: bool  # NotReady during an outage


@dataclass
class Pod:
    name: str
    uid: str
    ip: str
    node: Node
    container: str
    image: str
    cpu: float
    memory: int
    crashes: bool  # crash-loops during an outage


@dataclass
class Deployment:
    namespace: str
    name: str
    role: str
    pods: list[Pod] = field(default_factory=list)


@dataclass
class Topology:
    name: str
    peers: tuple[str, ...]
    net: int  # second octet of the cluster's 10.x.0.0/16
    nodes: list[Node]
    deployments: list[Deployment]
    user_namespaces: list[str]  # the application namespaces (not kube-system, monitoring, ...)

    def pod(self, namespace: str, deployment: str) -> Pod:
        """The first pod of a deployment (where its exporter runs)."""
        for d in self.deployments:
            if d.namespace == namespace and d.name == deployment:
                return d.pods[0]
        raise KeyError(f"{namespace}/{deployment}")


class Draw:
    """The seeded random source of a cluster's constants: value-kind parameter tuples for `SeriesTable`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def phase(self) -> float:
        return self.rng.uniform(0, 2 * math.pi)

    def period(self) -> float:
        return self.rng.uniform(300, 3600)

    def counter(
        self, base: float, rate: float, rate_down: float | None = None, *, integer: bool = True
    ) -> tuple[float, ...]:
        """COUNTER params: `base` at the epoch, `rate`/s while healthy, `rate_down`/s during an outage."""
        down = rate if rate_down is None else rate_down
        return (base, rate, down, self.period(), self.phase(), 1.0 if integer else 0.0)

    def gauge(
        self, base: float, amplitude: float = 0.05, down_factor: float = 1.0, *, integer: bool = False
    ) -> tuple[float, ...]:
        """GAUGE params: `base` ± `amplitude` (relative), times `down_factor` during an outage."""
        return (base, amplitude, self.period(), self.phase(), down_factor, 1.0 if integer else 0.0)


def add_up(t: SeriesTable, job: str, instance: str, *, failing: bool = False) -> None:
    """`up` for one scrape target; a failing target's is 0 during an outage."""
    t.family("up", "gauge", "1 if the target was scraped successfully, else 0.")
    t.add("up", {"job": job, "instance": instance}, STATE, (1.0, 0.0 if failing else 1.0))


def build_topology(
    name: str,
    *,
    nodes: int,
    namespaces: int,
    pods_per_namespace: int,
    cpus_per_node: int,
    peers: tuple[str, ...],
    rng: random.Random,
) -> Topology:
    net = 16 + zlib.crc32(name.encode()) % 200
    node_list = _nodes(name, nodes, cpus_per_node, net)
    deployments = _deployments(node_list, namespaces, pods_per_namespace, net, rng)
    system = {s[0] for s in SYSTEM_PODS}
    user = list(dict.fromkeys(d.namespace for d in deployments if d.namespace not in system))
    return Topology(name, peers, net, node_list, deployments, user)


def _suffix(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_HASH_ALPHABET) for _ in range(n))


def _uid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _nodes(name: str, count: int, cpus: int, net: int) -> list[Node]:
    zones = ("a", "b", "c")
    return [
        Node(
            name=f"{name}-node-{i:02d}",
            ip=f"10.{net}.{i // 250}.{10 + i % 250}",
            cpus=cpus,
            memory=cpus * 4 * 2**30,
            zone=f"zone-{zones[i % 3]}",
            index=i,
            failing=i == count - 1,  # the last node is the one that goes NotReady in an outage
        )
        for i in range(count)
    ]


def _deployments(
    nodes: list[Node], namespaces: int, pods_per_namespace: int, net: int, rng: random.Random
) -> list[Deployment]:
    out: list[Deployment] = []
    pod_counter = 0

    def add(namespace: str, name: str, role: str, replicas: int, image: str, cpu: float, mem: int) -> None:
        nonlocal pod_counter
        d = Deployment(namespace, name, role)
        rs = _suffix(rng, 10)
        for _ in range(replicas):
            node = nodes[pod_counter % len(nodes)]  # round-robin, as a spread scheduler roughly does
            pod_counter += 1
            d.pods.append(
                Pod(
                    name=f"{name}-{rs}-{_suffix(rng, 5)}",
                    uid=_uid(rng),
                    ip=f"10.{net}.{64 + node.index % 190}.{2 + pod_counter % 250}",
                    node=node,
                    container=role,
                    image=image,
                    cpu=cpu,
                    memory=mem,
                    crashes=False,
                )
            )
        out.append(d)

    for ns, name, replicas, container, cpu, mem in SYSTEM_PODS:
        image = f"registry.example.com/{ns}/{container}:v1.{rng.randint(0, 30)}.0"
        add(ns, name, container, replicas, image, cpu, mem)
    for i in range(namespaces):
        ns = _USER_NAMESPACES[i % len(_USER_NAMESPACES)]
        if i >= len(_USER_NAMESPACES):
            ns += f"-{i // len(_USER_NAMESPACES)}"
        remaining = pods_per_namespace
        k = 0
        first_in_ns = len(out)
        while remaining > 0:  # deployments of 3 replicas, the last one takes the remainder
            replicas = min(3, remaining)
            role = _ROLES[k % len(_ROLES)] + (f"-{k // len(_ROLES)}" if k >= len(_ROLES) else "")
            cpu = rng.choice((0.1, 0.25, 0.5, 1.0))
            mem = rng.choice((128, 256, 512, 1024, 2048)) * 2**20
            image = f"registry.example.com/{ns}/{role}:1.{rng.randint(0, 40)}.{k}"
            add(ns, f"{ns}-{role}", role, replicas, image, cpu, mem)
            remaining -= replicas
            k += 1
        # one container per namespace crash-loops during an outage: the second deployment's, if any
        victim = out[first_in_ns + 1] if len(out) > first_in_ns + 1 else out[first_in_ns]
        victim.pods[0].crashes = True
    return out
