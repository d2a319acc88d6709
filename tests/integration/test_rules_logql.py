"""Every LogQL expression of the generated Loki rules parses with Grafana's own LogQL grammar
(`@grafana/lezer-logql`, run by Node.js from tests/js/), and every aggregation keeps `cluster`.
No Loki server can be installed here; the grammar is the one Grafana's query editor uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lezer_logql import parse_logql

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.real_server


def _loki_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted((ROOT / "rules" / "loki").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def test_every_generated_logql_expression_parses_and_keeps_cluster() -> None:
    rules = _loki_rules()
    assert len(rules) >= 5
    results = parse_logql([r["expr"] for r in rules])
    for rule, result in zip(rules, results, strict=True):
        name = rule.get("alert") or rule["record"]
        assert result["errors"] == [], f"{name}: {result['errors']}"
        assert result["groupings"], f"{name}: no aggregation"
        for g in result["groupings"]:
            assert g["kind"] == "by" and "cluster" in g["labels"], f"{name}: {g}"


def test_the_parser_reports_syntax_errors_and_groupings() -> None:
    """The check above is not vacuous: broken LogQL yields error nodes, and groupings are read."""
    broken, dropped = parse_logql(
        ['sum by (cluster (rate({cluster=~".+"}[5m]))', 'sum without (cluster) (rate({a="b"} |= "x" [5m]))']
    )
    assert broken["errors"]
    assert dropped["errors"] == [] and dropped["groupings"] == [{"kind": "without", "labels": ["cluster"]}]
