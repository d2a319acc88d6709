"""A discovered cluster's config: its name, how to reach its API server, and the inventory's template."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from observe.config import ClusterConfig, ClusterTemplate

__all__ = ["build_cluster", "cluster_name", "credentials_file", "remove_unused", "write_private"]

_BAD: Final = re.compile(r"[^A-Za-z0-9._-]+")


def cluster_name(raw: str) -> str:
    """An inventory's name as a cluster name: runs of other characters become '-' (an EKS context
    `arn:aws:eks:eu-west-1:123:cluster/prod` is `arn-aws-eks-eu-west-1-123-cluster-prod`)."""
    name = _BAD.sub("-", raw).strip("-._")[:128]
    if not name:
        raise ValueError(f"{raw!r} has no letters or digits to make a cluster name of")
    return name


def build_cluster(
    name: str,
    template: ClusterTemplate,
    kubernetes: dict[str, Any],
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> ClusterConfig:
    """The cluster, validated like a `clusters[]` entry; ValueError with the first problem's path."""
    own: dict[str, str] = dict(template.labels)
    for label, source in template.labels_from.items():
        kind, _, key = source.partition(":")
        value = (labels if kind == "label" else annotations or {}) or {}
        if value.get(key):
            own[label] = value[key]
    doc: dict[str, Any] = {"name": cluster_name(name), "labels": own, "kubernetes": kubernetes}
    if template.prometheus is not None:
        doc["prometheus"] = template.prometheus
    if template.loki is not None:
        doc["loki"] = template.loki
    try:
        return ClusterConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        raise ValueError(f"{where or 'cluster'}: {first['msg'].removeprefix('Value error, ')}") from None


def credentials_file(directory: Path, stem: str, data: bytes) -> Path:
    """`data` (a kubeconfig with credentials) written as `<stem>-<digest>.kubeconfig`: named by content, so
    a rotated token is a new path, a changed cluster config, and the cluster restarts with it."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    return write_private(directory / f"{stem}-{digest}.kubeconfig", data)


def remove_unused(directory: Path, keep: set[Path]) -> None:
    """Delete the credential files of this inventory that no cluster uses any more."""
    if not directory.is_dir():
        return
    for path in directory.glob("*.kubeconfig"):
        if path not in keep:
            path.unlink(missing_ok=True)


def write_private(path: Path, data: bytes) -> Path:
    """Write credentials only the collector may read (0600, in a 0700 directory), replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
