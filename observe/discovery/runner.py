"""The fleet the collector pulls: the config's `clusters` plus what every inventory found, kept live.

Every `discovery.refresh` each inventory is read again; the union goes to `Collector.reconfigure`, so a
cluster that appears is pulled within a cycle, one that changes (new server, rotated token) restarts on
its queues, and one that disappears is retired (staleness markers, drain, then its state removed). An
inventory that cannot be read keeps the clusters it found last (an API server blip must not retire the
fleet). A name in `clusters` wins over a discovered one of the same name (reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from observe.config import Config
from observe.discovery.argocd import discover_argocd
from observe.discovery.cluster_api import discover_cluster_api
from observe.discovery.kubeconfig import discover_kubeconfig
from observe.discovery.model import Found, Problem
from observe.errors import ConfigError
from observe.service import Collector, ReloadReport

__all__ = ["FleetDiscovery", "discover_all"]

log = logging.getLogger("observe.discovery")


async def discover_all(cfg: Config) -> list[Found]:
    """One read of every inventory the config names."""
    d = cfg.discovery
    if d is None:
        return []
    found: list[Found] = []
    if d.kubeconfig is not None:
        found.append(discover_kubeconfig(d.kubeconfig))
    reads = []
    if d.argocd is not None:
        reads.append(discover_argocd(d.argocd, cfg.data_dir))
    if d.cluster_api is not None:
        reads.append(discover_cluster_api(d.cluster_api, cfg.data_dir))
    found.extend(await asyncio.gather(*reads))
    return found


def merge(cfg: Config, found: list[Found]) -> tuple[Config, list[Problem]]:
    """The config with the discovered clusters after its own; name clashes reported, the first kept."""
    clusters = list(cfg.clusters)
    names = {c.name: "clusters" for c in clusters}
    problems: list[Problem] = []
    for f in found:
        for c in f.clusters:
            if c.name in names:
                problems.append(Problem(f.source, f"cluster {c.name!r}", f"the name is taken (by {names[c.name]}): skipped"))
                continue
            names[c.name] = f.source
            clusters.append(c)
        problems.extend(f.problems)
    if any(c.name == cfg.self_cluster for c in clusters[len(cfg.clusters) :]):
        problems.append(Problem("discovery", f"cluster {cfg.self_cluster!r}", "the name is self_cluster's: skipped"))
        clusters = [c for c in clusters if c.name != cfg.self_cluster or c in cfg.clusters]
    return cfg.model_copy(update={"clusters": clusters}), problems


class FleetDiscovery:
    """Owns the base config (the file's) and what the inventories found; applies their union."""

    def __init__(self, collector: Collector, cfg: Config) -> None:
        self.collector = collector
        self.base = cfg
        self._found: dict[str, Found] = {}
        self._problems: list[Problem] = []
        self._reported: set[str] = set()
        collector.status_sections["discovery"] = self.status

    async def set_base(self, cfg: Config) -> ReloadReport:
        """A reloaded config file: applied with the inventories read again. ConfigError if refused."""
        old = self.base
        self.base = cfg
        try:
            return await self.refresh()
        except ConfigError:
            self.base = old
            raise

    async def refresh(self) -> ReloadReport:
        for f in await discover_all(self.base):
            if f.error is not None:
                log.error("inventory unreadable; keeping the clusters it gave last", extra={"source": f.source, "error": f.error})
                kept = self._found.get(f.source)
                f.clusters, f.problems = (kept.clusters, kept.problems) if kept else ([], [])
            self._found[f.source] = f
        cfg, problems = merge(self.base, list(self._found.values()))
        self._problems = problems
        for p in problems:
            if str(p) not in self._reported:
                self._reported.add(str(p))
                log.error("discovered object cannot be used", extra={"source": p.source, "object": p.object, "error": p.message})
        counts = {s: len(f.clusters) for s, f in self._found.items()}
        bad = {s: sum(1 for p in problems if p.source == s) for s in {*counts, *(p.source for p in problems)}}
        self.collector.telemetry.discovery_state(counts, bad)
        return await self.collector.reconfigure(cfg)

    async def run(self, stop: asyncio.Event) -> None:
        d = self.base.discovery
        if d is None:
            return
        while not stop.is_set():
            try:
                await self.refresh()
            except ConfigError as exc:  # a discovered cluster's config that the collector refused
                log.error("discovered fleet refused", extra={"problems": exc.problems})
            except Exception:  # a bug must not end discovery for good
                log.exception("discovery refresh crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), d.refresh)

    def status(self) -> dict[str, Any]:
        return {
            "clusters": {s: sorted(c.name for c in f.clusters) for s, f in sorted(self._found.items())},
            "errors": {s: f.error for s, f in sorted(self._found.items()) if f.error},
            "problems": [{"source": p.source, "object": p.object, "error": p.message} for p in self._problems],
        }
