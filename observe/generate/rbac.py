"""`observe rbac`: the least-privilege grant a workload cluster gives observe when observe reads its
Prometheus and Loki through the cluster's API server (`clusters[].kubernetes` and `*.service`).

Kubernetes references:
  proxy URLs  https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/#manually-constructing-apiserver-proxy-urls
  RBAC        https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources
  verbs       https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb
  SA tokens   https://kubernetes.io/docs/concepts/configuration/secret/#serviceaccount-token-secrets

The facts this generator rests on:
  - A proxied request is authorised as the `proxy` subresource of the service (`services/proxy`) or pod
    (`pods/proxy`), with the verb of its HTTP method: GET -> `get`, POST -> `create`.
  - The resource name RBAC checks is the whole path segment, `[<scheme>:]<name>[:<port>]`:
    `resourceNames: ["prometheus-k8s"]` is a 403 for `services/http:prometheus-k8s:web/proxy/...`. Every
    name here is `ServiceRef.segment()`, the segment the collector itself writes.
  - Federation is a GET; remote-read is a POST (`protocol: auto` tries it first, `remote_read` only uses
    it); Loki's `query_range` and `series` are GETs.

Writes, under the output directory, for each cluster reached through its API server:
  <cluster>/rbac.yaml        Namespace, ServiceAccount, its token Secret, and in each namespace holding a
                             proxied service one Role and one RoleBinding; apply to that cluster
  <cluster>/kubeconfig.yaml  a kubeconfig for that ServiceAccount with placeholders, and how to fill them
and, when the config has a `discovery:` section naming Argo CD or Cluster API namespaces:
  _management/rbac.yaml      the management cluster's Roles to read cluster secrets there
(`_management` cannot clash with a cluster: cluster names start with a letter or digit.)

One multi-document file per cluster, not one per kind: a platform engineer applies and reviews one
cluster's whole grant as one file, and the documents are in apply order (the ServiceAccount before the
Secret and the RoleBindings that name it). The kubeconfig is apart because it is not applied to the
workload cluster: once filled it is a credential for the management cluster's Secret.

Rendering is pure: the same config renders the same bytes (sorted keys, documents in a fixed order).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from observe.config import Config
from observe.errors import ConfigError
from observe.kube.service_ref import Scheme, ServiceRef

__all__ = [
    "ClusterAccess",
    "Identity",
    "ProxiedService",
    "cluster_access",
    "cluster_manifests",
    "discovery_manifests",
    "discovery_namespaces",
    "k8s_name",
    "render_rbac",
    "write_rbac",
]

MANAGEMENT_DIR: Final = "_management"
RBAC_FILE: Final = "rbac.yaml"
KUBECONFIG_FILE: Final = "kubeconfig.yaml"
_LABELS: Final = {"app.kubernetes.io/name": "observe", "app.kubernetes.io/component": "rbac"}
_RBAC_API: Final = "rbac.authorization.k8s.io"

# HTTP method -> RBAC verb of a proxied request (the request-verb table linked above).
_VERB: Final = {"GET": "get", "POST": "create"}
# What observe sends to a Prometheus, by `prometheus.protocol`. `auto` tries remote-read (POST) and falls
# back to federation (GET). `remote_read` gets `get` too: the proxy's read verb, so one Role serves a later
# switch to `auto` and `kubectl get --raw` checks by the same identity; it grants no write on the backend.
_PROMETHEUS_METHODS: Final = {"federate": ("GET",), "remote_read": ("GET", "POST"), "auto": ("GET", "POST")}
_LOKI_METHODS: Final = ("GET",)  # query_range and series

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PLACEHOLDERS: Final = {"server": "__SERVER__", "ca": "__CA_DATA__", "token": "__TOKEN__"}


def k8s_name(text: str) -> str:
    """`text` if it is a valid name for a ServiceAccount or namespace here (an RFC 1123 label, which both
    accept); a ValueError otherwise (argparse turns it into a usage error)."""
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
    what: str = ""  # for the comments: "prometheus (protocol: auto)"

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
    namespaces: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespaces", tuple(sorted({s.ref.namespace for s in self.services})))


# ---- from the config ---------------------------------------------------------------------------------


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
            protocol = getattr(prom, "protocol", "auto")
            services.append(ProxiedService(ref, _PROMETHEUS_METHODS[protocol], _pin_pod(prom),
                                           f"prometheus (protocol: {protocol})"))  # fmt: skip
        loki = cluster.loki
        if loki is not None and (ref := _service_ref(loki)) is not None:
            services.append(ProxiedService(ref, _LOKI_METHODS, _pin_pod(loki), "loki"))
        if services:
            context = getattr(kube, "context", None) or cluster.name
            kubeconfig = getattr(kube, "kubeconfig", None)
            out.append(ClusterAccess(cluster.name, str(context), tuple(services),
                                     None if kubeconfig is None else str(kubeconfig)))  # fmt: skip
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
    scheme: Scheme = getattr(src, "scheme", None) or (service.scheme if isinstance(service, ServiceRef) else "http")
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


# ---- manifests ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """One PolicyRule and the reason for it, written as a comment above its Role."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    names: tuple[str, ...]  # () = every object of the resource in the namespace
    why: str

    def manifest(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"apiGroups": [self.group], "resources": [self.resource], "verbs": list(self.verbs)}
        if self.names:
            rule["resourceNames"] = list(self.names)
        return rule


