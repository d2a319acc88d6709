"""Cluster API's kubeconfig secrets: `<cluster>-kubeconfig` with key `value`, in the namespaces given.

https://cluster-api.sigs.k8s.io/clusterctl/commands/get-kubeconfig (the secret the control plane writes,
labelled `cluster.x-k8s.io/cluster-name`). These hold the workload cluster's *admin* credentials: the
README recommends a scoped token (`observe rbac`) instead. Each is copied to `data_dir/discovered/
cluster_api/` (0600) and used through its current context.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from observe.config import ClusterAPIDiscovery
from observe.discovery.management import decode_data, list_secrets, object_name
from observe.discovery.model import Found, Problem
from observe.discovery.template import build_cluster, cluster_name, credentials_file, remove_unused
from observe.errors import ObserveError

__all__ = ["discover_cluster_api"]

SOURCE = "cluster_api"
LABEL = "cluster.x-k8s.io/cluster-name"
SUFFIX = "-kubeconfig"


async def discover_cluster_api(cfg: ClusterAPIDiscovery, data_dir: Path) -> Found:
    found = Found(SOURCE)
    errors: list[str] = []
    directory = data_dir / "discovered" / SOURCE
    written: set[Path] = set()
    for namespace in cfg.namespaces:
        try:
            secrets = await list_secrets(cfg.management, namespace, LABEL)
        except ObserveError as exc:
            errors.append(str(exc))
            continue
        for secret in secrets:
            _, name, labels, annotations = object_name(secret)
            if not name.endswith(SUFFIX):
                continue  # the cluster's other secrets (CA, etcd, service-account keys)
            where = f"secret {namespace}/{name}"
            cluster = labels.get(LABEL) or name[: -len(SUFFIX)]
            try:
                text = decode_data(secret, "value")
                if not text:
                    raise ValueError("no data.value")
                doc = yaml.safe_load(text)
                if not isinstance(doc, dict) or not doc.get("current-context"):
                    raise ValueError("data.value is not a kubeconfig with a current-context")
                path = credentials_file(directory, cluster_name(f"{namespace}-{cluster}"), text.encode())
                written.add(path)
                k8s = {"kubeconfig": str(path), "context": str(doc["current-context"])}
                found.clusters.append(build_cluster(cluster, cfg.template, k8s, labels=labels, annotations=annotations))
            except (ValueError, yaml.YAMLError) as exc:
                found.problems.append(Problem(SOURCE, where, str(exc)))
    if errors:
        found.error = "; ".join(errors)
    else:
        remove_unused(directory, written)
    return found
