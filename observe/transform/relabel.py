"""Prometheus `relabel_configs`, with the semantics of Prometheus 2.42.

Upstream: model/relabel/relabel.go (https://github.com/prometheus/prometheus/blob/v2.42.0/model/relabel/relabel.go),
documented at https://prometheus.io/docs/prometheus/2.42/configuration/configuration/#relabel_config.

`RelabelConfig` validates like Prometheus' `UnmarshalYAML` (first problem wins, as there), each message
naming its field. A YAML scalar in a string field (`regex: 200`, `target_label: yes`) is its text, as
Prometheus' yaml.v2 reads it (the loader keeps the text as written). Two deliberate differences, both
where 2.42 would fail the whole scrape instead: `lowercase`, `uppercase`, `keepequal` and `dropequal`
need a plain label name as `target_label` (2.42 accepts `$1` there, then writes a label literally named
`$1`; later versions reject it at load too), and a series that a `labelmap` leaves with an invalid label
name is dropped on its own.

`Relabeler` precompiles a rule list and applies it to one label set (`dict`, empty value == absent, as
in Prometheus' labels.Builder). Regexes are Go RE2 syntax, translated by `observe.transform.goregexp`.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from observe.transform.goregexp import GoRegexp, GoRegexpError, compile_go, compile_template, expand

Action = Literal[
    "replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
    "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
]  # fmt: skip
ACTIONS: Final[tuple[str, ...]] = get_args(Action)

_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# relabel.go's `relabelTarget`: a label name in which `$1`, `${1}`, `$name` templates may stand for parts.
_TEMPLATE_TARGET: Final = re.compile(r"(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+", re.ASCII)
_DEFAULT_REGEX: Final = "(.*)"
_DEFAULT_REPLACEMENT: Final = "$1"
_DEFAULT_SEPARATOR: Final = ";"
_PLAIN_TARGET: Final = ("lowercase", "uppercase", "keepequal", "dropequal")
_DEFAULTS: Final[dict[str, object]] = {
    "target_label": "",
    "modulus": 0,
    "separator": _DEFAULT_SEPARATOR,
    "replacement": _DEFAULT_REPLACEMENT,
}


def _text(value: Any) -> Any:
    """A YAML scalar read into a string field as Prometheus (yaml.v2) reads it: as a string, whatever its
    YAML 1.1 type (`regex: 200`, `separator: 0`, `target_label: true`), and null as the empty string.
    The loader passes a file's scalars as written (`1.50` stays "1.50", `yes` stays "yes"); a Python value
    (a dict given to `parse_config`) has no text left, so it is spelled as YAML would write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | datetime.date):
        return str(value)
    return value


def _action(value: Any) -> Any:
    # Prometheus lowercases the action before matching it (Action.UnmarshalYAML).
    if value is not None:  # `action: ~` stays refused: Prometheus says "relabel action cannot be empty"
        value = _text(value)
    if isinstance(value, str):
        if value.lower() not in ACTIONS:
            raise ValueError(f"unknown relabel action {value!r}; one of: {', '.join(ACTIONS)}")
        return value.lower()
    return value


Text = Annotated[str, BeforeValidator(_text)]
TEXT_FIELDS: Final = frozenset({"separator", "target_label", "regex", "replacement", "action"})
"""The string fields (besides `source_labels`' items) whose YAML scalars the loader passes as written."""


