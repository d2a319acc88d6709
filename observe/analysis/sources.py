"""Where the analyses read the fleet: the centre's Prometheus HTTP query API, or the embedded store.

- The centre: `GET /api/v1/query` (https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries),
  which Prometheus, Thanos Query, Mimir (under `/prometheus`) and VictoriaMetrics all serve. Every query
  of one report is evaluated at the same `time`, so the numbers are one instant of the fleet.
- The embedded store (`data_dir/store`, `observe.sinks.local_store.read_metrics`): the same instant
  vector computed in pandas with Prometheus' rules: per series, the newest sample at or before `at` and
  no older than the 5-minute lookback, and no series whose newest sample is a staleness marker.

Both give one `Inputs`: raw instant vectors, one row per series, a column per label (a label a series
lacks is "", as PromQL treats it). The arithmetic on them is the analysis' own (`failover.py`), the
same for both sources.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from observe.config import Config, HTTPClientConfig
from observe.errors import ObserveError
from observe.http import body_snippet, fetch, new_session, safe_url

__all__ = [
    "ALLOCATABLE",
    "ISTIO_REQUESTS",
    "LOOKBACK",
    "PHASE",
    "REQUESTS",
    "AnalysisError",
    "Inputs",
    "centre_client",
    "read_centre",
    "read_store",
]

REQUESTS: Final = "kube_pod_container_resource_requests"
PHASE: Final = "kube_pod_status_phase"
ALLOCATABLE: Final = "kube_node_status_allocatable"
ISTIO_REQUESTS: Final = "istio_requests_total"
RESOURCES: Final = ("cpu", "memory")
LIVE_PHASES: Final = ("Pending", "Running")  # what the capacity recording rule counts as requesting

LOOKBACK: Final = 300.0  # Prometheus' default --query.lookback-delta: what an instant query (and a rule) sees
TRAFFIC_WINDOW: Final = 300.0  # the [5m] of the generated Istio recording rules
# A report's vectors are a fleet's pods and nodes: 7,000 pods x 2 resources x 20 clusters is ~80 MiB of JSON.
_MAX_RESPONSE_BYTES: Final = 256 * 2**20


class AnalysisError(ObserveError):
    """The centre or the store could not give what an analysis needs (unreachable, an error, no data)."""


@dataclass(frozen=True)
class Inputs:
    """Raw instant vectors at `at` (Unix seconds), as read: a `value` column and one column per label."""

    at: float
    source: str  # where they came from, for the report's caption
    requests: pd.DataFrame  # kube_pod_container_resource_requests{resource=~"cpu|memory"}
    phases: pd.DataFrame  # kube_pod_status_phase{phase=~"Pending|Running"}
    allocatable: pd.DataFrame  # kube_node_status_allocatable{resource=~"cpu|memory"}
    # sum by (cluster, source_cluster, destination_cluster) of istio_requests_total{reporter="source"}'s
    # per-second rate over the last 5m; a `value` column in requests per second
    traffic: pd.DataFrame


# -- the centre ------------------------------------------------------------------------------------


def centre_client(cfg: Config, query_url: str | None = None) -> HTTPClientConfig:
    """How to reach the centre's query API: `query_url` as given (no credentials), or derived from
    `central.remote_write` with its credentials, TLS and tenant.

    Prometheus and VictoriaMetrics serve the query API at the root of the server they receive on, Mimir
    under `/prometheus`; Thanos Receive serves none (that is Thanos Query, another service), nor does
    an unknown receiver: those need `--query-url`.
    """
    if query_url is not None:
        return HTTPClientConfig(url=query_url)
    rw = cfg.central.remote_write
    if rw is None:
        raise AnalysisError("no central.remote_write in the config: give --query-url or read the store")
    parts = urlsplit(rw.url)
    kind = rw.receiver_kind()
    path = parts.path
    if kind == "mimir" and path.endswith("/api/v1/push"):
        path = path.removesuffix("/api/v1/push") + "/prometheus"
    elif kind in ("prometheus", "victoriametrics", "generic") and path.endswith("/api/v1/write"):
        path = path.removesuffix("/api/v1/write")
    else:
        raise AnalysisError(
            f"cannot tell where {safe_url(rw.url)} ({kind}) serves the query API: give --query-url "
            "(for Thanos Receive, the Thanos Query in front of it)"
        )
    headers = dict(rw.headers)
    if rw.tenant is not None:
        headers[rw.tenant_header_name()] = rw.tenant
    return HTTPClientConfig(
        url=urlunsplit((parts.scheme, parts.netloc, path, "", "")),
        timeout=rw.timeout,
        bearer_token_file=rw.bearer_token_file,
        bearer_token_env=rw.bearer_token_env,
        basic_auth=rw.basic_auth,
        tls=rw.tls,
        headers=headers,
    )


def read_centre(client: HTTPClientConfig, *, cluster_label: str, at: float | None = None) -> Inputs:
    """The report's vectors from the centre's `/api/v1/query`, all at `at` (default: now)."""
    when = time.time() if at is None else at
    by = f"{cluster_label}, source_cluster, destination_cluster"
    traffic = f'sum by ({by}) (rate({ISTIO_REQUESTS}{{reporter="source"}}[{int(TRAFFIC_WINDOW)}s]))'
    queries = {
        "requests": f'{REQUESTS}{{resource=~"cpu|memory"}}',
        "phases": f'{PHASE}{{phase=~"Pending|Running"}}',
        "allocatable": f'{ALLOCATABLE}{{resource=~"cpu|memory"}}',
        "traffic": traffic,
    }
    results = asyncio.run(_query_all(client, queries, when))
    return Inputs(at=when, source=f"{safe_url(client.url)} (query API)", **results)


async def _query_all(client: HTTPClientConfig, queries: dict[str, str], at: float) -> dict[str, pd.DataFrame]:
    url = client.url.rstrip("/") + "/api/v1/query"
    async with new_session(client) as session:
        out: dict[str, pd.DataFrame] = {}
        for key, expr in queries.items():
            params = {"query": expr, "time": f"{at:.3f}"}
            resp = await fetch(session, "GET", url, cfg=client, max_bytes=_MAX_RESPONSE_BYTES, params=params)
            out[key] = _vector(_decode(resp.status, bytes(resp.body), url, expr))
        return out


def _decode(status: int, body: bytes, url: str, expr: str) -> list[dict[str, Any]]:
    where = f"{safe_url(url)} {expr}"
    try:
        doc = json.loads(body)
    except ValueError:
        # An HTML login page or a proxy's error: not the query API at all.
        raise AnalysisError(
            f"{where}: HTTP {status}, not a query API reply: {body_snippet(body, 200)}"
        ) from None
    if status != 200 or not isinstance(doc, dict) or doc.get("status") != "success":
        error = (
            doc.get("error", body_snippet(body, 200)) if isinstance(doc, dict) else body_snippet(body, 200)
        )
        raise AnalysisError(f"{where}: HTTP {status}: {error}")
    data = doc.get("data") or {}
    if data.get("resultType") != "vector":
        raise AnalysisError(f"{where}: expected an instant vector, got {data.get('resultType')!r}")
    return list(data.get("result") or [])


def _vector(result: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{**r["metric"], "value": float(r["value"][1])} for r in result]
    return _frame(rows)


# -- the embedded store ----------------------------------------------------------------------------


def read_store(directory: Path, *, cluster_label: str, at: float | None = None) -> Inputs:
    """The report's vectors from the embedded store under `directory` (`data_dir/store`), at `at`
    (default: the newest capacity sample in the store, so a store left by yesterday's demo still reads)."""
    from observe.sinks.local_store import read_metrics

    try:
        df = read_metrics(directory)
    except OSError as exc:
        raise AnalysisError(f"cannot read the store {directory}: {exc}") from exc
    df = df[df["metric"].isin((REQUESTS, PHASE, ALLOCATABLE, ISTIO_REQUESTS))]
    # Unix seconds; the column is timestamp[ms, UTC], whatever unit pandas gives it
    df = df.assign(t=df["timestamp"].dt.as_unit("ms").astype("int64") / 1000.0)
    if at is None:
        capacity = df[df["metric"] != ISTIO_REQUESTS]
        at = float(capacity["t"].max()) if len(capacity) else time.time()
    source = f"store {directory}"
    # Each distinct label set parsed once: a series has one sample per cycle, all with the same JSON.
    labels = {text: json.loads(text) for text in df["labels"].unique()}

    def instant(metric: str, label: str, values: tuple[str, ...]) -> pd.DataFrame:
        mine = df[df["metric"] == metric]
        mine = mine[(mine["t"] <= at) & (mine["t"] >= at - LOOKBACK)]
        newest = mine.sort_values("t").groupby("labels", sort=False).tail(1)
        newest = newest[~newest["stale"]]
        rows = [{**labels[t], "value": v} for t, v in zip(newest["labels"], newest["value"], strict=True)]
        frame = _frame(rows)
        return frame[frame[label].isin(values)] if len(frame) else frame

    return Inputs(
        at=at,
        source=source,
        requests=instant(REQUESTS, "resource", RESOURCES),
        phases=instant(PHASE, "phase", LIVE_PHASES),
        allocatable=instant(ALLOCATABLE, "resource", RESOURCES),
        traffic=_store_traffic(df, labels, at, cluster_label),
    )


def _store_traffic(
    df: pd.DataFrame, labels: dict[str, dict[str, str]], at: float, cluster_label: str
) -> pd.DataFrame:
    """Per-second rates of `istio_requests_total{reporter="source"}` over the window before `at`:
    (the increase, counting a drop as a counter reset) / (the time between the first and last sample);
    a series needs two samples. Unlike PromQL's rate() nothing is extrapolated to the window's edges."""
    mine = df[(df["metric"] == ISTIO_REQUESTS) & ~df["stale"]]
    mine = mine[(mine["t"] <= at) & (mine["t"] >= at - TRAFFIC_WINDOW)]
    keys = (cluster_label, "source_cluster", "destination_cluster")
    rows: list[dict[str, Any]] = []
    for text, series in mine.sort_values("t").groupby("labels", sort=False):
        lab = labels[str(text)]
        if lab.get("reporter") != "source" or len(series) < 2:
            continue
        values = series["value"].tolist()
        increase = sum(b - a if b >= a else b for a, b in itertools.pairwise(values))
        span = float(series["t"].iloc[-1] - series["t"].iloc[0])
        if span > 0:
            rows.append({**{k: lab.get(k, "") for k in keys}, "value": increase / span})
    frame = _frame(rows)
    if not len(frame):
        return frame
    return frame.groupby(list(keys), as_index=False)["value"].sum()


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of labels and a value; a label a row lacks is "" (as PromQL matches a missing label)."""
    frame = pd.DataFrame(rows)
    if "value" not in frame.columns:
        frame["value"] = pd.Series(dtype="float64")
    labels = [c for c in frame.columns if c != "value"]
    if labels:
        frame[labels] = frame[labels].fillna("")
    return frame
