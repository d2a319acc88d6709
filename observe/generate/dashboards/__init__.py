"""Grafana dashboards for the fleet, generated from the same config the collector reads.

    fleet      Fleet overview: every cluster at one glance, linking to each cluster's detail
    cluster    Cluster detail ($cluster): the same signals in depth, its logs, links back
    failover   Failover readiness: N-1 headroom, cross-cluster traffic, DNS, backups, GitOps drift
    logs       Logs: volume by cluster and level, top error lines, free-text search
    collector  The collector itself: pulls, throughput, queue, sends, drops, collisions

Each module builds one dashboard from the small panel vocabulary in `panels.py` (on
grafana-foundation-sdk), the frame in `board.py` (layout, variables, links) and the shared PromQL in
`signals.py`; uids are fixed in `observe.generate.links`. `write_dashboards` renders JSON with sorted keys (stable,
diffable: `dashboards/` in the repo is this output for deploy/observe.example.yaml), and
`upload_dashboards` puts the files into Grafana through its HTTP API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from observe.config import Config
from observe.generate.dashboards import cluster, collector, failover, fleet, logs
from observe.generate.dashboards.signals import Scope
from observe.generate.dashboards.upload import UploadError, UploadReport, folder_uid, upload_dashboards
from observe.generate.links import DASHBOARD_UIDS

__all__ = [
    "BUILDERS",
    "UploadError",
    "UploadReport",
    "build_dashboards",
    "folder_uid",
    "render",
    "upload_dashboards",
    "write_dashboards",
]

Builder = Callable[..., dict[str, Any]]
BUILDERS: Final[dict[str, Builder]] = {
    "fleet": fleet.build,
    "cluster": cluster.build,
    "failover": failover.build,
    "logs": logs.build,
    "collector": collector.build,
}


def build_dashboards(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON model, keyed by its uid."""
    scope = Scope.of(cfg)
    g = cfg.grafana
    out: dict[str, dict[str, Any]] = {}
    for key, build in BUILDERS.items():
        model = build(scope, prometheus_uid=g.prometheus_datasource_uid, loki_uid=g.loki_datasource_uid)
        assert model["uid"] == DASHBOARD_UIDS[key]
        out[model["uid"]] = model
    return out


def render(model: dict[str, Any]) -> str:
    """Stable JSON: sorted keys, two-space indent, UTF-8 as is, one trailing newline."""
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(cfg: Config, out_dir: Path) -> list[Path]:
    """Write `<uid>.json` for every dashboard into `out_dir` (created if missing); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, model in build_dashboards(cfg).items():
        path = out_dir / f"{uid}.json"
        text = render(model)
        # Rewrite only on change, so file mtimes (and Grafana's file provisioner) see real changes only.
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
