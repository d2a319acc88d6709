"""The alert catalogue: every recording rule and alert the central ruler evaluates, built from the config.

One config is the source of truth for the cluster list, so the inventory, the N-1 arithmetic and the
per-cluster Istio terms can never disagree with what the collector pulls. Expressions are written with
the label `cluster`; rendering renames it when the config's `cluster_label` differs. Each alert has a
section in docs/runbooks.md and, beside it in its module's CASES, promtool cases (built with cases.py)
that fire and stay silent.

A cluster's own series arrive stamped with `cluster` (and its static labels); the collector's
self-metrics arrive with `self_cluster` and, where they have one, a `cluster` naming the *monitored*
cluster. One module per generated rule file.
"""

from __future__ import annotations

from observe.config import Config
from observe.generate.rules.catalogue import collector, failover, fleet, kubernetes, platform
from observe.generate.rules.catalogue.base import COLLECTOR_HEARTBEAT, LOSS_REASONS, Fleet
from observe.generate.rules.catalogue.cases import CaseBuilder
from observe.generate.rules.model import RuleFile, RuleGenerationError

__all__ = ["CASES", "COLLECTOR_HEARTBEAT", "LOSS_REASONS", "Fleet", "prometheus_files"]

# Every Prometheus alert's promtool cases, by alert name.
CASES: dict[str, CaseBuilder] = {
    **fleet.CASES,
    **kubernetes.CASES,
    **failover.CASES,
    **platform.CASES,
    **collector.CASES,
}


# -- the files -----------------------------------------------------------------------------------------


def prometheus_files(cfg: Config) -> list[RuleFile]:
    """Every Prometheus rule file, in a stable order."""
    f = Fleet(cfg)
    if not f.metrics_clusters:
        raise RuleGenerationError("the alerting rules need at least one cluster with a prometheus source")
    unknown = sorted(set(cfg.alerts.istio_cluster_ids) - {c.name for c in cfg.clusters})
    if unknown:
        raise RuleGenerationError(f"alerts.istio_cluster_ids: not configured clusters: {', '.join(unknown)}")
    return [
        RuleFile("inventory", (fleet.inventory(f),)),
        RuleFile("fleet", (fleet.presence(f),)),
        RuleFile("kubernetes", (kubernetes.kubernetes_recording(f), kubernetes.kubernetes(f))),
        RuleFile(
            "failover",
            (
                failover.capacity_recording(f),
                failover.capacity(f),
                failover.traffic_recording(f),
                failover.traffic(f),
            ),
        ),
        RuleFile("platform", (platform.platform(f),)),
        RuleFile("observe", (collector.observe(f),)),
    ]
