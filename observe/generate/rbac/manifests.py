"""The Kubernetes objects of the grant: per workload cluster a ServiceAccount, its token Secret, a Role
and RoleBinding per namespace, and a kubeconfig template; for discovery the management cluster's Roles.
Each document comes with the comment written above it, saying why each rule is there.

RBAC resource names: https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources
Token Secrets: https://kubernetes.io/docs/concepts/configuration/secret/#serviceaccount-token-secrets
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from observe.generate.rbac.access import ClusterAccess, Identity, ProxiedService

__all__ = [
    "KUBECONFIG_FILE",
    "RBAC_FILE",
    "Document",
    "cluster_manifests",
    "discovery_manifests",
    "kubeconfig",
]

RBAC_FILE: Final = "rbac.yaml"
KUBECONFIG_FILE: Final = "kubeconfig.yaml"
_LABELS: Final = {"app.kubernetes.io/name": "observe", "app.kubernetes.io/component": "rbac"}
_RBAC_API: Final = "rbac.authorization.k8s.io"
_PLACEHOLDERS: Final = {"server": "__SERVER__", "ca": "__CA_DATA__", "token": "__TOKEN__"}

Document = tuple[str, dict[str, Any]]  # (the comment above it, the object)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One PolicyRule and the reason for it, written as a comment above its Role."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    names: tuple[str, ...]  # () = every object of the resource in the namespace
    why: str

    def manifest(self) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "apiGroups": [self.group],
            "resources": [self.resource],
            "verbs": list(self.verbs),
        }
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
              "; ".join(s.what for s in group))
        for verbs, group in sorted(by_verbs.items())
    ]  # fmt: skip
    if pinned:
        names = tuple(sorted({s.ref.name for s in pinned}))
        rules += [
            # Endpoints, not EndpointSlices (observe/kube/api_server.py reads GET .../endpoints/<name>):
            # an Endpoints object is named as its service, so `get` narrows by name, while slices
            # (<service>-<random>, found by label) would need `list` on every slice in the namespace.
            _Rule("", "endpoints", ("get",), names,
                  "pin_pod: the service's ready pods, from its Endpoints (named as the service)"),
            _Rule("", "pods/proxy", tuple(sorted({v for s in pinned for v in s.verbs})), (),
                  "pin_pod: the chosen pod through the pod proxy. Pod names are not known in advance (they "
                  "change with every rollout), so this cannot be narrowed by name: it reaches any pod in this "
                  "namespace. Keep Prometheus and Loki in namespaces of their own to bound it"),
        ]  # fmt: skip
    return rules


def cluster_manifests(access: ClusterAccess, identity: Identity) -> list[Document]:
    """The documents of `<cluster>/rbac.yaml` in apply order, each with its comment."""
    sa, ns = identity.service_account, identity.namespace
    meta = {"labels": dict(_LABELS)}
    docs: list[Document] = [
        ("The namespace of observe's ServiceAccount; applying keeps one that exists (but `kubectl delete -f`\n"
         "on this file would delete it, and what else is in it).",
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
        why = "\n".join(
            textwrap.fill(f"- {r.resource} {', '.join(r.verbs)}: {r.why}", width=100, subsequent_indent="  ")
            for r in rules
        )
        docs.append((
            f"What {sa} may do in {namespace}, rule by rule:\n{why}",
            {"apiVersion": f"{_RBAC_API}/v1", "kind": "Role",
             "metadata": {"name": sa, "namespace": namespace, **meta}, "rules": [r.manifest() for r in rules]},
        ))  # fmt: skip
        docs.append(("", _binding(sa, namespace, sa, ns)))
    return docs


def discovery_manifests(namespaces: Sequence[str], identity: Identity) -> list[Document]:
    """The management cluster's Roles for discovery: read the cluster secrets in each namespace."""
    name = f"{identity.collector_service_account}-discovery"
    docs: list[Document] = []
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
        docs.append(
            ("", _binding(name, namespace, identity.collector_service_account, identity.collector_namespace))
        )
    return docs


def _binding(name: str, namespace: str, sa: str, sa_namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{_RBAC_API}/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_LABELS)},
        "roleRef": {"apiGroup": _RBAC_API, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}],
    }  # fmt: skip


def kubeconfig(access: ClusterAccess, identity: Identity) -> Document:
    """The kubeconfig template of `access.cluster`, with how to fill it in as its comment."""
    return _kubeconfig_header(access, identity), _kubeconfig_object(access, identity)


def _kubeconfig_object(access: ClusterAccess, identity: Identity) -> dict[str, Any]:
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
    where = f" (this config: {access.kubeconfig})" if access.kubeconfig else ""
    after = (
        "The filled file is a credential: write it to a new file as above (a re-run of `observe rbac` "
        "rewrites this one) and add it to the management cluster's Secret observe-cluster-tokens, which "
        "deploy/kubernetes/observe.yaml mounts at /var/run/secrets/observe; clusters[].kubernetes.kubeconfig "
        f"names it{where}. Its context is named {access.context!r}, as clusters[].kubernetes.context expects."
    )
    if access.api_server:
        after = (
            "This cluster's config gives kubernetes.api_server, not a kubeconfig: instead of filling this "
            "template, put $TOKEN in the file kubernetes.bearer_token_file names and the CA (`echo $CA | "
            "base64 -d`) in kubernetes.tls.ca_file, both in the management cluster's Secret "
            "observe-cluster-tokens. Or switch the config to kubernetes.kubeconfig and fill this: " + after
        )
    return (
        f"observe's kubeconfig for cluster {name}, as {identity.service_account}: a template, not applied to the cluster.\n"
        f"After `kubectl --context $ADMIN apply -f {name}/{RBAC_FILE}` (ADMIN: your admin context for {name}):\n"
        "\n"
        f"  TOKEN=$(kubectl --context $ADMIN -n {ns} get secret {secret} -o jsonpath='{{.data.token}}' | base64 -d)\n"
        f"  CA=$(kubectl --context $ADMIN -n {ns} get secret {secret} -o jsonpath='{{.data.ca\\.crt}}')  # stays base64\n"
        "  SERVER=$(kubectl --context $ADMIN config view --minify -o jsonpath='{.clusters[0].cluster.server}')\n"
        f'  sed -e "s|{_PLACEHOLDERS["server"]}|$SERVER|" -e "s|{_PLACEHOLDERS["ca"]}|$CA|" '
        f'-e "s|{_PLACEHOLDERS["token"]}|$TOKEN|" {name}/{KUBECONFIG_FILE} > {name}.kubeconfig\n'
        f"  kubectl --kubeconfig {name}.kubeconfig auth can-i --list -n <a service's namespace>  # check\n"
        "\n" + textwrap.fill(after, width=100)
    )
