"""The rule generator, checked without servers: rules/ is exactly what the generator renders for the
example config; every alert carries what on-call needs; every PromQL aggregation keeps `cluster`
(parsed with promql-parser); cluster-scope alerts provably carry the label; Alertmanager groups and
inhibits by cluster; every alert has a runbook section and promtool cases that fire and stay silent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest
import yaml

from observe.config import Config, load_config, parse_config
from observe.errors import ConfigError
from observe.generate.links import dashboard_url
from observe.generate.rules import recording, render_rules, write_rules
from observe.generate.rules.model import Alert, RuleGenerationError
from observe.generate.rules.prometheus import check_cluster_scope

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "observe.example.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
INVENTORY = {recording.CLUSTER_EXPECTED, recording.CLUSTER_METRICS_EXPECTED, recording.CLUSTER_LOGS_EXPECTED}


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_rules(load_config(EXAMPLE))


def _rules(rendered: dict[str, str], prefix: str) -> list[dict[str, Any]]:
    out = []
    for path, text in rendered.items():
        if path.startswith(prefix):
            for group in yaml.safe_load(text)["groups"]:
                out.extend(group["rules"])
    return out


def _alerts(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [r for p in ("prometheus/", "loki/") for r in _rules(rendered, p) if "alert" in r]


def test_committed_rules_equal_a_fresh_render(rendered: dict[str, str]) -> None:
    committed = {
        str(p.relative_to(ROOT / "rules")): p.read_text(encoding="utf-8")
        for p in (ROOT / "rules").rglob("*.yaml")
    }
    assert sorted(committed) == sorted(rendered), "run: observe rules -c deploy/observe.example.yaml -o rules"
    stale = [path for path, text in rendered.items() if committed[path] != text]
    assert not stale, (
        f"rules/ is stale in {stale}; run: observe rules -c deploy/observe.example.yaml -o rules"
    )


def test_render_is_deterministic_and_write_removes_files_no_longer_rendered(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE)
    assert render_rules(cfg) == render_rules(cfg)
    (tmp_path / "loki").mkdir()
    (tmp_path / "loki" / "gone.yaml").write_text("groups: []\n")
    written = write_rules(cfg, tmp_path)
    assert not (tmp_path / "loki" / "gone.yaml").exists()
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == sorted(render_rules(cfg))


def test_every_alert_carries_what_on_call_needs(rendered: dict[str, str]) -> None:
    cfg = load_config(EXAMPLE)
    alerts = _alerts(rendered)
    assert len({a["alert"] for a in alerts}) >= 25
    for a in alerts:
        name, labels, notes = a["alert"], a["labels"], a["annotations"]
        assert labels["severity"] in ("critical", "warning", "info"), name
        assert labels["alert_scope"] in ("cluster", "workload", "platform"), name
        assert set(notes) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        static = labels.get("cluster")
        if static is None:
            assert "$labels.cluster" in notes["description"], name
        assert notes["runbook_url"] == f"{cfg.alerts.runbook_base_url}#{name.lower()}"
        link = static if static is not None else "{{ $labels.cluster }}"
        assert notes["dashboard_url"].startswith(cfg.grafana.url), name
        assert notes["dashboard_url"].endswith(f"?var-cluster={link}"), name
        uid = notes["dashboard_url"].split("/d/")[1].split("/")[0]
        assert notes["dashboard_url"] == dashboard_url(
            cfg.grafana.url, uid.removeprefix("observe-"), cluster=link
        )


def test_every_alert_has_a_runbook_section_and_every_section_an_alert(rendered: dict[str, str]) -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOKS.read_text(encoding="utf-8"), flags=re.M))
    names = {a["alert"] for a in _alerts(rendered)}
    assert names - headings == set(), "alerts without a runbook section"
    assert headings - names == set(), "runbook sections without an alert"


# -- cluster-correct PromQL ------------------------------------------------------------------------


def _problems(expr: str) -> list[str]:
    """Every aggregation must keep `cluster` (by includes it, without excludes it); every on() includes it."""
    problems: list[str] = []

    def visit(node: Any) -> None:
        if (
            isinstance(node, pp.AggregateExpr)
            and node.op is not None
            and str(node.op) not in ("count_values",)
        ):
            mod = node.modifier
            if mod is None:
                problems.append(f"{node}: aggregates the cluster label away")
            elif mod.type == pp.AggModifierType.By and "cluster" not in mod.labels:
                problems.append(f"by ({', '.join(mod.labels)}) lacks cluster")
            elif mod.type == pp.AggModifierType.Without and "cluster" in mod.labels:
                problems.append("without (cluster)")
        if (
            isinstance(node, pp.BinaryExpr)
            and node.modifier is not None
            and node.modifier.matching is not None
        ):
            match = node.modifier.matching
            if match.type == pp.LabelModifierType.Include and "cluster" not in match.labels:
                problems.append(f"on ({', '.join(match.labels)}) lacks cluster")
            if match.type == pp.LabelModifierType.Exclude and "cluster" in match.labels:
                problems.append("ignoring (cluster)")

    pp.walk(pp.parse(expr), visit)
    return problems


def test_every_promql_aggregation_and_match_keeps_cluster(rendered: dict[str, str]) -> None:
    rules = _rules(rendered, "prometheus/")
    assert len(rules) > 40
    bad = {r.get("alert") or r["record"]: p for r in rules if (p := _problems(r["expr"]))}
    assert bad == {}


def test_the_aggregation_check_catches_a_dropped_cluster() -> None:
    assert _problems("sum(rate(x[5m]))")
    assert _problems("sum by (job) (rate(x[5m]))")
    assert _problems("sum without (cluster) (x)")
    assert _problems("a / on (job) b")
    assert _problems("a / ignoring (cluster) b")
    assert _problems("sum by (cluster) (a) / on (cluster) sum by (cluster) (b)") == []


def test_cluster_scope_alerts_are_inventory_shaped(rendered: dict[str, str]) -> None:
    """Parsed: `<inventory> unless on (cluster) ...` or `... and on (cluster) <inventory>`."""
    scoped = [a for a in _alerts(rendered) if a["labels"]["alert_scope"] == "cluster"]
    assert {a["alert"] for a in scoped} == {"FleetClusterTelemetryMissing", "FleetClusterUnreachable"}
    for a in scoped:
        tree = pp.parse(a["expr"])
        assert isinstance(tree, pp.BinaryExpr), a["alert"]
        assert tree.modifier.matching.labels == ["cluster"], a["alert"]
        side = tree.lhs if str(tree.op) == "unless" else tree.rhs
        assert str(tree.op) in ("unless", "and") and isinstance(side, pp.VectorSelector), a["alert"]
        assert side.name in INVENTORY, a["alert"]


def test_a_cluster_scope_alert_that_could_lack_the_label_is_refused() -> None:
    bad = Alert("X", "max(up) == 0", "critical", "cluster", "s", "d {{ $labels.cluster }}", "cluster")
    with pytest.raises(RuleGenerationError, match="so it always carries the cluster label"):
        check_cluster_scope(bad)
    good = Alert(
        "X", f"(up == 0) and on (cluster) {recording.CLUSTER_EXPECTED}", "critical", "cluster", "s", "d", "c"
    )
    check_cluster_scope(good)


def test_inventory_has_one_series_per_configured_cluster_with_its_labels(rendered: dict[str, str]) -> None:
    cfg = load_config(EXAMPLE)
    inv = [r for r in _rules(rendered, "prometheus/inventory") if r["record"] == recording.CLUSTER_EXPECTED]
    assert [r["labels"]["cluster"] for r in inv] == [c.name for c in cfg.clusters]
    for r, c in zip(inv, cfg.clusters, strict=True):
        assert r["expr"] == "vector(1)"
        assert r["labels"] == {**c.labels, "cluster": c.name, "self_cluster": cfg.self_cluster}
    logs = [r["labels"]["cluster"] for r in _rules(rendered, "prometheus/inventory") if "logs" in r["record"]]
    assert logs == [c.name for c in cfg.clusters if c.loki is not None]


def test_n_minus_1_and_istio_terms_are_written_per_cluster(rendered: dict[str, str]) -> None:
    cfg = load_config(EXAMPLE)
    rules = _rules(rendered, "prometheus/failover")
    peers = [r["expr"] for r in rules if r.get("record") == recording.FAILOVER_PEERS_FREE]
    assert len(peers) == len(cfg.clusters)
    for c, expr in zip(cfg.clusters, peers, strict=True):
        others = "|".join(o.name for o in cfg.clusters if o.name != c.name)
        assert f'{{cluster=~"{others}"}}' in expr and f'"cluster", "{c.name}", "cluster", ".+"' in expr
    cross = [r["expr"] for r in rules if r.get("record") == recording.ISTIO_CROSS_CLUSTER_RATE]
    assert [re.search(r'destination_cluster!="([^"]+)"', e)[1] for e in cross] == [
        c.name for c in cfg.clusters
    ]  # type: ignore[index]


def test_thanos_flavour_aborts_on_partial_response_and_otherwise_equals_prometheus(
    rendered: dict[str, str],
) -> None:
    for path, text in rendered.items():
        if path.startswith("thanos/"):
            thanos = yaml.safe_load(text)
            plain = yaml.safe_load(rendered[path.replace("thanos/", "prometheus/")])
            for g in thanos["groups"]:
                assert g.pop("partial_response_strategy") == "abort"
            assert thanos == plain


# -- Alertmanager ----------------------------------------------------------------------------------


def test_alertmanager_groups_and_inhibits_by_cluster(rendered: dict[str, str]) -> None:
    am = yaml.safe_load(rendered["alertmanager/alertmanager.yaml"])
    routes = [am["route"], *am["route"]["routes"]]
    for r in routes:
        assert "cluster" in r.get("group_by", am["route"]["group_by"]), r
    pager = next(r for r in routes if r.get("matchers") == ['alert_scope="cluster"'])
    assert pager["group_by"] == ["cluster"], "one notification per cluster"
    assert am["route"]["routes"][0]["matchers"] == ['alertname="Watchdog"']
    alerts = {a["alert"]: a for a in _alerts(rendered)}
    for rule in am["inhibit_rules"]:
        if rule["source_matchers"] == ['alertname="ObserveCollectorDown"']:
            # The one rule spanning clusters: its targets are inventory-built, so they carry self_cluster.
            assert rule["equal"] == ["self_cluster"]
            targets = re.fullmatch(r'alertname=~"(.+)"', rule["target_matchers"][0])[1].split("|")  # type: ignore[index]
            assert "FleetClusterTelemetryMissing" in targets
            for t in targets:
                assert alerts[t]["expr"].split()[0] in INVENTORY, t
        else:
            assert "cluster" in rule["equal"], rule


def test_receivers_are_placeholders_without_secrets(rendered: dict[str, str]) -> None:
    am = yaml.safe_load(rendered["alertmanager/alertmanager.yaml"])
    urls = [w["url"] for r in am["receivers"] for w in r["webhook_configs"]]
    assert urls and all(u.startswith("http://alert-receiver.invalid/") for u in urls)
    assert {r["name"] for r in am["receivers"]} >= {"fleet-pager", "heartbeat"}


# -- promtool test coverage ------------------------------------------------------------------------


def test_every_prometheus_alert_has_a_firing_and_a_silent_promtool_case(rendered: dict[str, str]) -> None:
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for path, text in rendered.items():
        if path.startswith("tests/"):
            for group in yaml.safe_load(text)["tests"]:
                for check in group["alert_rule_test"]:
                    for exp in check["exp_alerts"]:
                        fired.add((check["alertname"], exp["exp_labels"]["severity"]))
                        assert exp["exp_annotations"], check
                    if not check["exp_alerts"]:
                        silent.add(check["alertname"])
    for a in _rules(rendered, "prometheus/"):
        if "alert" in a:
            assert (a["alert"], a["labels"]["severity"]) in fired, f"{a['alert']} never fires in a test"
            assert a["alert"] in silent or a["alert"] == "Watchdog", f"{a['alert']} has no silent case"


def test_missing_cluster_has_silent_death_and_clean_stale_cases(rendered: dict[str, str]) -> None:
    tests = yaml.safe_load(rendered["tests/fleet.yaml"])["tests"]
    names = [t.get("name", "") for t in tests]
    death = tests[next(i for i, n in enumerate(names) if n.startswith("silent death"))]
    stale = tests[next(i for i, n in enumerate(names) if n.startswith("clean stop"))]
    assert any(s["values"] == "1x10" for s in death["input_series"])
    assert any(s["values"] == "1x10 stale" for s in stale["input_series"])
    # Silent death: detected after the 5m lookback plus `for` (3m), not before.
    assert [(c["eval_time"], bool(c["exp_alerts"])) for c in death["alert_rule_test"]] == [
        ("17m", False),
        ("19m", True),
    ]
    assert [(c["eval_time"], bool(c["exp_alerts"])) for c in stale["alert_rule_test"]] == [
        ("13m", False),
        ("14m", True),
    ]


def test_an_alert_without_a_promtool_case_fails_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    from observe.generate.rules import promtool_tests

    monkeypatch.delitem(promtool_tests.CASES, "VeleroBackupFailed")
    with pytest.raises(RuleGenerationError, match="VeleroBackupFailed has no promtool test case"):
        render_rules(load_config(EXAMPLE))


# -- config ----------------------------------------------------------------------------------------


def _cfg(**alerts: Any) -> Config:
    return parse_config(
        {"clusters": [{"name": "a", "prometheus": {"url": "http://a:9090"}}], "alerts": alerts}
    )


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"nodes_not_ready_warning": 1.5}, "alerts.nodes_not_ready_warning: must be a fraction in (0, 1]"),
        ({"queue_usage_warning": 0.99}, "queue_usage_warning must be below queue_usage_critical"),
        ({"collector_down_for": "10m"}, "collector_down_for must not exceed cluster_missing_for"),
        ({"presence_metric": "up{job='x'}"}, "alerts.presence_metric: not a metric name"),
        ({"apiserver_selector": '{job="x"}'}, "give label matchers without braces"),
        ({"failover_pool_labels": ["bad-name"]}, "not a valid label name: 'bad-name'"),
        ({"runbook_base_url": "docs/runbooks.md"}, "alerts.runbook_base_url: not a URL"),
        ({"cluster_missing_for": "soon"}, "alerts.cluster_missing_for: not a duration"),
    ],
)
def test_bad_alert_settings_are_rejected_with_their_path(alerts: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(**alerts)
    assert any(message in p for p in err.value.problems), err.value.problems


def test_defaults_and_unknown_istio_cluster() -> None:
    cfg = _cfg()
    assert (
        cfg.alerts.cluster_missing_for == 180
        and cfg.alerts.collector_down_for <= cfg.alerts.cluster_missing_for
    )
    with pytest.raises(RuleGenerationError, match="istio_cluster_ids: not configured clusters: zz"):
        render_rules(_cfg(istio_cluster_ids={"zz": "x"}))


def test_a_config_without_any_prometheus_source_is_refused() -> None:
    cfg = parse_config(
        {"clusters": [{"name": "a", "loki": {"url": "http://a:3100", "selectors": ['{a="b"}']}}]}
    )
    with pytest.raises(RuleGenerationError, match="at least one cluster with a prometheus source"):
        render_rules(cfg)


def test_cluster_label_is_renamed_everywhere() -> None:
    cfg = parse_config(
        {
            "cluster_label": "k8s_cluster",
            "clusters": [
                {
                    "name": "a",
                    "prometheus": {"url": "http://a:9090"},
                    "loki": {"url": "http://a:1", "selectors": ["{}"]},
                },
                {"name": "b", "prometheus": {"url": "http://b:9090"}},
            ],
        }
    )
    out = render_rules(cfg)
    rules = [r for p in ("prometheus/", "loki/") for r in _rules(out, p)]
    for r in rules:
        assert not re.search(r"(?<![\w:])cluster(?![\w:])", r["expr"]), r["expr"]
        assert "cluster" not in r.get("labels", {}), r
        for text in r.get("annotations", {}).values():
            assert "$labels.cluster" not in text
    text = "\n".join(out.values())
    assert "$labels.k8s_cluster" in text and "by (k8s_cluster" in text and 'k8s_cluster="a"' in text
    am = yaml.safe_load(out["alertmanager/alertmanager.yaml"])
    assert am["route"]["group_by"] == ["k8s_cluster", "alertname"]
