"""`observe rules`: the fleet config -> alerting for a central ruler, a Loki ruler and Alertmanager.

Writes, under the output directory:
  prometheus/*.yaml              recording and alerting rule groups (Prometheus, Mimir)
  thanos/*.yaml                  the same groups with `partial_response_strategy: abort` (Thanos Ruler)
  loki/*.yaml                    Loki ruler rules (LogQL recording rules and alerts)
  alertmanager/alertmanager.yaml routing and inhibition
  tests/*.yaml                   `promtool test rules` files for prometheus/*.yaml
The catalogue, with each alert's promtool cases beside it, is in catalogue/; the runbooks are in
docs/runbooks.md (one section per alert).
"""

from __future__ import annotations

from pathlib import Path

from observe.config import Config
from observe.generate.rules import alertmanager, loki, prometheus, promtool_tests
from observe.generate.rules.catalogue import prometheus_files
from observe.generate.rules.model import RuleFile, RuleGenerationError, dump_yaml

__all__ = ["RuleGenerationError", "render_rules", "write_rules"]


def render_rules(cfg: Config) -> dict[str, str]:
    """Every generated file: relative path -> text. Pure: the same config renders the same bytes."""
    files = prometheus_files(cfg)
    loki_files: list[RuleFile] = [loki.loki_file(cfg)] if any(c.loki for c in cfg.clusters) else []
    header = prometheus.HEADER.format(label=cfg.cluster_label)
    out: dict[str, str] = {}
    rule_paths = [f"../prometheus/{f.name}.yaml" for f in files]
    for f in files:
        out[f"prometheus/{f.name}.yaml"] = dump_yaml(prometheus.render(f, cfg), header)
        out[f"thanos/{f.name}.yaml"] = dump_yaml(prometheus.render(f, cfg, thanos=True), header)
        tests = promtool_tests.render(f, cfg, rule_paths)
        if tests is not None:
            out[f"tests/{f.name}.yaml"] = dump_yaml(tests, "promtool test rules: generated with the rules.\n")
    for f in loki_files:
        out[f"loki/{f.name}.yaml"] = dump_yaml(
            prometheus.render(f, cfg), "Loki ruler rules (LogQL). " + header
        )
    alerts = [a for f in (*files, *loki_files) for a in f.alerts()]
    out["alertmanager/alertmanager.yaml"] = dump_yaml(alertmanager.render(cfg, alerts), alertmanager.HEADER)
    return dict(sorted(out.items()))


def write_rules(cfg: Config, out_dir: Path) -> list[Path]:
    """Render and write every file under `out_dir`; returns the paths written, sorted.

    Files this generator owns but no longer renders (e.g. loki/ after the last Loki source went) are
    removed, so the directory always equals a fresh render.
    """
    rendered = render_rules(cfg)
    written: list[Path] = []
    for rel, text in rendered.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for sub in ("prometheus", "thanos", "loki", "alertmanager", "tests"):
        for stale in sorted((out_dir / sub).glob("*.yaml")):
            if f"{sub}/{stale.name}" not in rendered:
                stale.unlink()
    return written
