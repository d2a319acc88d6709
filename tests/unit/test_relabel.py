"""relabel_configs: one table of rules -> input -> output (as Prometheus' relabel_test.go), one table of
invalid configs -> message, and one table of Go regexp syntax our translation must read as Go does.
tests/integration/test_relabel_parity_prometheus.py checks the same semantics against a real Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from observe.config import load_config, parse_config
from observe.errors import ConfigError
from observe.transform.goregexp import GoRegexpError, compile_go, compile_template, expand
from observe.transform.relabel import RelabelConfig, Relabeler, go_lower, go_upper

Rules = list[dict[str, Any]]
DROPPED = None

# (id, rules, input labels, expected labels or DROPPED)
CASES: list[tuple[str, Rules, dict[str, str], dict[str, str] | None]] = [
    (
        "replace copies by default",
        [{"source_labels": ["a"], "target_label": "b"}],
        {"a": "x"},
        {"a": "x", "b": "x"},
    ),
    (
        "replace with groups and ${n}",
        [{"source_labels": ["a"], "regex": r"(\w+)-(\d+)", "target_label": "t", "replacement": "${2}_$1"}],
        {"a": "web-42"},
        {"a": "web-42", "t": "42_web"},
    ),
    (
        "$1x is the group named 1x: empty, so the target is deleted",
        [{"source_labels": ["a"], "target_label": "t", "replacement": "$1x"}],
        {"a": "v", "t": "old"},
        {"a": "v"},
    ),
    (
        "replace skips when the regex does not match (anchored: foo is not foobar)",
        [{"source_labels": ["a"], "regex": "foo", "target_label": "t", "replacement": "hit"}],
        {"a": "foobar"},
        {"a": "foobar"},
    ),
    (
        "replace of a missing source deletes a plain target",
        [{"source_labels": ["missing"], "target_label": "t"}],
        {"t": "old", "k": "v"},
        {"k": "v"},
    ),
    (
        "templated target_label",
        [
            {
                "source_labels": ["k", "v"],
                "regex": r"(\w+);(.*)",
                "target_label": "${1}_x",
                "replacement": "$2",
            }
        ],
        {"k": "env", "v": "prod"},
        {"k": "env", "v": "prod", "env_x": "prod"},
    ),
    (
        "templated target that expands to an invalid name is skipped",
        [{"source_labels": ["k"], "target_label": "$1", "replacement": "v"}],
        {"k": "1bad"},
        {"k": "1bad"},
    ),
    (
        "templated target with empty result deletes nothing (2.42)",
        [{"source_labels": ["k"], "target_label": "$1", "replacement": "$2"}],
        {"k": "env", "env": "prod"},
        {"k": "env", "env": "prod"},
    ),
    (
        "$$ is a literal dollar, $name a named group",
        [{"source_labels": ["a"], "regex": r"(?P<n>\d+)", "target_label": "t", "replacement": "$$$n"}],
        {"a": "5"},
        {"a": "5", "t": "$5"},
    ),
    (
        "custom separator, missing label joins as empty",
        [{"source_labels": ["a", "missing", "b"], "separator": "--", "target_label": "j"}],
        {"a": "x", "b": "y"},
        {"a": "x", "b": "y", "j": "x----y"},
    ),
    (
        "a regex over a value with a newline: . does not match it",
        [{"source_labels": ["a"], "target_label": "t"}],
        {"a": "x\ny"},
        {"a": "x\ny"},
    ),
    ("keep on match", [{"source_labels": ["a"], "regex": "x|y", "action": "keep"}], {"a": "y"}, {"a": "y"}),
    (
        "keep drops a non-match",
        [{"source_labels": ["a"], "regex": "x", "action": "keep"}],
        {"a": "xx"},
        DROPPED,
    ),
    (
        "drop on a joined value containing the separator",
        [{"source_labels": ["a", "b"], "regex": "1;.*", "action": "drop"}],
        {"a": "1", "b": "2"},
        DROPPED,
    ),
    (
        "drop keeps a non-match",
        [{"source_labels": ["a"], "regex": "x", "action": "drop"}],
        {"a": "y"},
        {"a": "y"},
    ),
    (
        "keepequal keeps equal",
        [{"source_labels": ["a"], "target_label": "b", "action": "keepequal"}],
        {"a": "1", "b": "1"},
        {"a": "1", "b": "1"},
    ),
    (
        "keepequal drops unequal",
        [{"source_labels": ["a"], "target_label": "b", "action": "keepequal"}],
        {"a": "1", "b": "2"},
        DROPPED,
    ),
    (
        "dropequal: two missing labels are equal (both empty)",
        [{"source_labels": ["a"], "target_label": "b", "action": "dropequal"}],
        {"c": "1"},
        DROPPED,
    ),
    (
        "dropequal keeps unequal",
        [{"source_labels": ["a"], "target_label": "b", "action": "dropequal"}],
        {"a": "1"},
        {"a": "1"},
    ),
    (
        "hashmod (relabel_test.go: md5('baz') mod 1000 = 976)",
        [{"source_labels": ["c"], "target_label": "d", "modulus": 1000, "action": "hashmod"}],
        {"c": "baz"},
        {"c": "baz", "d": "976"},
    ),
    (
        "labelmap copies with the default $1",
        [{"regex": "__meta_(.*)", "action": "labelmap"}],
        {"__meta_team": "core", "x": "1"},
        {"__meta_team": "core", "team": "core", "x": "1"},
    ),
    (
        "labelmap: the later name (sorted) wins a shared target",
        [{"regex": "(?:a|b)_(.*)", "action": "labelmap"}],
        {"a_k": "1", "b_k": "2"},
        {"a_k": "1", "b_k": "2", "k": "2"},
    ),
    (
        "labelmap to an invalid label name drops the series",
        [{"regex": "a_(.*)", "action": "labelmap"}],
        {"a_1": "x"},
        DROPPED,
    ),
    (
        "labelmap's invalid name removed by a later labeldrop is fine",
        [{"regex": "a_(.*)", "action": "labelmap"}, {"regex": "1|a_1", "action": "labeldrop"}],
        {"a_1": "x", "k": "v"},
        {"k": "v"},
    ),
    (
        "labeldrop",
        [{"regex": "tmp_.*", "action": "labeldrop"}],
        {"tmp_a": "1", "tmp_b": "2", "keep": "3"},
        {"keep": "3"},
    ),
    (
        "labelkeep",
        [{"regex": "__name__|job", "action": "labelkeep"}],
        {"__name__": "up", "job": "j", "instance": "i"},
        {"__name__": "up", "job": "j"},
    ),
    (
        "lowercase",
        [{"source_labels": ["a", "b"], "target_label": "l", "action": "lowercase"}],
        {"a": "ÄB", "b": "Σ"},
        {"a": "ÄB", "b": "Σ", "l": "äb;σ"},  # noqa: RUF001
    ),
    (
        "uppercase keeps ß (Go's simple case mapping)",
        [{"source_labels": ["a"], "target_label": "a", "action": "uppercase"}],
        {"a": "straße"},
        {"a": "STRAßE"},
    ),
    (
        "lowercase of an empty value deletes the target",
        [{"source_labels": ["missing"], "target_label": "t", "action": "lowercase"}],
        {"t": "x"},
        {},
    ),
    (
        "rules run in order, each on the previous output",
        [
            {"source_labels": ["a"], "target_label": "b", "replacement": "from_$1"},
            {"source_labels": ["b"], "regex": "from_.*", "action": "keep"},
            {"regex": "a", "action": "labeldrop"},
        ],
        {"a": "x"},
        {"b": "from_x"},
    ),
    ("action in any letter case", [{"regex": "A", "action": "LabelDrop"}], {"A": "1", "b": "2"}, {"b": "2"}),
    ("an empty input value is no label", [], {"a": "", "b": "1"}, {"b": "1"}),
    (
        "(?i) in the middle of a pattern, scoped like Go",
        [{"source_labels": ["a"], "regex": "x(?i)y|z", "action": "keep"}],
        {"a": "Z"},
        {"a": "Z"},
    ),
    (
        r"\d is ASCII-only, as in Go",
        [{"source_labels": ["a"], "regex": r"\d+", "action": "drop"}],
        {"a": "١٢"},
        {"a": "١٢"},
    ),
]


@pytest.mark.parametrize(("rules", "given", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_relabel(rules: Rules, given: dict[str, str], expected: dict[str, str] | None) -> None:
    relabeler = Relabeler([RelabelConfig.model_validate(r) for r in rules])
    before = dict(given)
    assert relabeler.apply(given) == expected
    assert given == before  # the input is not mutated


# (rule, expected message: a substring naming the field)
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"action": "rename"}, "unknown relabel action 'rename'"),
    ({"action": "hashmod", "target_label": "t"}, "modulus: action hashmod requires a non-zero modulus"),
    ({"source_labels": ["a"]}, "target_label: action replace requires a target_label"),
    (
        {"action": "uppercase", "source_labels": ["a"]},
        "target_label: action uppercase requires a target_label",
    ),
    ({"target_label": "a-b"}, "target_label: 'a-b' is neither a label name nor a $-template of one"),
    ({"target_label": "$1-x"}, "target_label: '$1-x' is neither a label name nor a $-template of one"),
    ({"target_label": "1a"}, "target_label: '1a' is neither"),
    (
        {"action": "lowercase", "target_label": "$1"},
        "target_label: '$1' is not a valid label name (action lowercase)",
    ),
    (
        {"action": "hashmod", "target_label": "$1", "modulus": 2},
        "target_label: '$1' is not a valid label name",
    ),
    (
        {"action": "uppercase", "target_label": "t", "replacement": "x"},
        "replacement: cannot be set for action uppercase",
    ),
    (
        {"action": "labelmap", "replacement": "x-$1"},
        "replacement: 'x-$1' is neither a label name nor a $-template",
    ),
    (
        {"action": "keepequal", "target_label": "t", "regex": "(.*)"},
        "regex: not allowed with action keepequal",
    ),
    (
        {"action": "dropequal", "target_label": "t", "separator": ","},
        "separator: not allowed with action dropequal",
    ),
    ({"action": "labeldrop", "source_labels": []}, "source_labels: not allowed with action labeldrop"),
    ({"action": "labelkeep", "replacement": "x"}, "replacement: not allowed with action labelkeep"),
    ({"action": "labelkeep", "target_label": "t", "modulus": 3}, "target_label, modulus: not allowed"),
    ({"regex": "(", "target_label": "t"}, "invalid regular expression '(': missing closing )"),
    ({"regex": "(?=x)", "target_label": "t"}, "invalid or unsupported Perl syntax"),
    ({"regex": r"(a)\1", "target_label": "t"}, "back-references are not supported"),
    ({"regex": r"\pL", "target_label": "t"}, "Unicode classes"),
    ({"source_labels": ["a-b"], "target_label": "t"}, "'a-b' is not a valid label name"),
    ({"action": "hashmod", "target_label": "t", "modulus": -1}, "greater than or equal to 0"),
    ({"regexp": "x"}, "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("rule", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_config(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        RelabelConfig.model_validate(rule)
    assert message in str(info.value)


VALID: list[dict[str, Any]] = [
    {"action": "Keep", "source_labels": ["a"]},  # Prometheus lowercases the action
    {"target_label": "${1}x"},
    {"action": "keepequal", "target_label": "t", "separator": ";", "replacement": "$1"},  # equal to defaults
    {"action": "labeldrop", "regex": "a", "separator": ";", "target_label": ""},
    {"action": "labelmap", "regex": "a_(.*)"},
    {"target_label": "t", "regex": None},  # the empty regex, as in Prometheus
]


@pytest.mark.parametrize("rule", VALID, ids=[str(r) for r in VALID])
def test_valid_config(rule: dict[str, Any]) -> None:
    RelabelConfig.model_validate(rule)


def test_field_errors_carry_their_yaml_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "clusters": [{"name": "a", "prometheus": {"url": "http://127.0.0.1:9090"}}],
                "relabel_configs": [
                    {"source_labels": ["a"], "target_label": "t"},
                    {"regex": "(", "target_label": "t"},
                    {"action": "hashmod", "target_label": "t"},
                ],
            }
        )
    problems = info.value.problems
    assert any(p.startswith("relabel_configs[1].regex: invalid regular expression") for p in problems), (
        problems
    )
    assert any(p.startswith("relabel_configs[2]: modulus: action hashmod") for p in problems), problems
    assert len(problems) == 2


# (one rule as the user writes it in YAML, the fields observe must read): what Prometheus 2.42 stored for
# the same text (its /api/v1/status/config). yaml.v2 reads a scalar into a string field as written, where
# PyYAML's YAML 1.1 types would give True, 1.5, 750 (sexagesimal 12:30), 8 (octal 010) or a date.
YAML_SCALARS: list[tuple[str, dict[str, Any]]] = [
    ("{source_labels: [a], regex: 1, target_label: t, replacement: 1}", {"regex": "1", "replacement": "1"}),
    (
        "{source_labels: [a], regex: true, target_label: true, replacement: false}",
        {"regex": "true", "target_label": "true", "replacement": "false"},
    ),
    (
        "{source_labels: [a], regex: yes, target_label: on, replacement: off}",
        {"regex": "yes", "target_label": "on", "replacement": "off"},
    ),
    (
        "{source_labels: [a], regex: 1.0, target_label: t, replacement: 1.50}",
        {"regex": "1.0", "replacement": "1.50"},
    ),
    (
        "{source_labels: [a], regex: 200, target_label: t, replacement: 0x1F}",
        {"regex": "200", "replacement": "0x1F"},
    ),
    (
        "{source_labels: [a], regex: 12:30, target_label: t, replacement: 010}",
        {"regex": "12:30", "replacement": "010"},
    ),
    (
        "{source_labels: [a], regex: 2001-01-01, target_label: t, replacement: 1e3}",
        {"regex": "2001-01-01", "replacement": "1e3"},
    ),
    (
        "{source_labels: [a], regex: .inf, target_label: t, replacement: -.5}",
        {"regex": ".inf", "replacement": "-.5"},
    ),
    ("{source_labels: [a, b], separator: 0, target_label: t}", {"separator": "0"}),
    (
        "{source_labels: [a], separator: ~, target_label: t, replacement: ~}",
        {"separator": "", "replacement": ""},
    ),
    ("{source_labels: [a], regex: Null, target_label: t}", {"regex": ""}),
    ("{source_labels: [true, yes, off], target_label: t}", {"source_labels": ["true", "yes", "off"]}),
    ("{source_labels: ~, regex: 1, action: labeldrop}", {"source_labels": [], "regex": "1"}),
    ("{source_labels: [a], target_label: t, modulus: ~, action: HashMod, modulus: 8}", {"modulus": 8}),
    ("{source_labels: [a], regex: 'quoted: yes', target_label: t}", {"regex": "quoted: yes"}),
]


@pytest.mark.parametrize(("rule", "fields"), YAML_SCALARS, ids=[r for r, _ in YAML_SCALARS])
def test_yaml_scalars_in_string_fields_are_read_as_written(
    tmp_path: Path, rule: str, fields: dict[str, Any]
) -> None:
    path = tmp_path / "observe.yaml"
    path.write_text(
        f"clusters: [{{name: a, prometheus: {{url: 'http://x'}}}}]\nrelabel_configs:\n  - {rule}\n"
    )
    (cfg,) = load_config(path).relabel_configs
    assert {name: getattr(cfg, name) for name in fields} == fields


def test_yaml_scalars_are_read_as_written_in_every_rule_and_not_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "observe.yaml"
    path.write_text(
        "clusters: [{name: a, prometheus: {url: 'http://x'}}]\n"
        "self_metrics: no\n"  # outside relabel_configs YAML 1.1 types still hold
        "relabel_configs:\n"
        "  - &rule {source_labels: [a], regex: yes, target_label: t, replacement: on}\n"
        "  - *rule\n"
        "  - {source_labels: [code], regex: 200, action: keep}\n"
    )
    cfg = load_config(path)
    assert cfg.self_metrics is False
    assert [c.regex for c in cfg.relabel_configs] == ["yes", "yes", "200"]
    relabeler = Relabeler(cfg.relabel_configs)
    assert relabeler.apply({"a": "yes", "code": "200"}) == {"a": "yes", "code": "200", "t": "on"}
    assert relabeler.apply({"a": "True", "code": "2000"}) is None


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        ({"regex": True, "target_label": False}, {"regex": "true", "target_label": "false"}),
        ({"regex": 200, "replacement": 1.5, "target_label": "t"}, {"regex": "200", "replacement": "1.5"}),
        (
            {"separator": 0, "target_label": "t", "source_labels": [True]},
            {"separator": "0", "source_labels": ["true"]},
        ),
        ({"separator": None, "replacement": None, "target_label": "t"}, {"separator": "", "replacement": ""}),
    ],
)
def test_python_scalars_in_string_fields_are_spelled_as_yaml(
    rule: dict[str, Any], fields: dict[str, Any]
) -> None:
    # A dict given to parse_config has no YAML text left: each value is spelled as YAML writes it.
    cfg = RelabelConfig.model_validate(rule)
    assert {name: getattr(cfg, name) for name in fields} == fields


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{source_labels: [a], target_label: t, action: yes}",
            "relabel_configs[0].action: unknown relabel action 'yes'",
        ),
        (
            "{source_labels: [a], target_label: 1}",
            "relabel_configs[0]: target_label: '1' is neither a label name",
        ),
        (
            "{source_labels: [1], target_label: t}",
            "relabel_configs[0].source_labels: '1' is not a valid label name",
        ),
        (
            "{source_labels: [a], target_label: t, regex: 1(}",
            "relabel_configs[0].regex: invalid regular expression '1('",
        ),
    ],
)
def test_yaml_scalars_prometheus_refuses_are_refused(tmp_path: Path, rule: str, message: str) -> None:
    # As promtool 2.42 says: unknown relabel action "yes"; "1" is not a valid label name; ...
    path = tmp_path / "observe.yaml"
    path.write_text(
        f"clusters: [{{name: a, prometheus: {{url: 'http://x'}}}}]\nrelabel_configs:\n  - {rule}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_regex_null_is_the_empty_regex() -> None:
    relabeler = Relabeler(
        [RelabelConfig.model_validate({"source_labels": ["a"], "regex": None, "action": "keep"})]
    )
    assert relabeler.apply({"b": "1"}) == {"b": "1"}
    assert relabeler.apply({"a": "1"}) is None


# (Go pattern, value, does Go's anchored ^(?:pattern)$ match)
GO_SYNTAX: list[tuple[str, str, bool]] = [
    ("(?i)foo", "FoO", True),
    ("a(?i)b|c", "C", True),  # Go's flags last to the group's end, across |
    ("a(?i)b|c", "AB", False),
    ("(?i:a)b", "Ab", True),
    (r"\w+", "é", False),
    (r"\s", "\v", False),  # Go's \s is [\t\n\f\r ]
    ("[[:upper:]][[:digit:]]", "A1", True),
    ("[[:^alpha:]]", "1", True),
    ("[^[:space:]]+", "ab", True),
    ("a$\n", "a\n", False),  # $ is the end of text without (?m)
    ("(?m)a$\n", "a\n", True),
    (".", "\n", False),
    ("(?s).", "\n", True),
    ("[^a]", "\n", True),
    (r"\101\x42\x{43}", "ABC", True),  # octal, hex
    (r"\Q.*\E", ".*", True),
    (r"\Q.*\E", "ab", False),
    ("[a-]+", "a-a", True),
    ("[]a]+", "]a", True),
    (r"\bfoo\b.*", "foo bar", True),
    (r"x\Bfoo", "xfoo", True),
    ("a{2,3}", "aaa", True),
    ("a{,2}", "a{,2}", True),  # not a repeat in Go: literal
    ("[&&~~]+", "&~", True),  # Python would warn about these inside a class
]


@pytest.mark.parametrize(
    ("pattern", "value", "matches"), GO_SYNTAX, ids=[f"{p!r}~{v!r}" for p, v, _ in GO_SYNTAX]
)
def test_go_regexp_syntax(pattern: str, value: str, matches: bool) -> None:
    assert (compile_go(pattern).compiled.fullmatch(value) is not None) is matches


@pytest.mark.parametrize(
    "pattern", ["a**", "a*+", "a{1001}", "(?<n>x)", r"\z\Z", "(?P<a>x)(?P<a>y)", "[z-a]", "(?-)"]
)
def test_go_regexp_rejects_what_go_rejects(pattern: str) -> None:
    with pytest.raises(GoRegexpError):
        compile_go(pattern)


@pytest.mark.parametrize(
    ("template", "expanded"),
    [
        ("$1", "a"),
        ("${1}x", "ax"),
        ("$1x", ""),  # the group named "1x"
        ("$name-$2", "a-b"),
        ("${name}", "a"),
        ("$$1", "$1"),
        ("$0", "ab"),
        ("$01", ""),  # leading zero: a name, not a number
        ("$9", ""),  # no such group
        ("${", "${"),  # malformed: literal
        ("a$", "a$"),
        ("$-", "$-"),
    ],
)
def test_go_expand_template(template: str, expanded: str) -> None:
    rx = compile_go("(?P<name>a)(b)")
    m = rx.compiled.fullmatch("ab")
    assert m is not None
    assert expand(compile_template(template, rx), m) == expanded


def test_ungreedy_flag_swaps_greediness() -> None:
    rx = compile_go("(?U)(a+)(a*)")
    m = rx.compiled.fullmatch("aaa")
    assert m is not None
    assert m.groups() == ("a", "aa")


@pytest.mark.parametrize(
    ("s", "lower", "upper"),
    [("ABC", "abc", "ABC"), ("İ", "i", "İ"), ("ß", "ß", "ß"), ("ΣΑΣ", "σασ", "ΣΑΣ"), ("ᾳ", "ᾳ", "ᾼ")],  # noqa: RUF001
)
def test_go_case_mapping(s: str, lower: str, upper: str) -> None:
    assert go_lower(s) == lower
    assert go_upper(s) == upper
