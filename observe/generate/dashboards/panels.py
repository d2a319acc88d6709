"""Our small panel vocabulary on top of grafana-foundation-sdk: only the panels these dashboards use.

The SDK (https://github.com/grafana/grafana-foundation-sdk, builders generated from Grafana 11.6's
schema) gives typed models and JSON encoding; this module fixes what must be the same on every panel:
datasource references through the `datasource` / `loki_datasource` variables (by uid, never by name),
refIds, units, thresholds and colours by meaning. `board.py` places the panels and frames the dashboard.

Panel JSON: https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import logs as sdk_logs
from grafana_foundation_sdk.builders import loki as sdk_loki
from grafana_foundation_sdk.builders import prometheus as sdk_prom
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

from observe.generate.links import dashboard_url

PROM_VAR: Final = "datasource"
LOKI_VAR: Final = "loki_datasource"
PROMETHEUS: Final = model.DataSourceRef(type_val="prometheus", uid="${" + PROM_VAR + "}")
LOKI: Final = model.DataSourceRef(type_val="loki", uid="${" + LOKI_VAR + "}")

# Colours by meaning, so a red means the same thing on every dashboard.
OK: Final = "green"
WARN: Final = "orange"
BAD: Final = "red"
NEUTRAL: Final = "text"


# -- queries ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """One target: PromQL against `$datasource` or LogQL against `$loki_datasource`."""

    expr: str
    legend: str = ""
    instant: bool = False
    loki: bool = False
    table: bool = False  # Prometheus `format: table` (one row per series, labels as columns)


def prom(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> Query:
    # Queries are written across Python lines; stored on one. (None of ours has a double space in a string.)
    return Query(" ".join(expr.split()), legend, instant=instant, table=table)


def logql(expr: str, legend: str = "", *, instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant=instant, loki=True)


def legend(*labels: str) -> str:
    """A legend naming each series by its values of `labels`: `legend("cluster", "source")` is
    `{{cluster}} {{source}}`, which Grafana fills in per series."""
    return " ".join("{{" + label + "}}" for label in labels)


def _target(q: Query, ref_id: str) -> cogbuilder.Builder[Any]:
    if q.loki:
        lq = sdk_loki.Dataquery().expr(q.expr).ref_id(ref_id).datasource(LOKI)
        if q.legend:
            lq = lq.legend_format(q.legend)
        return lq.instant(True) if q.instant else lq.range(True)
    pq = sdk_prom.Dataquery().expr(q.expr).ref_id(ref_id).datasource(PROMETHEUS)
    if q.legend:
        pq = pq.legend_format(q.legend)
    if q.table:
        pq = pq.format(prom_model.PromQueryFormat.TABLE)
    return pq.instant() if q.instant else pq.range()


def _ref_id(i: int) -> str:
    return string.ascii_uppercase[i]


# -- field config ----------------------------------------------------------------------------------
Steps = tuple[tuple[float | None, str], ...]


def steps(*pairs: tuple[float | None, str]) -> Steps:
    """Threshold steps, lowest first; the first value is None (Grafana's -Infinity base)."""
    # 90.0 -> 90: the same JSON whether a threshold came from arithmetic on a float or not.
    return tuple((int(v) if isinstance(v, float) and v.is_integer() else v, c) for v, c in pairs)


HIGH_IS_BAD: Final = steps((None, OK), (0.8, WARN), (0.9, BAD))  # utilisation, commitment
ANY_IS_BAD: Final = steps((None, OK), (1, BAD))  # counts of broken things
NO_THRESHOLDS: Final = steps((None, NEUTRAL))


def _thresholds(s: Steps) -> sdk.ThresholdsConfig:
    return (
        sdk.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in s])
    )


def value_text(mapping: dict[int, tuple[str, str]]) -> list[model.ValueMapping]:
    """Map numeric values to (text, colour), e.g. {1: ("Reporting", OK), 0: ("Down", BAD)}."""
    return [
        model.ValueMap(
            options={
                str(v): model.ValueMappingResult(text=t, color=c, index=i)
                for i, (v, (t, c)) in enumerate(sorted(mapping.items()))
            }
        )
    ]


@dataclass(frozen=True)
class Link:
    """A data link on a panel's values (a series, or a table column through `ColumnStyle.links`)."""

    title: str
    url: str


