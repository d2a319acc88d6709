"""What every catalogue module shares: the fleet view of the config and a few constants."""

from __future__ import annotations

from dataclasses import dataclass

from observe import reasons
from observe.config import ClusterConfig, Config

# Drop reasons that lose data; out_of_order is a re-read of a sample already sent, not a loss.
LOSS_REASONS = (
    reasons.DROP_QUEUE_FULL,
    reasons.DROP_TOO_OLD,
    reasons.DROP_PERMANENT_ERROR,
    reasons.DROP_CORRUPT,
)
# Present in every collector's self-metrics from start-up (one per configured source).
COLLECTOR_HEARTBEAT = "observe_source_up"


@dataclass(frozen=True)
class Fleet:
    """The config, with the views the catalogue needs."""

    cfg: Config

    @property
    def metrics_clusters(self) -> list[ClusterConfig]:
        return [c for c in self.cfg.clusters if c.prometheus is not None]

    @property
    def logs_clusters(self) -> list[ClusterConfig]:
        return [c for c in self.cfg.clusters if c.loki is not None]

    def failover_pools(self) -> list[list[str]]:
        """Clusters that can absorb each other's load (same `alerts.failover_pool_labels` values), 2+ only."""
        keys = self.cfg.alerts.failover_pool_labels
        pools: dict[tuple[str, ...], list[str]] = {}
        for c in self.metrics_clusters:
            pools.setdefault(tuple(c.labels.get(k, "") for k in keys), []).append(c.name)
        return [p for _, p in sorted(pools.items()) if len(p) >= 2]

    def istio_id(self, cluster: str) -> str:
        return self.cfg.alerts.istio_cluster_ids.get(cluster, cluster)


def regex_of(names: list[str]) -> str:
    """An RE2 alternation of literal cluster names, escaped for a PromQL double-quoted string."""
    return "|".join(n.replace(".", "\\\\.") for n in names)
