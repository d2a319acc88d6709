"""The few value types of the rule generator: recording rules, alerts, groups, and how they become YAML.

The YAML follows Prometheus' rule-file format (https://prometheus.io/docs/prometheus/latest/configuration/
recording_rules/), which the Thanos Ruler, the Mimir ruler and the Loki ruler read too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from observe.errors import ObserveError
from observe.units import format_duration

Severity = Literal["critical", "warning", "info"]
Scope = Literal["cluster", "workload", "platform"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")


class RuleGenerationError(ObserveError):
    """The generator refused to write a rule (e.g. a cluster-scope alert that could lack its cluster)."""


@dataclass(frozen=True)
class Record:
    """A recording rule. Several rules may share a name (one per cluster) when their static labels differ."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    """An alerting rule, with what the on-call engineer reads.

    `summary` and `description` are Prometheus templates; write `$labels.cluster` and the generator renames
    it when the config's `cluster_label` is not `cluster`. `dashboard` is a key of links.DASHBOARD_UIDS.
    `muted_by_collector_down`: an absence alert that a dead collector would raise for every cluster.
    """

    name: str
    expr: str
    severity: Severity
    scope: Scope
    summary: str
    description: str
    dashboard: str
    for_: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    muted_by_collector_down: bool = False


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Record | Alert, ...]


@dataclass(frozen=True)
class RuleFile:
    """One generated file of rule groups, e.g. `prometheus/fleet.yaml`."""

    name: str
    groups: tuple[Group, ...]

    def alerts(self) -> list[Alert]:
        return [r for g in self.groups for r in g.rules if isinstance(r, Alert)]


# -- rendering -------------------------------------------------------------------------------------

_LABEL_TOKEN = re.compile(r"(?<![\w:$.])cluster(?![\w:])")
_TEMPLATE_TOKEN = re.compile(r"\$labels\.cluster\b")


def rename_cluster_label(expr: str, cluster_label: str) -> str:
    """Rename the label token `cluster` in PromQL/LogQL (not `source_cluster`, not metric names)."""
    if cluster_label == "cluster":
        return expr
    return _LABEL_TOKEN.sub(cluster_label, expr)


def rename_in_template(text: str, cluster_label: str) -> str:
    if cluster_label == "cluster":
        return text
    return _TEMPLATE_TOKEN.sub(f"$labels.{cluster_label}", text)


def prom_duration(seconds: float) -> str:
    """A Prometheus duration (`5m`, `1h30m`, `1d2h`): whole seconds, as rule files require."""
    if seconds != int(seconds):
        raise RuleGenerationError(f"a rule duration must be whole seconds, got {seconds}")
    return format_duration(float(int(seconds)))


def num(value: float) -> str:
    """A PromQL number literal without float noise: 0.1 -> '0.1', 1.0 -> '1', 93600.0 -> '93600'."""
    return f"{value:.10g}"


def render_template(text: str, labels: Mapping[str, str]) -> str:
    """Expand `{{ $labels.x }}` as Prometheus does (a missing label is empty), for promtool tests."""
    return re.sub(
        r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", lambda m: labels.get(m.group(1), ""), text
    )


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line expressions as literal blocks: the file reads like the query a person would write.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any, header: str) -> str:
    """Stable YAML (sorted keys, no line folding) behind a comment header."""
    body = yaml.dump(
        data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=10_000, allow_unicode=True
    )
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + body
