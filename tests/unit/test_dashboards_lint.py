"""Structural lint of every generated dashboard, the committed output, and the provisioning examples."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from observe.config import Config, GrafanaConfig, load_config, parse_config
from observe.generate.dashboards import build_dashboards, folder_uid, render, write_dashboards
from observe.generate.links import DASHBOARD_UIDS
from observe.telemetry import Telemetry
from tests.dashboard_queries import expressions, panels

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "observe.example.yaml"
VARIABLES = {"datasource", "loki_datasource", "cluster"}


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def dashboards(cfg: Config) -> dict[str, dict[str, Any]]:
    return build_dashboards(cfg)


def test_one_dashboard_per_fixed_uid(dashboards: dict[str, dict[str, Any]]) -> None:
    assert sorted(dashboards) == sorted(DASHBOARD_UIDS.values())
    for uid, d in dashboards.items():
        assert d["uid"] == uid and d["title"] and "observe" in d["tags"]


def test_panel_ids_and_ref_ids_are_unique(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        for p in panels(d):
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)), f"{uid} panel {p['id']}: duplicate refIds {refs}"


def test_grid_positions_are_valid_and_do_not_overlap(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        cells: dict[tuple[int, int], int] = {}
        for p in panels(d):
            g = p["gridPos"]
            assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["y"] >= 0, f"{uid} panel {p['id']}: {g}"
            assert g["x"] + g["w"] <= 24, f"{uid} panel {p['id']} is wider than the grid: {g}"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    other = cells.setdefault((x, y), p["id"])
                    assert other == p["id"], f"{uid}: panels {other} and {p['id']} overlap at ({x},{y})"


def test_every_query_uses_the_datasource_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    wanted = {"prometheus": "${datasource}", "loki": "${loki_datasource}"}
    for uid, d in dashboards.items():
        for p in panels(d):
            if p["type"] == "row":
                continue
            ds = p["datasource"]
            assert ds["uid"] == wanted[ds["type"]], f"{uid} panel {p['id']}: {ds}"
            assert p["targets"], f"{uid} panel {p['id']} has no query"
            for t in p["targets"]:
                assert t["datasource"] == ds, f"{uid} panel {p['id']} {t['refId']}: {t['datasource']}"
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"]["uid"] == "${datasource}", f"{uid} variable {v['name']}"


def test_variables_default_to_the_configured_datasource_uids(dashboards: dict[str, dict[str, Any]]) -> None:
    g = GrafanaConfig()
    for uid, d in dashboards.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert set(variables) >= VARIABLES, uid
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["datasource"]["current"]["value"] == g.prometheus_datasource_uid
        assert variables["loki_datasource"]["query"] == "loki"
        assert variables["loki_datasource"]["current"]["value"] == g.loki_datasource_uid


def test_cluster_variable_lists_the_configured_clusters(
    cfg: Config, dashboards: dict[str, dict[str, Any]]
) -> None:
    names = [c.name for c in cfg.clusters]
    for uid, d in dashboards.items():
        var = next(v for v in d["templating"]["list"] if v["name"] == "cluster")
        values = var["query"].split(",")
        if uid == DASHBOARD_UIDS["collector"]:
            assert values == [*names, cfg.self_cluster]
        elif uid == DASHBOARD_UIDS["logs"]:
            assert values == [c.name for c in cfg.clusters if c.loki is not None]
        else:
            assert values == names
        assert var["multi"] is (uid != DASHBOARD_UIDS["cluster"]), uid


RANGE = re.compile(r"\[([^\]]*)\]")


def test_every_range_uses_grafana_intervals(dashboards: dict[str, dict[str, Any]]) -> None:
    """PromQL rate()/increase() use $__rate_interval (or $__range for totals over the time range); LogQL
    uses $__auto (range queries) or $__range (instant), as Grafana recommends for Loki since 10.2."""
    seen_rates = 0
    for d in dashboards.values():
        for e in expressions(d):
            text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e.text)  # brackets inside strings are regex classes
            for window in RANGE.findall(text):
                allowed = (
                    {"$__rate_interval", "$__range"} if e.language == "promql" else {"$__auto", "$__range"}
                )
                assert window in allowed, f"{e.dashboard} {e.where}: range [{window}] in {e.text}"
            for m in re.finditer(r"\b(i?rate)\(", text):
                seen_rates += 1
                if e.language == "promql":
                    rest = text[m.end() :]
                    assert RANGE.search(rest) and RANGE.search(rest).group(1) == "$__rate_interval", (  # type: ignore[union-attr]
                        f"{e.dashboard} {e.where}: rate() without $__rate_interval: {e.text}"
                    )
    assert seen_rates > 20


def _links(d: dict[str, Any]) -> list[str]:
    urls = [ln["url"] for ln in d.get("links", [])]
    for p in panels(d):
        fc = p.get("fieldConfig", {})
        urls += [ln["url"] for ln in fc.get("defaults", {}).get("links", [])]
        for o in fc.get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "links":
                    urls += [ln["url"] for ln in prop["value"]]
        urls += [ln["url"] for ln in p.get("links", [])]
    return urls


def test_every_link_targets_an_existing_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    targets: dict[str, int] = {}
    for uid, d in dashboards.items():
        for url in _links(d):
            if url.startswith("/explore?"):
                assert "panes=" in url and "${" in url, (
                    f"{uid}: explore link without a datasource variable: {url}"
                )
                continue
            m = re.match(r"/d/([^/?]+)/", url)
            assert m, f"{uid}: link to something that is not one of our dashboards: {url}"
            assert m.group(1) in dashboards, f"{uid}: link to unknown dashboard uid {m.group(1)!r}"
            targets[m.group(1)] = targets.get(m.group(1), 0) + 1
    # Fleet rows and series drill down to the detail; every dashboard links to every other one.
    assert targets[DASHBOARD_UIDS["cluster"]] > 10
    assert set(targets) == set(dashboards)


def test_fleet_table_links_each_cluster_row_to_its_detail(dashboards: dict[str, dict[str, Any]]) -> None:
    fleet = dashboards[DASHBOARD_UIDS["fleet"]]
    table = next(p for p in panels(fleet) if p["title"] == "Every cluster")
    cluster_col = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "cluster")
    links = next(p["value"] for p in cluster_col["properties"] if p["id"] == "links")
    assert links[0]["url"].startswith("/d/observe-cluster/observe-cluster?var-cluster=${__value.raw}&")


def test_units_and_thresholds_are_set(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, d in dashboards.items():
        for p in panels(d):
            if p["type"] in ("row", "logs"):
                continue
            defaults = p["fieldConfig"]["defaults"]
            assert defaults.get("unit"), f"{uid} panel {p['id']} {p['title']!r} has no unit"
            assert defaults.get("thresholds", {}).get("steps"), f"{uid} panel {p['id']} has no thresholds"
            for o in p["fieldConfig"].get("overrides", []):
                ids = {prop["id"] for prop in o["properties"]}
                assert "unit" in ids, f"{uid} panel {p['id']} column {o['matcher']['options']} has no unit"


def test_collector_queries_name_only_metrics_the_collector_exports(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    exported = set()
    for family in Telemetry().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}
        exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    used = set()
    for d in dashboards.values():
        for e in expressions(d):
            used |= set(re.findall(r"\bobserve_[a-z_]+\b", e.text))
    assert used, "no collector metric is queried"
    assert used <= exported, f"not exported by observe/telemetry/events.py: {sorted(used - exported)}"


def test_committed_dashboards_match_the_generator(
    tmp_path: Path, dashboards: dict[str, dict[str, Any]]
) -> None:
    """dashboards/ is the generator's output for deploy/observe.example.yaml: regenerate and diff."""
    committed = ROOT / "dashboards"
    expected = {f"{uid}.json": render(d) for uid, d in dashboards.items()}
    actual = {p.name: p.read_text(encoding="utf-8") for p in committed.glob("*.json")}
    assert sorted(actual) == sorted(expected), (
        "run: observe dashboards -c deploy/observe.example.yaml -o dashboards/"
    )
    for name, text in expected.items():
        assert actual[name] == text, (
            f"dashboards/{name} is stale: run observe dashboards -c ... -o dashboards/"
        )


