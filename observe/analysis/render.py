"""A failover report as a person reads it (a rich table) and as a program does (CSV, JSON).

CSV and JSON carry the raw numbers (cpu in cores, memory in bytes; JSON `null` for "no data" and for an
unbounded coverage); the table rounds them and names the units.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from rich.table import Table

from observe.analysis.failover import COLUMNS, NO_DATA, NO_POOL, SHORT, FailoverReport
from observe.analysis.sources import RESOURCES

__all__ = ["to_csv", "to_json", "to_table", "when"]


def when(report: FailoverReport) -> str:
    """The report's instant, RFC 3339 in UTC."""
    import datetime as dt

    return dt.datetime.fromtimestamp(report.at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def amount(resource: str, value: float) -> str:
    """cpu in cores, memory in GiB: the units `kubectl describe node` readers think in."""
    if math.isnan(value):
        return "-"
    if resource == "memory":
        return f"{value / 2**30:,.1f} GiB"
    return f"{value:,.2f} cores" if resource == "cpu" else f"{value:,.2f}"


def to_table(report: FailoverReport) -> Table:
    h = f"{report.headroom:g}"
    table = Table(
        title="observe report failover: if a cluster fails, can the others absorb its load?",
        caption=_caption(report),
        caption_justify="left",
    )
    for col, justify in (
        ("cluster", "left"), ("pool", "left"), ("resource", "left"), ("requests", "right"),
        ("allocatable", "right"), ("used", "right"), ("peers' free", "right"),
        (f"needed (x{h})", "right"), ("left if it fails", "right"), ("verdict", "left"),
        ("its traffic goes to (Istio)", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in report.rows.itertuples(index=False):
        r = row.resource
        is_first = r == RESOURCES[0]  # a cluster's rows are cpu then memory: name it once
        used = row.requests / row.allocatable if row.allocatable else math.nan
        table.add_row(
            row.cluster if is_first else "",
            row.pool if is_first else "",
            r,
            amount(r, row.requests),
            amount(r, row.allocatable),
            "-" if math.isnan(used) else f"{used:.0%}",
            amount(r, row.peers_free),
            amount(r, row.needed),
            _left(r, row.left, row.status),
            _verdict(row.status, row.coverage),
            _traffic(report, row.cluster) if is_first else "",
            end_section=r == RESOURCES[-1],
        )
    return table


def _left(resource: str, left: float, status: str) -> str:
    text = amount(resource, left)
    return f"[red]{text}[/]" if status == SHORT else text


def _verdict(status: str, coverage: float) -> str:
    if status == SHORT:
        return f"[bold red]SHORT[/] (covers {coverage:.0%})"
    if status in (NO_POOL, NO_DATA):
        return f"[dim]{status}[/]"
    return "[green]ok[/]" + ("" if math.isinf(coverage) else f" (covers {coverage:.0%})")


def _traffic(report: FailoverReport, cluster: str) -> str:
    flows = report.traffic_to(cluster)
    if not flows:
        return "[dim]none seen[/]"
    total = sum(rps for _, rps, _ in flows)
    return ", ".join(f"{dst} {share:.0%}" for dst, _, share in flows) + f" ({total:,.1f} req/s)"


def _caption(report: FailoverReport) -> str:
    pools = f"pools by {', '.join(report.pool_labels)}" if report.pool_labels else "one pool"
    head = f"{when(report)}, {report.source}; headroom x{report.headroom:g}, {pools}."
    worst = report.worst()
    if worst is None:
        return head + " No cluster has a failover pool with data."
    r = str(worst["resource"])
    verdict = "the others could not absorb it" if worst["status"] == SHORT else "the others would absorb it"
    return (
        f"{head}\nWorst case: losing {worst['cluster']} ({r}): it needs {amount(r, worst['needed'])}, its peers "
        f"have {amount(r, worst['peers_free'])} free; {verdict} ({amount(r, worst['left'])} left)."
    )


def _records(report: FailoverReport) -> list[dict[str, Any]]:
    out = []
    for rec in report.rows.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}
        rec["peers"] = rec["peers"].split(",") if rec["peers"] else []
        out.append(rec)
    return out


def to_json(report: FailoverReport) -> str:
    worst = report.worst()
    doc = {
        "at": when(report),
        "at_unix": report.at,
        "source": report.source,
        "headroom": report.headroom,
        "pool_labels": list(report.pool_labels),
        "units": {"cpu": "cores", "memory": "bytes"},
        "rows": _records(report),
        "short": [{"cluster": c, "resource": r} for c, r in report.short()],
        "worst": None if worst is None else {"cluster": worst["cluster"], "resource": worst["resource"]},
        "traffic": report.traffic.to_dict("records"),
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def to_csv(report: FailoverReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*COLUMNS, "traffic_to"])
    for rec in report.rows.to_dict("records"):
        flows = ";".join(f"{d}={share:.4f}" for d, _, share in report.traffic_to(rec["cluster"]))
        cells = ["" if isinstance(rec[c], float) and math.isnan(rec[c]) else rec[c] for c in COLUMNS]
        writer.writerow([*(repr(c) if isinstance(c, float) else c for c in cells), flows])
    return buf.getvalue()