def dashboard_link_url(dashboard: str, *, cluster: str | None = None, keep_vars: bool = False) -> str:
    """A relative link to one of our dashboards (Grafana prefixes its sub-path), keeping the time range.

    `cluster` is a Grafana template such as `${__value.raw}`: it is inserted verbatim so Grafana expands it.
    """
    url = dashboard_url("", dashboard)
    params = []
    if cluster is not None:
        params.append(f"var-cluster={cluster}")
    if keep_vars:
        params.append(f"${{{PROM_VAR}:queryparam}}")
    params.append("${__url_time_range}")
    return url + "?" + "&".join(params)


def explore_url(expr: str, *, loki: bool) -> str:
    """A link into Explore (Grafana 10+ `panes` form) with the query and the dashboard's datasource.

    The JSON is percent-encoded except `${...}` template references, which Grafana expands first.
    """
    ds = LOKI if loki else PROMETHEUS
    pane = {
        "a": {
            "datasource": ds.uid,
            "queries": [{"refId": "A", "expr": expr, "datasource": {"type": ds.type_val, "uid": ds.uid}}],
            "range": {"from": "now-1h", "to": "now"},
        }
    }
    text = json.dumps(pane, separators=(",", ":"), sort_keys=True)
    return "/explore?schemaVersion=1&panes=" + quote(text, safe="${}:.")


# -- panels ----------------------------------------------------------------------------------------
@dataclass
class Panel:
    """A panel before layout: the SDK builder plus its size in grid units."""

    builder: Any  # an SDK panel builder; typed loosely because each panel kind is its own class
    w: int
    h: int


def _common(
    b: Any, title: str, description: str, queries: Sequence[Query], datasource: model.DataSourceRef
) -> Any:
    if len(queries) > len(string.ascii_uppercase):
        raise ValueError(f"panel {title!r}: too many queries")
    b = b.title(title).datasource(datasource).targets([_target(q, _ref_id(i)) for i, q in enumerate(queries)])
    return b.description(description) if description else b


def _field(
    b: Any,
    unit: str,
    thresholds: Steps,
    *,
    mappings: list[model.ValueMapping] | None = None,
    min_val: float | None = None,
    max_val: float | None = None,
    decimals: int | None = None,
    links: Sequence[Link] = (),
    no_value: str | None = None,
) -> Any:
    b = b.unit(unit).thresholds(_thresholds(thresholds))
    if mappings:
        b = b.mappings(mappings)
    if min_val is not None:
        b = b.min(min_val)
    if max_val is not None:
        b = b.max(max_val)
    if decimals is not None:
        b = b.decimals(decimals)
    if no_value is not None:
        b = b.no_value(no_value)
    if links:
        b = b.data_links([sdk.DashboardLink(ln.title).url(ln.url) for ln in links])
    return b


def _datasource_of(queries: Sequence[Query]) -> model.DataSourceRef:
    kinds = {q.loki for q in queries}
    if len(kinds) != 1:
        raise ValueError("a panel's queries are all PromQL or all LogQL")
    return LOKI if kinds.pop() else PROMETHEUS


