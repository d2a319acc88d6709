"""N-1 failover capacity: if this cluster fails, can the others of its failover pool absorb its load?

The arithmetic is the generated alert's (`FleetFailoverCapacityInsufficient` and its recording rules in
observe/generate/rules/catalogue/failover.py), step for step, so the report and the alert never disagree
(tests/e2e/test_report_failover.py evaluates the alert's expression on a real Prometheus and compares):

    requests[c, r]    = sum of kube_pod_container_resource_requests{resource=r} of the pods of c whose
                        kube_pod_status_phase{phase=~"Pending|Running"} is 1 (r is cpu or memory)
    allocatable[c, r] = sum of kube_node_status_allocatable{resource=r} of c's nodes
    free[c, r]        = max(allocatable - requests, 0), only where c reports both
    peers_free[c, r]  = sum of free[p, r] over the other clusters p of c's pool; 0 when none reports it
    short             = requests[c, r] x alerts.failover_headroom > peers_free[c, r]

Pools are the generator's own (`Fleet.failover_pools`): clusters with a Prometheus, grouped by the values
of their `alerts.failover_pool_labels` labels, two or more to a pool. A cluster alone in its pool has no
alert and no verdict. Where its traffic would go comes from Istio: the clusters its sidecars already
send requests to (`istio_requests_total{reporter="source"}` with a `destination_cluster` other than its
own, as the cross-cluster traffic rule counts them), the first candidates of Istio's locality failover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

import pandas as pd

from observe.analysis.sources import (
    ALLOCATABLE,
    LIVE_PHASES,
    PHASE,
    REQUESTS,
    RESOURCES,
    AnalysisError,
    Inputs,
)
from observe.config import Config
from observe.generate.rules.catalogue.base import Fleet

__all__ = ["COLUMNS", "FailoverReport", "Status", "failover_report"]

Status = Literal["ok", "short", "no pool", "no data"]
OK: Final = "ok"
SHORT: Final = "short"
NO_POOL: Final = "no pool"
NO_DATA: Final = "no data"

COLUMNS: Final = (
    "cluster", "pool", "resource", "requests", "allocatable", "free", "peers", "peers_free", "needed",
    "left", "coverage", "status",
)  # fmt: skip
"""One row per (cluster, resource). cpu in cores, memory in bytes. `needed` is requests x headroom,
`left` is peers_free - needed (negative: the shortfall), `coverage` is peers_free / needed."""


@dataclass(frozen=True)
class FailoverReport:
    """The N-1 answer for every cluster with a Prometheus, at one instant."""

    at: float  # Unix seconds the vectors were read at
    source: str
    headroom: float
    pool_labels: tuple[str, ...]
    rows: pd.DataFrame  # COLUMNS, in config order of the clusters, cpu before memory
    traffic: pd.DataFrame  # cluster, destination, rps, share: each cluster's cross-cluster requests

    def worst(self) -> pd.Series | None:
        """The (cluster, resource) whose loss the others could least absorb: the lowest coverage."""
        judged = self.rows[self.rows["status"].isin((OK, SHORT))]
        if not len(judged):
            return None
        return judged.loc[judged["coverage"].idxmin()]

    def short(self) -> list[tuple[str, str]]:
        """(cluster, resource) pairs the alert fires for (once it has held for `alerts.failover_for`)."""
        rows = self.rows[self.rows["status"] == SHORT]
        return list(zip(rows["cluster"], rows["resource"], strict=True))

    def traffic_to(self, cluster: str) -> list[tuple[str, float, float]]:
        """(destination, requests/s, share) of one cluster's cross-cluster traffic, largest first."""
        mine = self.traffic[self.traffic["cluster"] == cluster]
        return list(zip(mine["destination"], mine["rps"], mine["share"], strict=True))


