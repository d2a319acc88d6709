"""The HTML status page at `/`: the `/status` document as a table a person reads at a glance.

In the spirit of Prometheus' `/targets` (https://prometheus.io/docs/prometheus/latest/getting_started/):
a header (version, uptime, ready, the sinks), then one row per cluster and source, DOWN first, each with
its state as text and colour (never colour alone), its last success, lag, size, queue and last error.

It is rendered from the `/status` document alone, so it can show nothing `/status` does not (no
credentials: see `observe.server`); every value goes through `html.escape`, and keys it does not know
(another section's new figures) are shown generically instead of failing.

Self-contained for an air-gapped management cluster: inline CSS, no script, nothing fetched (no font,
image or stylesheet; a Content-Security-Policy of `default-src 'none'` says so to the browser), and
only relative links. `metrics` rather than `/metrics` keeps working behind `kubectl proxy`, which
serves the page under `/api/v1/namespaces/<ns>/services/<svc>/proxy/`.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Final

from observe.pipeline import KINDS

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DEFAULT_REFRESH_SECONDS",
    "DOWN",
    "PENDING",
    "UP",
    "refresh_seconds",
    "render",
]

# Nothing is fetched and nothing runs: only the page's own inline <style>.
CONTENT_SECURITY_POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'"

DEFAULT_REFRESH_SECONDS: Final = 10
# The figures change once per collection interval, so the page reloads at that pace, within bounds:
# faster than every 5 s it reloads before a row can be read; slower than 5 min it looks hung.
_MIN_REFRESH: Final = 5
_MAX_REFRESH: Final = 300

UP: Final = "UP"
DOWN: Final = "DOWN"
PENDING: Final = "PENDING"  # no cycle finished yet: neither up nor down
_STATE_ORDER: Final = {DOWN: 0, PENDING: 1, UP: 2}  # what needs a person first

# `clusters` is keyed by source (`prometheus`), `queues` by signal (`alpha/metrics`): the pipeline
# kinds are the one place that pairs them.
_SIGNAL_OF_SOURCE: Final[dict[str, str]] = {kind.source: kind.signal for kind in KINDS}

# Section keys with a column of their own; every other key goes to the "details" column.
_COLUMNS: Final = frozenset(
    {"url", "up", "last_finished", "last_success", "last_error", "last_reason", "lag_seconds", "series",
     "entries_last_cycle", "bad_selectors"}
)  # fmt: skip
_HEADER_KEYS: Final = frozenset({"version", "started_at", "ready", "sink", "logs_sink", "clusters", "queues"})

_CSS: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #1f2328; }
h1 { font-size: 1.4em; margin: 0 0 .4em; } h2 { font-size: 1.1em; margin: 1.5em 0 .4em; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: 0 0 .8em; }
dl.summary dt { font-weight: 600; } dl.summary dd { margin: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; width: 100%; font-size: .92em; }
#queues { width: auto; min-width: 30em; }
th, td { border: 1px solid #d0d7de; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; min-width: 5.5em; padding: .1em .4em; border-radius: 3px; font-weight: 700;
         color: #fff; text-align: center; }
.badge.up { background: #1a7f37; } .badge.down { background: #cf222e; } .badge.pending { background: #6e7781; }
.muted { color: #59636e; font-size: .9em; }
.error { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap;
         overflow-wrap: anywhere; color: #82071e; }
.url { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85em; overflow-wrap: anywhere; }
.details { font-size: .85em; } .ready { color: #1a7f37; font-weight: 700; } .notready { color: #cf222e; font-weight: 700; }
"""


def refresh_seconds(interval: float | None) -> int:
    """How often the page reloads for a collector cycling every `interval` seconds (None: unknown)."""
    if interval is None or not math.isfinite(interval) or interval <= 0:
        return DEFAULT_REFRESH_SECONDS
    return max(_MIN_REFRESH, min(_MAX_REFRESH, math.ceil(interval)))


