"""`promtool test rules` files for the generated Prometheus rules: every alert fires in one case, with its
exact labels and annotations, and stays silent in another.

Format: https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/. The cases sit
beside the alerts they test, in the catalogue module that defines them (catalogue/cases.py says how they
are built); this module turns them into files. Generation fails if an alert has no case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observe.config import Config
from observe.generate.rules.catalogue import CASES
from observe.generate.rules.catalogue.cases import STEP, Case, Ctx
from observe.generate.rules.model import (
    Alert,
    RuleFile,
    RuleGenerationError,
    prom_duration,
    rename_cluster_label,
    render_template,
)
from observe.generate.rules.prometheus import alert_annotations, alert_labels

__all__ = ["CASES", "render"]


def render(rule_file: RuleFile, cfg: Config, rule_paths: list[str]) -> dict[str, Any] | None:
    """The promtool test file for one rule file (None when it has no alerts); `rule_paths` relative to it."""
    alerts = rule_file.alerts()
    if not alerts:
        return None
    ctx = Ctx(cfg)
    by_key: dict[tuple[str, str], Alert] = {(a.name, a.severity): a for a in alerts}
    groups: list[dict[str, Any]] = []
    for name in dict.fromkeys(a.name for a in alerts):
        if name not in CASES:
            raise RuleGenerationError(
                f"alert {name} has no promtool test case: add one to CASES in the catalogue module defining it"
            )
        for case in CASES[name](ctx):
            groups.append(_group(case, by_key, cfg))
    return {
        "rule_files": rule_paths,
        "evaluation_interval": prom_duration(cfg.alerts.evaluation_interval),
        "tests": groups,
    }


def _group(case: Case, by_key: Mapping[tuple[str, str], Alert], cfg: Config) -> dict[str, Any]:
    label = cfg.cluster_label
    out: dict[str, Any] = {
        "interval": prom_duration(STEP),
        "input_series": [
            {"series": rename_cluster_label(s, label), "values": v} for s, v in sorted(case.series)
        ],
        "alert_rule_test": [],
    }
    if case.comment:
        out["name"] = case.comment
    for check in case.checks:
        expected = []
        for fired in check.fires:
            alert = by_key[(check.alert, fired["severity"])]
            series = {(label if k == "cluster" else k): v for k, v in fired.items() if k != "severity"}
            labels = series | alert_labels(alert, cfg)
            notes = {k: render_template(v, series) for k, v in alert_annotations(alert, cfg).items()}
            expected.append({"exp_labels": labels, "exp_annotations": notes})
        expected.sort(key=lambda e: sorted(e["exp_labels"].items()))
        out["alert_rule_test"].append(
            {"eval_time": prom_duration(check.at), "alertname": check.alert, "exp_alerts": expected}
        )
    return out