class RelabelConfig(BaseModel):
    """One `relabel_config`: field names, defaults and validation as in Prometheus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_labels: list[Text] = Field(default_factory=list)
    separator: Text = _DEFAULT_SEPARATOR
    target_label: Text = ""
    regex: Text = _DEFAULT_REGEX  # `regex: null` is the empty regex, as in Prometheus
    modulus: int = Field(default=0, ge=0, lt=2**64)
    replacement: Text = _DEFAULT_REPLACEMENT
    action: Annotated[Action, BeforeValidator(_action)] = "replace"

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        # yaml.v2 leaves a null source_labels nil and a null modulus 0: both as if not given (labeldrop
        # and labelkeep refuse a *given* source_labels, even an empty one).
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in ("source_labels", "modulus")}
        return data

    @field_validator("source_labels")
    @classmethod
    def _source_labels(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _LABEL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid label name")
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compile_go(value)
        except GoRegexpError as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _validate(self) -> RelabelConfig:
        problem = self._problem()
        if problem:
            raise ValueError(problem)
        return self

    def _problem(self) -> str | None:
        """relabel.go's checks in its order; the first problem, naming its field."""
        act, target, given = self.action, self.target_label, self.model_fields_set
        if act == "hashmod" and self.modulus == 0:
            return "modulus: action hashmod requires a non-zero modulus"
        if act in ("replace", "hashmod", *_PLAIN_TARGET) and not target:
            return f"target_label: action {act} requires a target_label"
        if act == "replace" and not _TEMPLATE_TARGET.fullmatch(target):
            return f"target_label: {target!r} is neither a label name nor a $-template of one (action {act})"
        if act in (*_PLAIN_TARGET, "hashmod") and not _LABEL_NAME.fullmatch(target):
            return f"target_label: {target!r} is not a valid label name (action {act})"
        if act in _PLAIN_TARGET and self.replacement != _DEFAULT_REPLACEMENT:
            return f"replacement: cannot be set for action {act}"
        if act == "labelmap" and not _TEMPLATE_TARGET.fullmatch(self.replacement):
            return (
                f"replacement: {self.replacement!r} is neither a label name nor a $-template of one "
                "(action labelmap)"
            )
        if act in ("keepequal", "dropequal"):
            # Prometheus compares the regex by identity: even an explicit `regex: (.*)` is refused.
            extra = ["regex"] if "regex" in given else []
            extra += [f for f in ("modulus", "separator") if getattr(self, f) != _DEFAULTS[f]]
            if extra:
                only = "give only source_labels and target_label"
                return f"{', '.join(extra)}: not allowed with action {act} ({only})"
        if act in ("labeldrop", "labelkeep"):
            # Even `source_labels: []`: Prometheus sees a non-nil list.
            extra = ["source_labels"] if "source_labels" in given else []
            extra += [f for f in _DEFAULTS if getattr(self, f) != _DEFAULTS[f]]
            if extra:
                return f"{', '.join(extra)}: not allowed with action {act} (only regex)"
        return None


# -- engine -----------------------------------------------------------------------------------------

Rule = Callable[[dict[str, str]], bool]
"""One compiled rule: mutates the label dict in place; False means the series is dropped."""


class Relabeler:
    """A rule list compiled once; `apply` runs it on one label set (once per new series on the hot path)."""

    def __init__(self, configs: Sequence[RelabelConfig]) -> None:
        self.configs = tuple(configs)
        self._rules: tuple[Rule, ...] = tuple(_compile(c) for c in self.configs)
        # Only labelmap can write a name that is not a label name (`replacement: $1` of `a_1` gives `1`).
        self._check_names = any(c.action == "labelmap" for c in self.configs)

    def __len__(self) -> int:
        return len(self._rules)

    def apply(self, labels: dict[str, str]) -> dict[str, str] | None:
        """The relabelled copy of `labels` (empty values removed), or None if a rule dropped it or it
        ended with an invalid label name. The result may lack `__name__` (a rule may drop it)."""
        lb = {k: v for k, v in labels.items() if v != ""}
        for rule in self._rules:
            if not rule(lb):
                return None
        if self._check_names and not all(_LABEL_NAME.fullmatch(name) for name in lb):
            return None  # Prometheus refuses such a series ("invalid metric name or label names")
        return lb


def _set(lb: dict[str, str], name: str, value: str) -> None:
    # labels.Builder.Set: an empty value deletes the label.
    if value:
        lb[name] = value
    else:
        lb.pop(name, None)


