"""One cluster per context of a kubeconfig file.

The context's name is the cluster's name (made a valid one: see `template.cluster_name`), and the cluster
is reached with that context (`kubernetes: {kubeconfig: <path>, context: <name>}`): its server, CA and
user, exec credential plugins included (observe/kube/kubeconfig.py). The file is read again every refresh.
"""

from __future__ import annotations

import fnmatch

import yaml

from observe.config import KubeconfigDiscovery
from observe.discovery.model import Found, Problem
from observe.discovery.template import build_cluster

__all__ = ["discover_kubeconfig"]

SOURCE = "kubeconfig"


def discover_kubeconfig(cfg: KubeconfigDiscovery) -> Found:
    found = Found(SOURCE)
    try:
        doc = yaml.safe_load(cfg.path.read_text(encoding="utf-8"))
    except OSError as exc:
        found.error = f"{cfg.path}: cannot read: {exc.strerror or exc}"
        return found
    except yaml.YAMLError as exc:
        found.error = f"{cfg.path}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
        return found
    contexts = doc.get("contexts") if isinstance(doc, dict) else None
    if not isinstance(contexts, list):
        found.error = f"{cfg.path}: not a kubeconfig (no `contexts` list)"
        return found
    for i, entry in enumerate(contexts):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            found.problems.append(Problem(SOURCE, f"{cfg.path} contexts[{i}]", "a context without a name"))
            continue
        if not any(fnmatch.fnmatchcase(name, g) for g in cfg.include) or any(
            fnmatch.fnmatchcase(name, g) for g in cfg.exclude
        ):
            continue
        try:
            found.clusters.append(
                build_cluster(name, cfg.template, {"kubeconfig": str(cfg.path), "context": name})
            )
        except ValueError as exc:
            found.problems.append(Problem(SOURCE, f"context {name!r}", str(exc)))
    return found
