"""What an inventory read returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from observe.config import ClusterConfig

__all__ = ["Found", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """An inventory object that could not become a cluster, and why (never a secret's value)."""

    source: str  # kubeconfig | argocd | cluster_api
    object: str  # e.g. "secret argocd/cluster-prod-eu-1", "context 'staging'"
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.object}: {self.message}"


@dataclass
class Found:
    source: str
    clusters: list[ClusterConfig] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None  # the inventory itself could not be read (the last clusters found are kept)