def _compile(cfg: RelabelConfig) -> Rule:
    rx = compile_go(cfg.regex)
    match = rx.compiled.fullmatch
    sources, sep, target, act = tuple(cfg.source_labels), cfg.separator, cfg.target_label, cfg.action

    def joined(lb: dict[str, str]) -> str:
        return sep.join([lb.get(s, "") for s in sources])

    if act == "keep":
        return lambda lb: match(joined(lb)) is not None
    if act == "drop":
        return lambda lb: match(joined(lb)) is None
    if act == "keepequal":
        return lambda lb: lb.get(target, "") == joined(lb)
    if act == "dropequal":
        return lambda lb: lb.get(target, "") != joined(lb)
    if act == "replace":
        return _replace(rx, joined, cfg)
    if act in ("lowercase", "uppercase"):
        convert = go_lower if act == "lowercase" else go_upper

        def case(lb: dict[str, str]) -> bool:
            _set(lb, target, convert(joined(lb)))
            return True

        return case
    if act == "hashmod":
        modulus = cfg.modulus

        def hashmod(lb: dict[str, str]) -> bool:
            # Prometheus: the last 8 bytes of the md5, big-endian, mod modulus.
            digest = hashlib.md5(joined(lb).encode("utf-8", "surrogatepass")).digest()
            lb[target] = str(int.from_bytes(digest[8:], "big") % modulus)
            return True

        return hashmod
    if act == "labelmap":
        template = compile_template(cfg.replacement, rx)

        def labelmap(lb: dict[str, str]) -> bool:
            # Names in sorted order over the rule's input (a later name wins a shared target), as Go does.
            for name, value in sorted(lb.items()):
                m = match(name)
                if m is not None:
                    _set(lb, expand(template, m), value)
            return True

        return labelmap
    if act in ("labeldrop", "labelkeep"):
        keep_matching = act == "labelkeep"

        def labelfilter(lb: dict[str, str]) -> bool:
            for name in [n for n in lb if (match(n) is not None) != keep_matching]:
                del lb[name]
            return True

        return labelfilter
    raise AssertionError(f"unhandled relabel action {act!r}")  # the model admits only ACTIONS


def _replace(rx: GoRegexp, joined: Callable[[dict[str, str]], str], cfg: RelabelConfig) -> Rule:
    match = rx.compiled.fullmatch
    replacement = compile_template(cfg.replacement, rx)
    target_template = compile_template(cfg.target_label, rx)

    raw_target = cfg.target_label

    def replace(lb: dict[str, str]) -> bool:
        m = match(joined(lb))
        if m is None:
            return True  # no match: no replacement
        target = expand(target_template, m)
        if not _LABEL_NAME.fullmatch(target):
            return True  # the expanded name is not a label name: skip
        value = expand(replacement, m)
        if value:
            lb[target] = value
        else:
            # 2.42 deletes the label named by the *unexpanded* target_label: a templated one ("$1") names
            # no label, so nothing is deleted (checked against Prometheus 2.42; later versions changed it).
            lb.pop(raw_target, None)
        return True

    return replace


# -- Go's strings.ToLower / ToUpper --------------------------------------------------------------------
# Go maps each rune by Unicode's *simple* case mapping; Python's str.lower/upper use the full mapping
# ('ß'.upper() == 'SS') and a final-sigma rule. Per character, a one-character Python result equals Go's;
# the few characters whose full mapping is longer but whose simple mapping exists are tabled here.
_SIMPLE_LOWER: Final = {"\u0130": "i"}
_SIMPLE_UPPER: Final = {
    **{chr(c): chr(c + 8) for base in (0x1F80, 0x1F90, 0x1FA0) for c in range(base, base + 8)},
    "\u1fb3": "\u1fbc",
    "\u1fc3": "\u1fcc",
    "\u1ff3": "\u1ffc",
}


def go_lower(s: str) -> str:
    if s.isascii():
        return s.lower()
    return "".join(low if len(low := c.lower()) == 1 else _SIMPLE_LOWER.get(c, c) for c in s)


def go_upper(s: str) -> str:
    if s.isascii():
        return s.upper()
    return "".join(up if len(up := c.upper()) == 1 else _SIMPLE_UPPER.get(c, c) for c in s)
