"""Stamp a series (or log stream) with its cluster and static labels, then apply relabel_configs.

Our labels win a collision the way Prometheus' target labels beat scraped labels with
`honor_labels: false` (scrape/scrape.go `mutateSampleLabels` and `resolveConflictingExposedLabels`,
https://github.com/prometheus/prometheus/blob/v2.42.0/scrape/scrape.go): a series that already carries
`cluster` (a federated source's external label, say) keeps its value as `exported_cluster`, or
`exported_exported_cluster` if that is taken too, and so on. Relabelling runs after stamping, so rules
can read and rewrite the cluster and static labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from observe.transform.relabel import Relabeler

EXPORTED_PREFIX = "exported_"


class Normalizer:
    """One cluster's stamping and relabelling; `apply` runs once per new series (the caller caches)."""

    def __init__(
        self,
        *,
        cluster_label: str,
        cluster: str,
        static_labels: Mapping[str, str],
        relabeler: Relabeler | None,
        on_collision: Callable[[str], None] | None = None,
    ) -> None:
        if cluster_label in static_labels:
            raise ValueError(f"static label {cluster_label!r} clashes with cluster_label")
        self._ours: dict[str, str] = {cluster_label: cluster, **static_labels}
        # Prometheus resolves collisions in target-label (name) order, stably re-sorted by name length,
        # so `cluster` claims `exported_cluster` before a longer name could.
        self._collision_order = tuple(sorted(sorted(self._ours), key=len))
        self._relabeler = relabeler if relabeler else None
        self._on_collision = on_collision

    def apply(self, labels: dict[str, str]) -> dict[str, str] | None:
        """The stamped and relabelled copy of `labels` without empty values, or None if relabel_configs
        dropped it. The result may lack `__name__` if a rule dropped it: the caller decides."""
        ours = self._ours
        out = {k: v for k, v in labels.items() if v}  # an empty value is no label (Prometheus stores none)
        out.update(ours)
        moved: set[str] = set()
        for name in self._collision_order:
            theirs = labels.get(name)
            if not theirs:  # an empty value is no label: nothing to keep
                continue
            new = EXPORTED_PREFIX + name
            while new in labels or new in ours or new in moved:
                new = EXPORTED_PREFIX + new
            moved.add(new)
            out[new] = theirs
            if self._on_collision is not None:
                self._on_collision(name)
        if self._relabeler is not None:
            return self._relabeler.apply(out)
        return out