def _rules(services: Iterable[ProxiedService]) -> list[_Rule]:
    """The rules of one namespace's Role. Services with the same verbs share one rule, so each rule names
    exactly the segments that may be called with its verbs and no more."""
    by_verbs: dict[tuple[str, ...], list[ProxiedService]] = {}
    pinned: list[ProxiedService] = []
    for s in services:
        by_verbs.setdefault(tuple(s.verbs), []).append(s)
        if s.pin_pod:
            pinned.append(s)
    rules = [
        _Rule("", "services/proxy", verbs, tuple(sorted({s.ref.segment() for s in group})),
              "; ".join(f"{s.what}: {'/'.join(s.methods)} through the service proxy" for s in group))
        for verbs, group in sorted(by_verbs.items())
    ]  # fmt: skip
    if pinned:
        names = tuple(sorted({s.ref.name for s in pinned}))
        what = ", ".join(sorted({s.what for s in pinned}))
        rules += [
            _Rule("", "endpoints", ("get",), names,
                  f"pin_pod ({what}): the service's ready pods, from its Endpoints (named as the service)"),
            _Rule("discovery.k8s.io", "endpointslices", ("list",), (),
                  "pin_pod: or from its EndpointSlices, listed by the label kubernetes.io/service-name; they "
                  "are named <service>-<random>, so RBAC cannot narrow this by name"),
            _Rule("", "pods/proxy", tuple(sorted({v for s in pinned for v in s.verbs})), (),
                  "pin_pod: the chosen pod through the pod proxy. Pod names are not known in advance (they "
                  "change with every rollout), so this cannot be narrowed by name: it reaches any pod in this "
                  "namespace. Keep Prometheus and Loki in namespaces of their own to bound it"),
        ]  # fmt: skip
    return rules


def cluster_manifests(access: ClusterAccess, identity: Identity) -> list[tuple[str, dict[str, Any]]]:
    """The documents of `<cluster>/rbac.yaml` in apply order, each with its comment."""
    sa, ns = identity.service_account, identity.namespace
    meta = {"labels": dict(_LABELS)}
    docs: list[tuple[str, dict[str, Any]]] = [
        (f"The namespace of observe's ServiceAccount ({ns}); kept if it exists.",
         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, **meta}}),
        ("The identity observe uses in this cluster. No pod runs as it, so no token is mounted anywhere.",
         {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
          "metadata": {"name": sa, "namespace": ns, **meta}}),
        (f"A long-lived token for {sa}, filled in by the token controller (Kubernetes 1.24+ creates none by\n"
         "itself). Delete this Secret to revoke it; re-apply for a new one.",
         {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
          "metadata": {"name": identity.token_secret, "namespace": ns,
                       "annotations": {"kubernetes.io/service-account.name": sa}, **meta}}),
    ]  # fmt: skip
    for namespace in access.namespaces:
        rules = _rules(s for s in access.services if s.ref.namespace == namespace)
        why = "\n".join(f"- {r.resource} {'/'.join(r.verbs)}: {r.why}" for r in rules)
        docs.append((
            f"What {sa} may do in {namespace}, rule by rule:\n{why}",
            {"apiVersion": f"{_RBAC_API}/v1", "kind": "Role",
             "metadata": {"name": sa, "namespace": namespace, **meta}, "rules": [r.manifest() for r in rules]},
        ))  # fmt: skip
        docs.append(("", _binding(sa, namespace, sa, ns)))
    return docs


def discovery_manifests(namespaces: Sequence[str], identity: Identity) -> list[tuple[str, dict[str, Any]]]:
    """The management cluster's Roles for discovery: read the cluster secrets in each namespace."""
    name = f"{identity.collector_service_account}-discovery"
    docs: list[tuple[str, dict[str, Any]]] = []
    for namespace in namespaces:
        docs.append((
            f"Discovery reads the cluster secrets in {namespace}: Argo CD's (label argocd.argoproj.io/secret-type:\n"
            "cluster) and Cluster API's (<cluster>-kubeconfig). It lists them by label and finds new clusters,\n"
            "so this cannot be narrowed by name: keep other secrets out of these namespaces, or give discovery\n"
            "a namespace of its own.",
            {"apiVersion": f"{_RBAC_API}/v1", "kind": "Role",
             "metadata": {"name": name, "namespace": namespace, "labels": dict(_LABELS)},
             "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]},
        ))  # fmt: skip
        docs.append(("", _binding(name, namespace, identity.collector_service_account, identity.collector_namespace)))
    return docs


def _binding(name: str, namespace: str, sa: str, sa_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{_RBAC_API}/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_LABELS)},
        "roleRef": {"apiGroup": _RBAC_API, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}],
    }  # fmt: skip


