"""Walk generated dashboards: every panel, target and variable query, and Grafana's variable substitution.

Shared by the dashboard lint (tests/unit) and the parser checks (tests/integration: promtool for PromQL,
Grafana's Lezer grammar for LogQL).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from observe.config import Config


@dataclass(frozen=True)
class Expr:
    dashboard: str  # uid
    where: str  # "panel 12 'CPU utilisation' A" or "variable namespace"
    language: str  # "promql" | "logql"
    text: str
    instant: bool


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def expressions(dash: dict[str, Any]) -> Iterator[Expr]:
    uid = dash["uid"]
    for p in panels(dash):
        for t in p.get("targets", []):
            lang = "logql" if t["datasource"]["type"] == "loki" else "promql"
            where = f"panel {p['id']} {p['title']!r} {t['refId']}"
            yield Expr(uid, where, lang, t["expr"], bool(t.get("instant")))
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["query"])
            assert m, f"{uid} variable {v['name']}: only label_values(selector, label) is used"
            yield Expr(uid, f"variable {v['name']}", "promql", m.group(1), True)


def substitute(text: str, cfg: Config) -> str:
    """What Grafana sends for the default selections: multi-value variables as a regex alternation."""
    clusters = "(" + "|".join(_prometheus_regex_escape(c.name) for c in cfg.clusters) + ")"
    values = {
        "cluster": clusters,
        "namespace": "(default|kube-system)",
        "search": "timeout",
        "__rate_interval": "2m",
        "__range": "6h",
        "__auto": "1m",
        "__interval": "1m",
    }

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name.isdigit():
            return m.group(0)  # label_replace's "$1": not a variable, Grafana leaves it alone
        assert name in values, f"unexpected template variable ${name} in {text!r}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, text)


def _prometheus_regex_escape(value: str) -> str:
    """Grafana's Prometheus datasource escapes regex metacharacters of multi-value variables with two
    backslashes (one for the PromQL string literal, one for the regex); `-` is left alone."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)