def test_write_is_stable_and_sorted(tmp_path: Path, cfg: Config) -> None:
    paths = write_dashboards(cfg, tmp_path / "out")
    first = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in paths}
    again = write_dashboards(cfg, tmp_path / "out")
    assert {
        p.name: (p.read_text(), p.stat().st_mtime_ns) for p in again
    } == first  # unchanged files untouched
    text = paths[0].read_text()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_cluster_label_from_config_is_used(cfg: Config) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["cluster_label"] = "k8s_cluster"
    other = build_dashboards(parse_config(raw))
    fleet = json.dumps(other[DASHBOARD_UIDS["fleet"]])
    assert 'k8s_cluster=~\\"$cluster\\"' in fleet
    # Self-metrics keep `cluster`; joins copy it to the fleet's label.
    assert "label_replace(max by (cluster) (observe_cluster_up" in fleet


def test_provisioning_examples_agree_with_the_config_defaults(cfg: Config) -> None:
    prov = ROOT / "deploy" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "observe.yaml").read_text())
    by_type = {d["type"]: d for d in ds["datasources"]}
    g = GrafanaConfig()
    assert by_type["prometheus"]["uid"] == g.prometheus_datasource_uid
    assert by_type["loki"]["uid"] == g.loki_datasource_uid
    assert by_type["prometheus"]["jsonData"]["timeInterval"] == "30s" and cfg.interval == 30
    providers = yaml.safe_load((prov / "dashboards" / "observe.yaml").read_text())["providers"]
    assert providers[0]["folder"] == cfg.grafana.folder
    assert providers[0]["folderUid"] == folder_uid(cfg.grafana.folder)
    assert providers[0]["type"] == "file"


def test_folder_uid_is_a_valid_grafana_uid() -> None:
    for title in ("Fleet", "Platform / Observability dashboards with a very long name", "!!!"):
        uid = folder_uid(title)
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), uid
        assert uid not in DASHBOARD_UIDS.values()
    assert folder_uid("Fleet") == "observe-folder-fleet"