def render(doc: dict[str, Any], *, now: float, refresh_seconds: int) -> str:
    """The whole page for the `/status` document `doc`, as of `now` (Unix seconds)."""
    queues = _mapping(doc.get("queues"))
    rows = sorted(_rows(doc, queues), key=lambda r: (_STATE_ORDER[r.state], r.cluster, r.source))
    attached = {r.queue_name for r in rows}
    loose = {name: _mapping(q) for name, q in sorted(queues.items()) if name not in attached}
    up = sum(r.state == UP for r in rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>observe: {up} of {len(rows)} up</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(doc, now=now, refresh=int(refresh_seconds), up=up, total=len(rows)),
        "<h2>Clusters</h2>",
        _clusters_table(rows, now=now),
    ]
    if loose:
        parts += ["<h2>Other queues</h2>", _queues_table(loose)]
    parts.append("</body></html>\n")
    return "\n".join(parts)


# -- the rows -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    """One (cluster, source) section of `/status` and the queue its pipeline fills."""

    cluster: str
    source: str
    section: dict[str, Any]
    queue_name: str | None
    queue: dict[str, Any] | None

    @property
    def state(self) -> str:
        if self.section.get("up") is True:
            return UP
        if self.section.get("last_finished") is None and not self.section.get("last_error"):
            return PENDING
        return DOWN


def _rows(doc: dict[str, Any], queues: dict[str, Any]) -> list[_Row]:
    rows = []
    for cluster, sources in _mapping(doc.get("clusters")).items():
        for source, section in _mapping(sources).items():
            if not isinstance(section, dict):
                continue  # not a pipeline's section: nothing to put in a row
            name = f"{cluster}/{_SIGNAL_OF_SOURCE.get(str(source), source)}"
            queue = _mapping(queues[name]) if name in queues else None
            rows.append(_Row(str(cluster), str(source), section, name if queue is not None else None, queue))
    return rows


# -- the parts of the page ------------------------------------------------------------------------------
def _header(doc: dict[str, Any], *, now: float, refresh: int, up: int, total: int) -> str:
    started = doc.get("started_at")
    uptime = (
        f'{_span(max(0.0, now - started))} <span class="muted">(since {_esc(_iso(started))})</span>'
        if isinstance(started, int | float) else "not started"
    )  # fmt: skip
    ready = (
        '<span class="ready">READY</span>'
        if doc.get("ready") is True
        else '<span class="notready">NOT READY</span>'
    )
    items = [
        ("version", _esc(doc.get("version", "?"))),
        ("uptime", uptime),
        ("ready", ready),
        ("clusters", f"{up} of {total} up"),
        ("metrics sink", _sink(doc.get("sink"))),
        ("logs sink", _sink(doc.get("logs_sink"))),
    ]
    items += [(str(k), _value(v)) for k, v in sorted(doc.items()) if k not in _HEADER_KEYS]
    dl = "".join(f"<dt>{_esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return (
        "<header><h1>observe status</h1>"
        f'<dl class="summary">{dl}</dl>'
        '<nav><a href="metrics">/metrics</a><a href="status">/status</a>'
        f'<span class="muted">reloads every {refresh}s, as of {_esc(_iso(now))}</span></nav></header>'
    )


def _sink(sink: Any) -> str:
    if not isinstance(sink, dict):
        return "none" if sink is None else _esc(sink)
    kind = _esc(sink.get("kind", "?"))
    url = f' <span class="url">{_esc(sink["url"])}</span>' if sink.get("url") else ""
    rest = " ".join(f"{_esc(k)}={_value(v)}" for k, v in sorted(sink.items()) if k not in ("kind", "url"))
    return kind + url + (f' <span class="muted">{rest}</span>' if rest else "")


_CLUSTER_HEAD: Final = (
    "<tr><th>Cluster</th><th>Source</th><th>State</th><th>Last success</th><th>Lag</th>"
    "<th>Series / entries</th><th>Queue</th><th>Oldest queued</th><th>Last error</th><th>Details</th></tr>"
)


def _clusters_table(rows: list[_Row], *, now: float) -> str:
    body = [_cluster_row(r, now=now) for r in rows] or [
        '<tr><td colspan="10">No cluster is pulled.</td></tr>'
    ]
    return f'<table id="clusters"><thead>{_CLUSTER_HEAD}</thead><tbody>{"".join(body)}</tbody></table>'


