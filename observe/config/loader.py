"""Loading a config: YAML parse, `${VAR}` expansion, validation, then the checks that span sections.

In order: YAML parse (relabel string fields keep the text as written, as Prometheus reads them), `${VAR}`
expansion from the environment (`$$` is a literal `$`), validation with pydantic (unknown keys rejected),
then cross-field checks, and with `for_service` what `observe run` needs beyond the generators. Every
problem is collected and reported at once, each naming its YAML path, e.g.
`clusters[1].prometheus.url: not a URL: 'htp://x'`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from observe.config.fleet import Config
from observe.errors import ConfigError
from observe.transform.relabel import TEXT_FIELDS
from observe.units import format_duration

_ENV_REF: Final = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_YAML_NULL: Final = "tag:yaml.org,2002:null"


def load_config(path: str | Path, *, for_service: bool = False) -> Config:
    """Read, expand and validate a config file; raises ConfigError listing every problem.

    `for_service` adds what running the collector needs (`observe run`, `observe check`); the generators
    (`observe rules`, `observe dashboards`) load without it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from exc
    try:
        data = _read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    return parse_config(data, source=str(p), for_service=for_service)


def parse_config(data: Any, *, source: str = "config", for_service: bool = False) -> Config:
    """Validate an already-parsed YAML tree; raises ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    problems: list[str] = []
    data = _expand_env(data, "", problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(f"{_path(tuple(e['loc']))}: {_message(e)}" for e in exc.errors())
        raise ConfigError(problems) from None
    problems.extend(_cross_checks(cfg))
    if for_service:
        problems.extend(service_problems(cfg))
    if problems:
        raise ConfigError(problems)
    return cfg


def service_problems(cfg: Config) -> list[str]:
    """What the collector needs beyond a config the generators accept; each message names its YAML path.

    A cluster's `loki` without `central.loki` ships its logs to the embedded store, as metrics without
    `central.remote_write` do. A `kubernetes.kubeconfig` must be readable and hold its context (the
    generators never read it). Checks that only running needs belong here."""
    problems: list[str] = []
    for i, c in enumerate(cfg.clusters):
        k = c.kubernetes
        if k is not None and k.kubeconfig is not None:
            from observe.kube.kubeconfig import load_kubeconfig  # only for a fleet that uses one

            try:
                load_kubeconfig(k.kubeconfig, k.context)
            except ConfigError as exc:
                key = "context" if k.context is not None and "no context" in str(exc) else "kubeconfig"
                problems.extend(f"clusters[{i}].kubernetes.{key}: {p}" for p in exc.problems)
    return problems


def require_service_config(cfg: Config) -> None:
    """Raise ConfigError if the collector cannot run this config (for API users who skip the loader)."""
    problems = service_problems(cfg)
    if problems:
        raise ConfigError(problems)


def _cross_checks(cfg: Config) -> list[str]:
    """Rules that span fields; each message names its YAML path."""
    problems: list[str] = []
    if not cfg.clusters and cfg.discovery is None:
        given = "clusters" in cfg.model_fields_set
        problems.append(
            "clusters: give at least one cluster, or discovery" if given else "clusters: required key is missing"
        )
    seen: dict[str, int] = {}
    for i, c in enumerate(cfg.clusters):
        if c.name in seen:
            problems.append(
                f"clusters[{i}].name: duplicate cluster name {c.name!r} (also clusters[{seen[c.name]}])"
            )
        seen.setdefault(c.name, i)
        if cfg.cluster_label in c.labels:
            problems.append(
                f"clusters[{i}].labels.{cfg.cluster_label}: clashes with cluster_label; the cluster name is its value"
            )
        if c.prometheus is None and c.loki is None:
            problems.append(f"clusters[{i}]: give at least one of prometheus or loki")
        for src_name in ("prometheus", "loki"):
            src = getattr(c, src_name)
            if src is not None and src.service is not None and c.kubernetes is None:
                problems.append(
                    f"clusters[{i}].{src_name}.service: needs clusters[{i}].kubernetes (a kubeconfig or "
                    "api_server) to reach the service through the API server"
                )
            # Only a timeout the user wrote: an unset one is already capped at interval (Config).
            if src is not None and "timeout" in src.model_fields_set and src.timeout >= cfg.interval:
                problems.append(
                    f"clusters[{i}].{src_name}.timeout: {format_duration(src.timeout)} must be shorter than "
                    f"interval ({format_duration(cfg.interval)}) so one slow cluster cannot overlap its next cycle"
                )
    if cfg.self_cluster in seen:
        problems.append(
            f"self_cluster: {cfg.self_cluster!r} is also a name in clusters; pick a distinct name"
        )
    return problems


def _read_yaml(text: str) -> Any:
    """`yaml.safe_load`, except that relabel string fields keep the scalar's text as written.

    Prometheus (yaml.v2) reads any scalar into a string field as written: `regex: yes` is "yes",
    `replacement: 1.50` is "1.50", `regex: 12:30` is "12:30"; PyYAML's YAML 1.1 types would give True,
    1.5 and 750. Checked against Prometheus 2.42's /api/v1/status/config."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "relabel_configs":
                _keep_relabel_text(value, data.get("relabel_configs"))
    return data


def _keep_relabel_text(rules_node: yaml.Node, rules: Any) -> None:
    if not (isinstance(rules_node, yaml.SequenceNode) and isinstance(rules, list)):
        return  # not a list: validation reports it
    for rule_node, rule in zip(rules_node.value, rules, strict=True):
        if not (isinstance(rule_node, yaml.MappingNode) and isinstance(rule, dict)):
            continue
        for key, value in rule_node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name in TEXT_FIELDS and _is_text(value):
                rule[name] = value.value
            elif name == "source_labels" and isinstance(value, yaml.SequenceNode):
                rule[name] = [
                    v.value if _is_text(v) else c for v, c in zip(value.value, rule[name], strict=True)
                ]


def _is_text(node: yaml.Node) -> bool:
    # null stays None: Prometheus reads it as the field's zero value, and so does RelabelConfig.
    return isinstance(node, yaml.ScalarNode) and node.tag != _YAML_NULL


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in ("function-after", "function-before"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1]) if err["loc"] else ""
        if name in ("bearer_token", "password"):
            return f"inline secrets are not accepted: use {name}_file or {name}_env"
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _expand_env(node: Any, path: str, problems: list[str]) -> Any:
    """Expand `${VAR}` in every string of the YAML tree; `$$` is a literal `$`."""
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in os.environ:
                problems.append(f"{path or '(top level)'}: environment variable ${{{name}}} is not set")
                return ""
            return os.environ[name]

        return _ENV_REF.sub(repl, node)
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {
            # relabel_configs keep Prometheus' own `$1`/`${name}` templates: Prometheus expands no env there.
            k: v
            if (not path and k == "relabel_configs")
            else _expand_env(v, f"{path}.{k}" if path else str(k), problems)
            for k, v in node.items()
        }
    return node
