"""Logs: volume by cluster and level, the most frequent error lines, and the lines themselves.

LogQL: https://grafana.com/docs/loki/latest/query/. Loki 3.x sets `detected_level` on ingest (structured
metadata, usable like a label); `$__auto` is Grafana's step for Loki range queries and `$__range` the
whole time range for instant ones.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as model

from observe.generate.dashboards import signals as sig
from observe.generate.dashboards.board import (
    Grid,
    custom_variable,
    dashboard,
    datasource_variables,
    textbox_variable,
)
from observe.generate.dashboards.fleet import series_detail_link
from observe.generate.dashboards.panels import (
    ColumnStyle,
    legend,
    logql,
    logs,
    organize,
    table,
    timeseries,
)
from observe.generate.dashboards.signals import Scope

LINE_PREFIX = 120  # group error lines by their first 120 characters: enough to tell messages apart


def build(s: Scope, *, prometheus_uid: str, loki_uid: str) -> dict[str, Any]:
    c = s.label
    stream = f'{sig.log_selector(s)} |~ "(?i)$search"'
    errors = f"{stream} {sig.ERROR_LINES}"
    grid = Grid()

    grid.row("Volume").add(
        timeseries(
            "Log lines by cluster",
            [logql(f"sum by ({c}) (rate({stream} [$__auto]))", legend(c))],
            unit="cps",
            w=12,
            stack=True,
            links=[series_detail_link(s)],
        ),
        timeseries(
            "Log lines by level",
            [logql(f"sum by (detected_level) (rate({stream} [$__auto]))", "{{detected_level}}")],
            unit="cps",
            w=12,
            stack=True,
        ),
        timeseries(
            "Error lines by cluster",
            [logql(f"sum by ({c}) (rate({errors} [$__auto]))", legend(c))],
            unit="cps",
            w=12,
            links=[series_detail_link(s)],
        ),
        timeseries(
            "Bytes by cluster",
            [logql(f"sum by ({c}) (bytes_rate({stream} [$__auto]))", legend(c))],
            unit="Bps",
            w=12,
            stack=True,
        ),
    )

    top = (
        f"topk(20, sum by ({c}, message) (count_over_time({errors}"
        f' | regexp "^(?P<message>.{{1,{LINE_PREFIX}}})"'
        f" [$__range])))"
    )
    grid.row("Top error lines").add(
        table(
            "Most frequent error lines in the time range",
            [logql(top, instant=True)],
            w=24,
            h=10,
            description=f"Error lines grouped by their first {LINE_PREFIX} characters.",
            # One frame per series -> one row per (cluster, message) with its count.
            transformations=[
                model.DataTransformerConfig(id_val="labelsToFields", options={"mode": "columns"}),
                model.DataTransformerConfig(id_val="merge", options={}),
                organize(rename={"Value": "Lines", "Value #A": "Lines"}),
            ],
            styles={"Lines": ColumnStyle("none", cell="auto")},
            sort_by="Lines",
            sort_desc=True,
        )
    )

    grid.row("Lines").add(
        logs("Error lines", logql(errors), h=12),
        logs("All lines", logql(stream), h=12),
    )

    return dashboard(
        "logs",
        "Logs",
        description="Log volume by cluster and level, the most frequent error lines, and the lines, "
        "from the central Loki.",
        tags=["fleet", "logs"],
        variables=[
            *datasource_variables(prometheus_uid, loki_uid),
            custom_variable(
                "cluster", "Cluster", s.loki_clusters or s.clusters, multi=True, include_all=True
            ),
            textbox_variable(
                "search", "Search", "A regular expression the log lines must match (case-insensitive)."
            ),
        ],
        grid=grid,
        time_from="now-1h",
    )