def _cluster_row(row: _Row, *, now: float) -> str:
    s = row.section
    state = row.state
    url = f'<div class="url">{_esc(s["url"])}</div>' if s.get("url") else ""
    cells = [
        ("cluster", f"<strong>{_esc(row.cluster)}</strong>{url}"),
        ("source", _esc(row.source)),
        ("state", f'<span class="badge {state.lower()}">{state}</span>'),
        ("last-success", _last_success(s, now=now)),
        ("lag num", _seconds(s.get("lag_seconds"))),
        ("size num", _size(s)),
        ("queue num", _queue(row.queue)),
        ("oldest num", _oldest(row.queue)),
        ("error", _error(s)),
        ("details", _details(s)),
    ]
    tds = "".join(f'<td class="{cls}">{content}</td>' for cls, content in cells)
    return (
        f'<tr data-cluster="{_esc(row.cluster)}" data-source="{_esc(row.source)}" '
        f'data-state="{state}">{tds}</tr>'
    )


def _last_success(s: dict[str, Any], *, now: float) -> str:
    """The last success, relative; a failing pipeline's last attempt beside it (it is still trying)."""
    finished = s.get("last_finished")
    success = s.get("last_success", finished if s.get("up") is True else None)
    out = _ago(success, now) if isinstance(success, int | float) else "—"
    if s.get("up") is not True and isinstance(finished, int | float):
        out += f'<div class="muted">last attempt {_ago(finished, now)}</div>'
    return out


def _size(s: dict[str, Any]) -> str:
    out = []
    if isinstance(s.get("series"), int | float):
        out.append(f"{s['series']:,} series")
    if isinstance(s.get("entries_last_cycle"), int | float):
        out.append(f"{s['entries_last_cycle']:,} entries")
    return "<br>".join(_esc(x) for x in out) or "—"


def _queue(q: dict[str, Any] | None) -> str:
    if q is None:
        return "—"
    n = q.get("bytes")
    records = q.get("records")
    size = _bytes(n) if isinstance(n, int | float) else "?"
    return _esc(size) + (
        f'<div class="muted">{_esc(f"{records:,}")} records</div>' if isinstance(records, int) else ""
    )


def _oldest(q: dict[str, Any] | None) -> str:
    if q is None or not q.get("records"):
        return "—"  # an empty queue has no oldest record (the document says 0.0)
    return _seconds(q.get("oldest_age_seconds"))


def _error(s: dict[str, Any]) -> str:
    out = []
    if s.get("last_error"):
        reason = f'<span class="muted">{_esc(s["last_reason"])}: </span>' if s.get("last_reason") else ""
        out.append(f'{reason}<span class="error">{_esc(s["last_error"])}</span>')
    for selector, message in sorted(_mapping(s.get("bad_selectors")).items()):
        out.append(
            f'<span class="muted">bad selector </span><span class="error">{_esc(selector)}: {_esc(message)}</span>'
        )
    return "<br>".join(out)


def _details(s: dict[str, Any]) -> str:
    """Every figure without a column of its own, by name: a key added to a section shows up here."""
    items = [f"{_esc(k)}: {_value(v)}" for k, v in sorted(s.items()) if k not in _COLUMNS]
    return "<br>".join(items)


def _queues_table(queues: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr data-queue="{_esc(name)}"><td>{_esc(name)}</td><td class="num">{_queue(q)}</td>'
        f'<td class="num">{_oldest(q)}</td></tr>'
        for name, q in queues.items()
    )
    return (
        '<table id="queues"><thead><tr><th>Queue</th><th>Size</th><th>Oldest queued</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


# -- values -------------------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a mapping; an empty one otherwise (a malformed section shows as empty, not a 500)."""
    return value if isinstance(value, dict) else {}


def _value(value: Any) -> str:
    """Any JSON value, escaped: scalars as themselves, lists and objects as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return _esc(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))
    return _esc(value)


def _seconds(value: Any) -> str:
    return _esc(_span(value)) if isinstance(value, int | float) and not isinstance(value, bool) else "—"


def _ago(ts: float, now: float) -> str:
    return f'<span title="{_esc(_iso(ts))}">{_esc(_span(max(0.0, now - ts)))} ago</span>'


def _span(seconds: float) -> str:
    """A duration as a person reads it: `0.4s`, `12s`, `3m 4s`, `2h 5m`, `3d 4h`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _bytes(n: float) -> str:
    """A byte count in binary units, one decimal: `512 B`, `1.5 KiB`, `12.3 MiB`."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