def timeseries(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str,
    w: int = 12,
    h: int = 8,
    description: str = "",
    thresholds: Steps = NO_THRESHOLDS,
    stack: bool = False,
    bars: bool = False,
    min_val: float | None = None,
    max_val: float | None = None,
    links: Sequence[Link] = (),
) -> Panel:
    b = _common(sdk_timeseries.Panel(), title, description, queries, _datasource_of(queries))
    b = _field(b, unit, thresholds, min_val=min_val, max_val=max_val, links=links)
    b = b.fill_opacity(60 if stack or bars else 10).line_width(1).show_points(common.VisibilityMode.NEVER)
    if stack:
        b = b.stacking(sdk_common.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
    if bars:
        b = b.draw_style(common.GraphDrawStyle.BARS)
    if thresholds != NO_THRESHOLDS:
        b = b.thresholds_style(
            sdk_common.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    b = b.legend(_legend_options())
    return Panel(b, w, h)


def _legend_options() -> sdk_common.VizLegendOptions:
    return (
        sdk_common.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def stat(
    title: str,
    queries: Sequence[Query],
    *,
    unit: str,
    w: int = 4,
    h: int = 4,
    description: str = "",
    thresholds: Steps = NO_THRESHOLDS,
    mappings: list[model.ValueMapping] | None = None,
    decimals: int | None = None,
    links: Sequence[Link] = (),
    no_value: str | None = None,
) -> Panel:
    b = _common(sdk_stat.Panel(), title, description, queries, _datasource_of(queries))
    b = _field(b, unit, thresholds, mappings=mappings, decimals=decimals, links=links, no_value=no_value)
    b = b.color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)
    b = b.reduce_options(_reduce_last())
    return Panel(b, w, h)


def _reduce_last() -> sdk_common.ReduceDataOptions:
    return sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


@dataclass(frozen=True)
class Column:
    """One column of a per-cluster table: an instant PromQL query reduced to one value per row."""

    title: str
    expr: str
    unit: str
    thresholds: Steps = NO_THRESHOLDS
    mappings: tuple[tuple[int, str, str], ...] = ()  # (value, text, colour)
    decimals: int | None = None


@dataclass(frozen=True)
class ColumnStyle:
    unit: str
    thresholds: Steps = NO_THRESHOLDS
    mappings: tuple[tuple[int, str, str], ...] = ()
    decimals: int | None = None
    links: tuple[Link, ...] = ()
    cell: str = "color-background"


def key_table(
    title: str,
    key: str,
    columns: Sequence[Column],
    *,
    w: int = 24,
    h: int = 9,
    description: str = "",
    key_link: Link | None = None,
) -> Panel:
    """One row per `key` label value, one column per instant query, merged: the fleet's roll-call table."""
    queries = [prom(c.expr, instant=True, table=True) for c in columns]
    rename = {f"Value #{_ref_id(i)}": c.title for i, c in enumerate(columns)}
    styles = {
        c.title: ColumnStyle(
            c.unit,
            c.thresholds,
            c.mappings,
            c.decimals,
            cell="auto" if c.thresholds == NO_THRESHOLDS else "color-background",
        )
        for c in columns
    }
    if key_link is not None:
        styles[key] = ColumnStyle("string", links=(key_link,), cell="auto")
    return table(
        title,
        queries,
        w=w,
        h=h,
        description=description,
        transformations=[
            model.DataTransformerConfig(id_val="merge", options={}),
            organize(rename=rename, order={key: 0, **{c.title: i + 1 for i, c in enumerate(columns)}}),
        ],
        styles=styles,
        sort_by=key,
    )


def organize(
    *,
    hide: Sequence[str] = ("Time",),
    rename: dict[str, str] | None = None,
    order: dict[str, int] | None = None,
) -> model.DataTransformerConfig:
    """Grafana's `organize` transformation for a table: hide columns (an instant query's Time by
    default), rename them, and fix their order."""
    options: dict[str, Any] = {"excludeByName": {name: True for name in hide}}
    if order is not None:
        options["indexByName"] = order
    if rename is not None:
        options["renameByName"] = rename
    return model.DataTransformerConfig(id_val="organize", options=options)


def table(
    title: str,
    queries: Sequence[Query],
    *,
    w: int = 24,
    h: int = 8,
    description: str = "",
    unit: str = "short",
    transformations: Sequence[model.DataTransformerConfig] = (),
    styles: dict[str, ColumnStyle] | None = None,
    sort_by: str | None = None,
    sort_desc: bool = False,
) -> Panel:
    b = _common(sdk_table.Panel(), title, description, queries, _datasource_of(queries))
    b = _field(b, unit, NO_THRESHOLDS)
    for t in transformations:
        b = b.with_transformation(t)
    for name, style in sorted((styles or {}).items()):
        props = [
            model.DynamicConfigValue(id_val="unit", value=style.unit),
            model.DynamicConfigValue(id_val="thresholds", value=_thresholds(style.thresholds).build()),
            model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": style.cell}),
        ]
        if style.mappings:
            mapping = value_text({v: (t, c) for v, t, c in style.mappings})
            props.append(model.DynamicConfigValue(id_val="mappings", value=mapping))
        if style.decimals is not None:
            props.append(model.DynamicConfigValue(id_val="decimals", value=style.decimals))
        if style.links:
            links = [{"title": ln.title, "url": ln.url} for ln in style.links]
            props.append(model.DynamicConfigValue(id_val="links", value=links))
        b = b.override_by_name(name, props)
    if sort_by is not None:
        b = b.sort_by([_sort(sort_by, sort_desc)])
    return Panel(b, w, h)


def _sort(name: str, desc: bool) -> sdk_common.TableSortByFieldState:
    return sdk_common.TableSortByFieldState().display_name(name).desc(desc)


def logs(title: str, query: Query, *, w: int = 24, h: int = 12, description: str = "") -> Panel:
    if not query.loki:
        raise ValueError(f"logs panel {title!r} needs a LogQL query")
    b = _common(sdk_logs.Panel(), title, description, [query], LOKI)
    b = (
        b.show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(common.LogsSortOrder.DESCENDING)
    )
    b = b.dedup_strategy(common.LogsDedupStrategy.NONE).show_labels(False).show_common_labels(False)
    b = b.prettify_log_message(False)
    return Panel(b, w, h)
