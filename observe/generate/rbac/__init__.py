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

    access.py     the config -> what observe calls: ClusterAccess, ProxiedService (segment, methods), Identity
    manifests.py  those -> the Kubernetes objects and the kubeconfig template, each with its comment
    __init__.py   the files: render_rbac (pure), write_rbac
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from observe.config import Config
from observe.errors import ConfigError
from observe.generate.rbac.access import (
    ClusterAccess,
    Identity,
    ProxiedService,
    cluster_access,
    discovery_namespaces,
    k8s_name,
)
from observe.generate.rbac.manifests import (
    KUBECONFIG_FILE,
    RBAC_FILE,
    Document,
    cluster_manifests,
    discovery_manifests,
    kubeconfig,
)

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
DEFAULT_IDENTITY: Final = Identity()  # observe-reader in observe; the collector is observe in observe


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the shared label dicts would otherwise come out as &id001 anchors


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=10_000)


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


def _multi_document(header: str, docs: Sequence[Document]) -> str:
    return _comment(header) + "".join(f"---\n{_comment(why)}{_dump(doc)}" for why, doc in docs)


def render_rbac(cfg: Config, identity: Identity = DEFAULT_IDENTITY) -> dict[str, str]:
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
        why, template = kubeconfig(access, identity)
        out[f"{access.cluster}/{KUBECONFIG_FILE}"] = _comment(why) + _dump(template)
    if namespaces := discovery_namespaces(cfg):
        header = (
            "observe rbac: what the collector may read in the management cluster for discovery. Generated\n"
            "from the observe config. Apply to the management cluster:\n"
            f"  kubectl apply -f {MANAGEMENT_DIR}/{RBAC_FILE}"
        )
        out[f"{MANAGEMENT_DIR}/{RBAC_FILE}"] = _multi_document(
            header, discovery_manifests(namespaces, identity)
        )
    if not out:
        raise ConfigError(
            "clusters: no cluster is reached through its API server (kubernetes: with prometheus.service or "
            "loki.service), and there is no discovery: section: no RBAC to generate"
        )
    return dict(sorted(out.items()))


def write_rbac(cfg: Config, out_dir: Path, identity: Identity = DEFAULT_IDENTITY) -> list[Path]:
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
        stale = [sub / n for n in (RBAC_FILE, KUBECONFIG_FILE) if f"{sub.name}/{n}" not in rendered]
        stale = [path for path in stale if path.is_file()]
        for path in stale:
            path.unlink()
        if stale and not any(sub.iterdir()):
            sub.rmdir()
    return written
