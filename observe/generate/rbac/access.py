"""What observe calls in each workload cluster, read from the config: `ClusterAccess` (a cluster reached
through its API server) with its `ProxiedService`s (a segment and the HTTP methods sent to it), and
`Identity`, who is granted.

Verbs of a proxied request: https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from observe.config import Config
from observe.kube.service_ref import Scheme, ServiceRef

__all__ = [
    "ClusterAccess",
    "Identity",
    "ProxiedService",
    "cluster_access",
    "discovery_namespaces",
    "k8s_name",
]

# HTTP method -> RBAC verb of a proxied request (the request-verb table linked above).
_VERB: Final = {"GET": "get", "POST": "create"}
# What observe sends to a Prometheus, by `prometheus.protocol`, and why (for the Role's comment). `auto`
# tries remote-read and falls back to federation. `remote_read` sends no GET today but keeps `get`, the
# proxy's read verb: one Role then serves a switch to `auto`, and it grants no write on Prometheus.
_PROMETHEUS: Final = {
    "federate": (("GET",), "prometheus: federation, GET /federate"),
    "remote_read": (("GET", "POST"), "prometheus: remote-read, POST /api/v1/read"),
    "auto": (
        ("GET", "POST"),
        "prometheus: remote-read, POST /api/v1/read, falling back to federation, GET /federate",
    ),
}
_LOKI: Final = (("GET",), "loki: GET /loki/api/v1/query_range and /loki/api/v1/series")

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def k8s_name(text: str) -> str:
    """`text` if it is a valid name for a ServiceAccount or namespace here (an RFC 1123 label, which both
    accept); a ValueError otherwise (the CLI reports it as a usage error, exit 2)."""
    if not _DNS_LABEL.match(text):
        raise ValueError(f"not a Kubernetes name (lower case letters, digits, '-', at most 63): {text!r}")
    return text


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is granted: the ServiceAccount observe uses in every workload cluster, and the collector's own
    ServiceAccount in the management cluster (deploy/kubernetes/observe.yaml) for discovery."""

    service_account: str = "observe-reader"
    namespace: str = "observe"
    collector_service_account: str = "observe"
    collector_namespace: str = "observe"

    def __post_init__(self) -> None:
        for value in (self.service_account, self.namespace, self.collector_service_account,
                      self.collector_namespace):  # fmt: skip
            k8s_name(value)

    @property
    def token_secret(self) -> str:
        return f"{self.service_account}-token"


@dataclass(frozen=True, slots=True)
class ProxiedService:
    """One service observe calls through the API server proxy, and the HTTP methods it sends."""

    ref: ServiceRef
    methods: tuple[str, ...]  # sorted: ("GET",) or ("GET", "POST")
    pin_pod: bool = False  # through one ready pod (pods/proxy), found in the service's endpoints
    what: str = ""  # for the comments: "loki: GET /loki/api/v1/query_range ..."

    @property
    def verbs(self) -> list[str]:
        return sorted({_VERB[m] for m in self.methods})


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    """A workload cluster reached through its API server and every service observe calls there."""

    cluster: str
    context: str  # the context name in the kubeconfig (`kubernetes.context`, else the cluster's name)
    services: tuple[ProxiedService, ...]
    kubeconfig: str | None = None  # where the config expects the filled kubeconfig, if it says
    api_server: bool = False  # the config gives `kubernetes.api_server` and a token file, not a kubeconfig

    @property
    def namespaces(self) -> list[str]:
        """The namespaces holding a proxied service, sorted: one Role and RoleBinding each."""
        return sorted({s.ref.namespace for s in self.services})


def cluster_access(cfg: Config) -> list[ClusterAccess]:
    """Every cluster with `kubernetes:` and at least one `service:`-named source, in config order.

    Read with getattr: `kubernetes`, `service`, `scheme` and `pin_pod` are newer than some configs this
    module is built against, and a source reached by `url` is not proxied and needs no grant."""
    out: list[ClusterAccess] = []
    for cluster in cfg.clusters:
        kube = getattr(cluster, "kubernetes", None)
        if kube is None:
            continue
        services: list[ProxiedService] = []
        prom = cluster.prometheus
        if prom is not None and (ref := _service_ref(prom)) is not None:
            methods, what = _PROMETHEUS[getattr(prom, "protocol", "auto")]
            services.append(ProxiedService(ref, methods, _pin_pod(prom), what))
        loki = cluster.loki
        if loki is not None and (ref := _service_ref(loki)) is not None:
            methods, what = _LOKI
            services.append(ProxiedService(ref, methods, _pin_pod(loki), what))
        if services:
            context = getattr(kube, "context", None) or cluster.name
            kubeconfig = getattr(kube, "kubeconfig", None)
            out.append(ClusterAccess(cluster.name, str(context), tuple(services),
                                     None if kubeconfig is None else str(kubeconfig),
                                     getattr(kube, "api_server", None) is not None))  # fmt: skip
    return out


def discovery_namespaces(cfg: Config) -> list[str]:
    """The Argo CD and Cluster API namespaces a `discovery:` section names (sorted, unique); none without
    one. Read defensively: `discovery.argocd.namespace(s)` and `discovery.cluster_api.namespace(s)`, as
    attributes or mapping keys."""
    discovery = getattr(cfg, "discovery", None)
    found: set[str] = set()
    for source in ("argocd", "cluster_api"):
        section = _get(discovery, source)
        if not section or _get(section, "enabled") is False:
            continue
        single = _get(section, "namespace")
        many = _get(section, "namespaces") or ()
        found.update(str(ns) for ns in ([single] if single else []) + list(many))
    return sorted(found)


def _service_ref(src: object) -> ServiceRef | None:
    service = getattr(src, "service", None)
    if service is None:
        return None
    scheme: Scheme = getattr(src, "scheme", None) or (
        service.scheme if isinstance(service, ServiceRef) else "http"
    )
    # Re-parsed from its text with the source's scheme: the segment must be exactly the one observe calls.
    return ServiceRef.parse(str(service), scheme=scheme)


def _pin_pod(src: object) -> bool:
    return bool(getattr(src, "pin_pod", False))


def _get(obj: object, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)
