"""Every dashboard query parses with the real parsers: PromQL with Prometheus' own (`promtool check rules`
on the expressions written as recording rules), LogQL with Grafana's `@grafana/lezer-logql` grammar."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from observe.config import Config, load_config
from observe.generate.dashboards import build_dashboards
from tests.dashboard_queries import Expr, expressions, substitute
from tests.lezer_logql import parse_logql
from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.real_server


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(ROOT / "deploy" / "observe.example.yaml")


def _all(cfg: Config, language: str) -> list[Expr]:
    return [e for d in build_dashboards(cfg).values() for e in expressions(d) if e.language == language]


def test_every_promql_expression_parses_with_promtool(tmp_path: Path, cfg: Config) -> None:
    promtool = require_binary("promtool")
    exprs = _all(cfg, "promql")
    assert len(exprs) > 60
    rules = [{"record": f"dashboard:check_{i}", "expr": substitute(e.text, cfg)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        # Map promtool's "N:M: ..." rule index back to the panel it came from.
        where = "\n".join(f"  check_{i}: {e.dashboard} {e.where}: {e.text}" for i, e in enumerate(exprs))
        pytest.fail(f"promtool check rules failed:\n{proc.stdout}{proc.stderr}\nexpressions:\n{where}")
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The check above would catch a typo: the same path fails on a bad expression."""
    promtool = require_binary("promtool")
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b", "expr": "sum by (x (up)"}]}]})
    )
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_every_logql_expression_parses_with_grafanas_grammar(cfg: Config) -> None:
    exprs = _all(cfg, "logql")
    assert len(exprs) >= 8
    results = parse_logql([substitute(e.text, cfg) for e in exprs])
    bad = [
        f"{e.dashboard} {e.where}: {e.text}: {r['errors']}"
        for e, r in zip(exprs, results, strict=True)
        if r["errors"]
    ]
    assert not bad, "\n".join(bad)


def test_lezer_logql_rejects_a_broken_expression() -> None:
    results = parse_logql(['sum by (cluster) (rate({cluster=~"a"} [1m])', '{cluster=~"a"} |~ "x"'])
    assert results[0]["errors"] and not results[1]["errors"]