def failover_report(cfg: Config, inputs: Inputs) -> FailoverReport:
    """The report for `cfg`'s fleet from `inputs`; AnalysisError naming the metrics when they are absent."""
    cl = cfg.cluster_label
    fleet = Fleet(cfg)
    clusters = [c.name for c in fleet.metrics_clusters]
    requests = _requests(inputs, cl)
    allocatable = _sum(_columns(inputs.allocatable, (cl, "resource")), cl)
    ours = set(clusters)
    # Neither side for any cluster of ours: the alert would evaluate to nothing, silently. Say so instead.
    if not any(c in ours for c, _ in requests) or not any(c in ours for c, _ in allocatable):
        _missing(inputs, cl, clusters)
    # free only where both exist: `-` matches one-to-one, so a cluster without requests has no free series
    free = {k: max(allocatable[k] - v, 0.0) for k, v in requests.items() if k in allocatable}
    pools = {name: pool for pool in fleet.failover_pools() for name in pool}
    labels = {c.name: c.labels for c in cfg.clusters}
    rows = []
    for name in clusters:
        pool = pools.get(name)
        peers = [p for p in pool if p != name] if pool else []
        pool_name = _pool_name(cfg.alerts.failover_pool_labels, labels[name]) if pool else ""
        for r in RESOURCES:
            req = requests.get((name, r), math.nan)
            alloc = allocatable.get((name, r), math.nan)
            terms = [free[(p, r)] for p in peers if (p, r) in free]
            # `or on (cluster, resource) requests * 0`: no peer reporting is zero free capacity, not "no data"
            peers_free = sum(terms) if terms else (0.0 if pool and not math.isnan(req) else math.nan)
            needed = req * cfg.alerts.failover_headroom
            status: Status
            if math.isnan(req):
                status = NO_DATA
            elif not pool:
                status = NO_POOL
            else:
                status = SHORT if needed > peers_free else OK
            rows.append(
                {
                    "cluster": name, "pool": pool_name, "resource": r, "requests": req, "allocatable": alloc,
                    "free": free.get((name, r), math.nan), "peers": ",".join(peers), "peers_free": peers_free,
                    "needed": needed, "left": peers_free - needed,
                    "coverage": _coverage(peers_free, needed), "status": status,
                }
            )  # fmt: skip
    return FailoverReport(
        at=inputs.at,
        source=inputs.source,
        headroom=cfg.alerts.failover_headroom,
        pool_labels=tuple(cfg.alerts.failover_pool_labels),
        rows=pd.DataFrame(rows, columns=list(COLUMNS)),
        traffic=_traffic(inputs.traffic, cfg, clusters),
    )


def _coverage(peers_free: float, needed: float) -> float:
    """peers_free / needed; nothing needed is covered without bound, an unknown need is unknown (NaN)."""
    if math.isnan(needed) or math.isnan(peers_free):
        return math.nan
    return peers_free / needed if needed > 0 else math.inf


def _requests(inputs: Inputs, cl: str) -> dict[tuple[str, str], float]:
    """requests x on (cluster, namespace, pod) group_left () max by (...) (phase == 1), summed."""
    pod = [cl, "namespace", "pod"]
    phases = _columns(inputs.phases, (*pod, "phase"))
    live = phases[phases["phase"].isin(LIVE_PHASES) & (phases["value"] == 1)][pod].drop_duplicates()
    req = _columns(inputs.requests, (*pod, "resource"))
    return _sum(req.merge(live, on=pod, how="inner"), cl)


def _sum(frame: pd.DataFrame, cl: str) -> dict[tuple[str, str], float]:
    """sum by (cluster, resource) (...), cpu and memory only."""
    frame = frame[frame["resource"].isin(RESOURCES)]
    if not len(frame):
        return {}
    sums = frame.groupby([cl, "resource"])["value"].sum()
    return {(str(c), str(r)): float(v) for (c, r), v in sums.items()}


def _columns(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    missing = {n: "" for n in names if n not in frame.columns}
    out = frame.assign(**missing) if missing else frame
    return out if "value" in out.columns else out.assign(value=pd.Series(dtype="float64"))


def _pool_name(keys: list[str], labels: dict[str, str]) -> str:
    return ",".join(f"{k}={labels.get(k, '')}" for k in keys) if keys else "fleet"


def _missing(inputs: Inputs, cl: str, clusters: list[str]) -> NoReturn:
    found = {
        name: sorted({str(c) for c in frame[cl]}) if cl in frame.columns else []
        for name, frame in (
            (REQUESTS, inputs.requests),
            (PHASE, inputs.phases),
            (ALLOCATABLE, inputs.allocatable),
        )
    }
    seen = ", ".join(f"{m}: {', '.join(v) if v else 'none'}" for m, v in found.items())
    raise AnalysisError(
        f"{inputs.source} at {pd.Timestamp(inputs.at, unit='s', tz='UTC'):%Y-%m-%dT%H:%M:%SZ} has no capacity "
        f"data for the configured clusters ({', '.join(clusters)}). The report needs kube-state-metrics' "
        f'{REQUESTS}{{resource=~"cpu|memory"}}, {PHASE} and {ALLOCATABLE}{{resource=~"cpu|memory"}}, '
        f"labelled {cl}=<cluster> (clusters seen per metric: {seen})"
    )


def _traffic(frame: pd.DataFrame, cfg: Config, clusters: list[str]) -> pd.DataFrame:
    """Each cluster's requests/s to other clusters, by destination (our names, not Istio's IDs)."""
    cl = cfg.cluster_label
    ids = {name: cfg.alerts.istio_cluster_ids.get(name, name) for name in clusters}
    names = {istio: name for name, istio in ids.items()}
    frame = _columns(frame, (cl, "destination_cluster"))
    out = []
    for name in clusters:
        mine = frame[(frame[cl] == name) & (frame["destination_cluster"] != ids[name])]
        by_dst = mine.groupby("destination_cluster")["value"].sum().sort_values(ascending=False)
        total = float(by_dst.sum())
        for dst, rps in by_dst.items():
            if rps > 0:
                out.append({"cluster": name, "destination": names.get(str(dst), str(dst)), "rps": float(rps),
                            "share": float(rps) / total})  # fmt: skip
    return pd.DataFrame(out, columns=["cluster", "destination", "rps", "share"])
