"""`discovery:`: where clusters come from besides `clusters:`, one entry per inventory kind.

```yaml
discovery:
  refresh: 30s                 # every inventory is read again this often; changes apply live
  kubeconfig:                  # one cluster per context of a kubeconfig file
    path: /etc/observe/fleet.kubeconfig
    include: ["prod-*"]        # context-name globs (default: all); exclude wins
    exclude: ["*-sandbox"]
    template: {...}
  argocd:                      # Argo CD cluster secrets in the management cluster
    namespace: argocd
    selector: "env=prod"       # a label selector, on top of argocd.argoproj.io/secret-type=cluster
    template: {...}
  cluster_api:                 # Cluster API's <cluster>-kubeconfig secrets (admin credentials: see README)
    namespaces: [default]
    template: {...}
```
`template` says how each discovered cluster's Prometheus and Loki are reached (their `service:` through
the cluster's API server, or any other key of `clusters[].prometheus` / `.loki`) and which static labels
it gets; `labels_from` takes labels from the inventory object's labels or annotations. `management` (for
argocd and cluster_api) is how the collector reaches its own cluster's API server: in-cluster by default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from observe.config.kubernetes import KubernetesConfig
from observe.config.types import LABEL_NAME, ConfigModel, Duration

__all__ = [
    "ArgoCDDiscovery",
    "ClusterAPIDiscovery",
    "ClusterTemplate",
    "DiscoveryConfig",
    "KubeconfigDiscovery",
    "in_cluster",
]

# What a pod's service account mounts (https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/).
_SA = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster() -> KubernetesConfig:
    """The collector's own cluster, through its pod's service account."""
    return KubernetesConfig(
        api_server="https://kubernetes.default.svc",
        bearer_token_file=_SA / "token",
        tls={"ca_file": _SA / "ca.crt"},
    )


class ClusterTemplate(ConfigModel):
    """What every discovered cluster of one inventory gets."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Static labels, as `clusters[].labels`."""
    labels_from: dict[str, str] = Field(default_factory=dict)
    """Label name -> `label:<key>` or `annotation:<key>` of the inventory object (a secret; for kubeconfig,
    nothing: use `labels`). A missing key gives no label."""
    prometheus: dict[str, Any] | None = None
    """`clusters[].prometheus` for each discovered cluster (usually `service: monitoring/prometheus-k8s:web`)."""
    loki: dict[str, Any] | None = None
    """`clusters[].loki` for each discovered cluster."""

    @field_validator("labels_from")
    @classmethod
    def _from(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            if not LABEL_NAME.match(name):
                raise ValueError(f"not a valid label name: {name!r}")
            if not re.match(r"^(label|annotation):.+$", source):
                raise ValueError(f"{name}: say where from, 'label:<key>' or 'annotation:<key>', got {source!r}")
        return value


class KubeconfigDiscovery(ConfigModel):
    path: Path
    """The kubeconfig file: one cluster per context (the context's name is the cluster's name)."""
    include: list[str] = Field(default_factory=lambda: ["*"])
    """Context-name globs to take."""
    exclude: list[str] = Field(default_factory=list)
    """Context-name globs to leave out (exclude wins)."""
    template: ClusterTemplate = ClusterTemplate()
    """How each context's Prometheus and Loki are reached, and its labels."""


class ArgoCDDiscovery(ConfigModel):
    namespace: str = "argocd"
    """Where Argo CD keeps its cluster secrets."""
    selector: str = ""
    """A label selector (`env=prod,tier!=dev`) on top of `argocd.argoproj.io/secret-type=cluster`."""
    management: KubernetesConfig = Field(default_factory=in_cluster)
    """How to reach the management cluster's API server (default: in-cluster, the pod's service account)."""
    template: ClusterTemplate = ClusterTemplate()
    """How each secret's cluster has its Prometheus and Loki reached, and its labels."""


class ClusterAPIDiscovery(ConfigModel):
    namespaces: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    """Namespaces whose `<cluster>-kubeconfig` secrets (key `value`) name workload clusters."""
    management: KubernetesConfig = Field(default_factory=in_cluster)
    """How to reach the management cluster's API server (default: in-cluster)."""
    template: ClusterTemplate = ClusterTemplate()
    """How each secret's cluster has its Prometheus and Loki reached, and its labels."""


class DiscoveryConfig(ConfigModel):
    refresh: Duration = 30.0
    """How often every inventory is read again; a cluster that appears is pulled within a cycle of that."""
    kubeconfig: KubeconfigDiscovery | None = None
    """One cluster per context of a kubeconfig file."""
    argocd: ArgoCDDiscovery | None = None
    """Argo CD's cluster secrets in the management cluster."""
    cluster_api: ClusterAPIDiscovery | None = None
    """Cluster API's `<cluster>-kubeconfig` secrets (admin credentials: prefer scoped tokens)."""
