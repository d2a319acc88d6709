"""A dashboard around the panels: grid layout, template variables, navigation links, the JSON model.

Every dashboard gets the same frame: `datasource` / `loki_datasource` variables defaulting to the
provisioned datasources' fixed uids, links to the other dashboards keeping time and variables, the
built-in annotations, and panels placed by `Grid` (explicit ids and positions, so a test can prove
nothing overlaps). JSON model: https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from observe.generate.dashboards.panels import LOKI_VAR, PROM_VAR, PROMETHEUS, Panel
from observe.generate.links import DASHBOARD_UIDS, dashboard_url

GRID_WIDTH: Final = 24  # Grafana's grid is 24 columns wide


# -- layout ----------------------------------------------------------------------------------------
@dataclass
class Grid:
    """Panels placed left to right, wrapping at 24 columns; a row starts below everything so far.

    Placement is computed here, not by the SDK's builder, so ids and positions are explicit and a test
    can check that nothing overlaps.
    """

    items: list[tuple[str, Panel | str]] = field(default_factory=list)

    def row(self, title: str) -> Grid:
        self.items.append(("row", title))
        return self

    def add(self, *panels: Panel) -> Grid:
        for p in panels:
            if not 1 <= p.w <= GRID_WIDTH or p.h < 1:
                raise ValueError(f"panel size {p.w}x{p.h} does not fit the {GRID_WIDTH}-column grid")
            self.items.append(("panel", p))
        return self

    def build(self) -> list[Any]:
        out: list[Any] = []
        x = y = row_h = 0
        next_id = 1
        for kind, item in self.items:
            if kind == "row":
                assert isinstance(item, str)
                y += row_h
                x = row_h = 0
                row = (
                    sdk.Row(item)
                    .id(next_id)
                    .collapsed(False)
                    .grid_pos(model.GridPos(h=1, w=GRID_WIDTH, x=0, y=y))
                )
                out.append(row.build())
                y += 1
            else:
                assert isinstance(item, Panel)
                if x + item.w > GRID_WIDTH:
                    y += row_h
                    x = row_h = 0
                built = item.builder.id(next_id).grid_pos(model.GridPos(h=item.h, w=item.w, x=x, y=y)).build()
                out.append(built)
                x += item.w
                row_h = max(row_h, item.h)
            next_id += 1
        return out


# -- variables -------------------------------------------------------------------------------------
def datasource_variable(name: str, kind: str, label: str, default_uid: str) -> sdk.DatasourceVariable:
    """A datasource picker whose default is the provisioned datasource's fixed uid."""
    return (
        sdk.DatasourceVariable(name)
        .label(label)
        .type(kind)
        .current(model.VariableOption(selected=True, text=default_uid, value=default_uid))
    )


def datasource_variables(prometheus_uid: str, loki_uid: str) -> list[sdk.DatasourceVariable]:
    """The `datasource` and `loki_datasource` pickers every dashboard starts with (panels.PROMETHEUS, LOKI)."""
    return [
        datasource_variable(PROM_VAR, "prometheus", "Metrics", prometheus_uid),
        datasource_variable(LOKI_VAR, "loki", "Logs", loki_uid),
    ]


def custom_variable(
    name: str, label: str, values: Sequence[str], *, multi: bool, include_all: bool
) -> sdk.CustomVariable:
    """A fixed list of values (the clusters named in the config: the dashboard and the collector agree)."""
    if not values:
        raise ValueError(f"variable {name!r} needs at least one value")
    # Selected by default: All when offered, else the first value (a list when the variable is multi).
    default_text, default_value = ("All", "$__all") if include_all else (values[0], values[0])
    current = model.VariableOption(
        selected=True,
        text=[default_text] if multi else default_text,
        value=[default_value] if multi else default_value,
    )
    options = [model.VariableOption(selected=v == default_value, text=v, value=v) for v in values]
    if include_all:
        options.insert(0, model.VariableOption(selected=True, text="All", value="$__all"))
    return (
        sdk.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .multi(multi)
        .include_all(include_all)
        .current(current)
        .options(options)
    )


def query_variable(name: str, label: str, query: str, *, include_all: bool = True) -> sdk.QueryVariable:
    """A Prometheus `label_values(...)` variable, refreshed when the time range changes."""
    return (
        sdk.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(include_all)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def textbox_variable(name: str, label: str, description: str) -> sdk.TextBoxVariable:
    return sdk.TextBoxVariable(name).label(label).description(description).default_value("")


# -- dashboard -------------------------------------------------------------------------------------
def nav_links(here: str) -> list[sdk.DashboardLink]:
    """Links from every dashboard to every other one, keeping the time range and the cluster selection."""
    titles = {
        "fleet": "Fleet overview",
        "cluster": "Cluster detail",
        "failover": "Failover readiness",
        "logs": "Logs",
        "collector": "Collector",
    }
    return [
        sdk.DashboardLink(titles[name])
        .type(model.DashboardLinkType.LINK)
        .url(dashboard_url("", name))
        .icon("dashboard")
        .include_vars(True)
        .keep_time(True)
        for name in DASHBOARD_UIDS
        if name != here
    ]


def dashboard(
    key: str,
    title: str,
    *,
    description: str,
    tags: Sequence[str],
    variables: Sequence[cogbuilder.Builder[model.VariableModel]],
    grid: Grid,
    extra_links: Sequence[sdk.DashboardLink] = (),
    refresh: str = "1m",
    time_from: str = "now-6h",
) -> dict[str, Any]:
    """Assemble one dashboard and return its JSON model (a plain dict, ready for sorted-key JSON)."""
    b = (
        sdk.Dashboard(title)
        .uid(DASHBOARD_UIDS[key])
        .description(description)
        .tags(sorted({"observe", *tags}))
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .timezone("browser")
        .refresh(refresh)
        .time(time_from, "now")
        .variables(list(variables))
        .links([*extra_links, *nav_links(key)])
        .annotation(
            sdk.AnnotationQuery()
            .name("Annotations & Alerts")
            .built_in(1)
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
    )
    built = b.build()
    built.panels = grid.build()
    out: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    return out