def _kubeconfig(access: ClusterAccess, identity: Identity) -> dict[str, Any]:
    ctx, sa = access.context, identity.service_account
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": ctx, "preferences": {},
        "clusters": [{"name": ctx, "cluster": {"server": _PLACEHOLDERS["server"],
                                               "certificate-authority-data": _PLACEHOLDERS["ca"]}}],
        "users": [{"name": sa, "user": {"token": _PLACEHOLDERS["token"]}}],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": sa, "namespace": identity.namespace}}],
    }  # fmt: skip


def _kubeconfig_header(access: ClusterAccess, identity: Identity) -> str:
    ns, secret, name = identity.namespace, identity.token_secret, access.cluster
    where = access.kubeconfig or "the file clusters[].kubernetes.kubeconfig names"
    return (
        f"observe's kubeconfig for cluster {name}, as {identity.service_account}: a template, not applied to the cluster.\n"
        f"After `kubectl --context $ADMIN apply -f {name}/{RBAC_FILE}` (ADMIN: your admin context for {name}):\n"
        "\n"
        f"  TOKEN=$(kubectl --context $ADMIN -n {ns} get secret {secret} -o jsonpath='{{.data.token}}' | base64 -d)\n"
        f"  CA=$(kubectl --context $ADMIN -n {ns} get secret {secret} -o jsonpath='{{.data.ca\\.crt}}')  # stays base64\n"
        "  SERVER=$(kubectl --context $ADMIN config view --minify -o jsonpath='{.clusters[0].cluster.server}')\n"
        f"  sed -e \"s|{_PLACEHOLDERS['server']}|$SERVER|\" -e \"s|{_PLACEHOLDERS['ca']}|$CA|\" "
        f"-e \"s|{_PLACEHOLDERS['token']}|$TOKEN|\" {name}/{KUBECONFIG_FILE} > {name}.kubeconfig\n"
        f"  kubectl --kubeconfig {name}.kubeconfig auth can-i --list -n <a service's namespace>  # check\n"
        "\n"
        "The filled file is a credential: write it to a new file as above (a re-run of `observe rbac` rewrites\n"
        "this one), put it in the management cluster's Secret observe-cluster-tokens (mounted at\n"
        f"/var/run/secrets/observe by deploy/kubernetes/observe.yaml) and point {where} at it.\n"
        f"The context is named {access.context!r}, as clusters[].kubernetes.context expects."
    )


# ---- files -------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the shared label dicts would otherwise come out as &id001 anchors


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=10_000)


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


def _multi_document(header: str, docs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return _comment(header) + "".join(f"---\n{_comment(why)}{_dump(doc)}" for why, doc in docs)


def render_rbac(cfg: Config, identity: Identity = Identity()) -> dict[str, str]:
    """Every generated file: relative path -> text, sorted by path. Pure: the same config and identity
    render the same bytes. A ConfigError when there is nothing to grant (no cluster is reached through
    its API server and no discovery namespace is named)."""
    out: dict[str, str] = {}
    for access in cluster_access(cfg):
        header = (
            f"observe rbac: what observe may do in cluster {access.cluster}, through its API server. Generated\n"
            "from the observe config: edit that and re-run, not this file. Apply with the cluster's admin context:\n"
            f"  kubectl --context $ADMIN apply -f {access.cluster}/{RBAC_FILE}\n"
            f"then fill {access.cluster}/{KUBECONFIG_FILE} (its header says how)."
        )
        out[f"{access.cluster}/{RBAC_FILE}"] = _multi_document(header, cluster_manifests(access, identity))
        out[f"{access.cluster}/{KUBECONFIG_FILE}"] = _comment(_kubeconfig_header(access, identity)) + _dump(
            _kubeconfig(access, identity)
        )
    if namespaces := discovery_namespaces(cfg):
        header = (
            "observe rbac: what the collector may read in the management cluster for discovery. Generated\n"
            "from the observe config. Apply to the management cluster:\n"
            f"  kubectl apply -f {MANAGEMENT_DIR}/{RBAC_FILE}"
        )
        out[f"{MANAGEMENT_DIR}/{RBAC_FILE}"] = _multi_document(header, discovery_manifests(namespaces, identity))
    if not out:
        raise ConfigError(
            "clusters: no cluster is reached through its API server (kubernetes: with prometheus.service or "
            "loki.service), and there is no discovery: section: no RBAC to generate"
        )
    return dict(sorted(out.items()))


def write_rbac(cfg: Config, out_dir: Path, identity: Identity = Identity()) -> list[Path]:
    """Render and write every file under `out_dir`; returns the paths written, sorted.

    A cluster directory this generator wrote before but no longer renders (the cluster left the config, or
    is now reached by URL) loses its rbac.yaml and kubeconfig.yaml, and goes if that leaves it empty;
    nothing else in `out_dir` is touched."""
    rendered = render_rbac(cfg, identity)
    written: list[Path] = []
    for rel, text in rendered.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for sub in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        for name in (RBAC_FILE, KUBECONFIG_FILE):
            stale = sub / name
            if f"{sub.name}/{name}" not in rendered and stale.is_file():
                stale.unlink()
        if not any(sub.iterdir()):
            sub.rmdir()
    return written
