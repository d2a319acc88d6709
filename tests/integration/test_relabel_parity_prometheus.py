"""Parity with a real Prometheus: the same exporter scraped by one job per rule set, each job's
`metric_relabel_configs` being the rule set; the label sets Prometheus stored must equal what our
Normalizer (job and instance stamped as target labels) plus Relabeler compute from the same series.

One extra job carries static target labels that collide with the exposed ones, to check the
`exported_` renaming of observe.transform.normalize against Prometheus' own. The YAML-scalar jobs give
both sides the same YAML text (Prometheus in prometheus.yml, observe through `load_config`), so what
each reads `regex: yes` or `replacement: 1.50` as is compared too, not just the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from observe.config import load_config
from observe.transform.normalize import Normalizer
from observe.transform.relabel import ACTIONS, RelabelConfig, Relabeler
from tests.servers import Server, get_json, prom_query, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

# The exporter's series: varied case, ';' in values, an empty value, a newline, prefixes for labelmap,
# and exposed `job`/`instance`/`cluster` labels that collide with target labels.
SERIES: list[tuple[str, dict[str, str]]] = [
    ("http_requests_total", {"method": "GET", "code": "200", "path": "/api/v1;x"}),
    ("http_requests_total", {"method": "post", "code": "500", "path": "/"}),
    ("http_requests_total", {"method": "Put", "code": "404", "path": ""}),
    ("node_cpu_seconds_total", {"cpu": "0", "mode": "idle", "app_team": "core", "app_tier": "web"}),
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "IDLE", "app_team": "edge", "app_owner": "ßob"}),
    ("temperature_celsius", {"sensor": "Kitchen", "room": "kitchen", "location": "kitchen"}),
    ("temperature_celsius", {"sensor": "garage", "room": "Garage", "location": "yard"}),
    ("queue_depth", {"queue": "a;b", "env": "prod", "env_copy": "prod", "target": "env"}),
    ("queue_depth", {"queue": "c", "env": "dev", "env_copy": "prod"}),
    ("build_info", {"version": "1.2.3-rc1", "revision": "abc123", "branch": "Main"}),
    ("build_info", {"version": "2.0.0", "revision": "def456", "branch": "release"}),
    ("weird", {"_underscore": "y", "Upper": "Z", "note": "line1\nline2", "label_x": "1"}),
    (
        "collide",
        {"cluster": "c1", "exported_cluster": "c0", "region": "r", "job": "j", "instance": "their:1"},
    ),
    (
        "flags",
        {"enabled": "yes", "tls": "true", "ratio": "1.0", "at": "12:30", "day": "2001-01-01", "on": "1"},
    ),
]
VERSION_RE = r"(\d+)\.(\d+)\.(\d+)(?:-(\w+))?"

# Every rule set keeps `job` and `__name__`, so its job's series stay findable (or are all dropped).
RULE_SETS: list[tuple[str, list[dict[str, Any]]]] = [
    ("no rules", []),
    (
        "replace: copy, ${n} groups, $1x is a named group, empty result deletes",
        [
            {"source_labels": ["method"], "target_label": "verb"},
            {
                "source_labels": ["version"],
                "regex": VERSION_RE,
                "target_label": "semver",
                "replacement": "v${1}.$2_$1x",
            },
            {"source_labels": ["version"], "regex": VERSION_RE, "target_label": "pre", "replacement": "$4"},
        ],
    ),
    (
        "replace: templated target_label (valid, invalid expansion, empty result)",
        [
            {
                "source_labels": ["app_team", "app_tier"],
                "regex": r"(\w+);(\w+)",
                "target_label": "team_${1}",
                "replacement": "$2",
            },
            {"source_labels": ["cpu"], "target_label": "$1", "replacement": "x"},
            {"source_labels": ["target"], "regex": "(.+)", "target_label": "$1", "replacement": "$2"},
        ],
    ),
    (
        "replace: deleting by empty result, $$ literal",
        [
            {"source_labels": ["nonexistent"], "target_label": "code"},
            {"source_labels": ["method"], "regex": "post", "target_label": "method", "replacement": ""},
            {"source_labels": ["branch"], "target_label": "cost", "replacement": "$$1 $$"},
        ],
    ),
    (
        "replace: regex not matching",
        [
            {
                "source_labels": ["code"],
                "regex": "5..",
                "target_label": "class",
                "replacement": "server_error",
            },
            {"source_labels": ["path"], "regex": "nomatch", "target_label": "path", "replacement": "x"},
        ],
    ),
    ("keep", [{"source_labels": ["__name__"], "regex": "http_.*|queue_depth", "action": "keep"}]),
    (
        "drop: custom separator, ';' inside a value",
        [
            {"source_labels": ["code", "method"], "separator": ":", "regex": r"5\d\d:.*", "action": "drop"},
            {"source_labels": ["queue"], "regex": "a;b", "action": "drop"},
        ],
    ),
    (
        "keepequal (two missing labels are equal)",
        [{"source_labels": ["room"], "target_label": "location", "action": "keepequal"}],
    ),
    ("dropequal", [{"source_labels": ["env"], "target_label": "env_copy", "action": "dropequal"}]),
    (
        "hashmod",
        [
            {
                "source_labels": ["path", "instance"],
                "modulus": 7,
                "target_label": "shard",
                "action": "hashmod",
            },
            {
                "source_labels": ["__name__", "revision"],
                "modulus": 1000,
                "target_label": "h2",
                "action": "hashmod",
            },
        ],
    ),
    ("labelmap, default replacement", [{"regex": "app_(.*)", "action": "labelmap"}]),
    (
        "labelmap, template",
        [{"regex": r"(app|label)_(\w+)", "replacement": "x_${2}_$1", "action": "labelmap"}],
    ),
    ("labeldrop, action in capitals", [{"regex": "app_.*|path|exported_.*", "action": "LabelDrop"}]),
    ("labelkeep", [{"regex": "__name__|job|instance|method|cpu", "action": "labelkeep"}]),
    (
        "lowercase and uppercase (ß stays)",
        [
            {"source_labels": ["mode", "method"], "target_label": "lower", "action": "lowercase"},
            {"source_labels": ["branch"], "target_label": "branch", "action": "uppercase"},
            {"source_labels": ["app_owner"], "target_label": "owner_up", "action": "uppercase"},
            {"source_labels": ["nonexistent"], "target_label": "sensor", "action": "lowercase"},
        ],
    ),
    (
        "custom separator, missing label",
        [{"source_labels": ["method", "missing", "code"], "separator": "--", "target_label": "combo"}],
    ),
    (
        "Go regexp syntax: POSIX class, mid-pattern (?i), newline vs '.', (?s), $0, \\b",
        [
            {
                "source_labels": ["sensor"],
                "regex": r"[[:upper:]]\w+",
                "target_label": "capitalized",
                "replacement": "yes",
            },
            {"source_labels": ["mode"], "regex": "x|(?i)idle", "target_label": "idle", "replacement": "1"},
            {"source_labels": ["note"], "target_label": "note_copy"},
            {"source_labels": ["path"], "regex": "(?s)/.*$", "target_label": "rooted", "replacement": "[$0]"},
            {
                "source_labels": ["version"],
                "regex": r"\d+\.\d+\.\d+\b.*",
                "target_label": "vtag",
                "replacement": "ok",
            },
        ],
    ),
    (
        "a chain: replace, keep on its result, labeldrop",
        [
            {"source_labels": ["code"], "regex": r"(\d)..", "target_label": "class", "replacement": "${1}xx"},
            {"source_labels": ["class"], "regex": "[45]xx", "action": "keep"},
            {"regex": "path", "action": "labeldrop"},
        ],
    ),
    ("drop everything", [{"source_labels": ["__name__"], "regex": ".+", "action": "drop"}]),
]
# Rule lists as YAML text, unquoted as a user writes them: every one has scalars PyYAML types (bool, int,
# float, sexagesimal 12:30, octal 010, date, null) where Prometheus' yaml.v2 keeps the text.
SCALAR_RULE_SETS: list[tuple[str, str]] = [
    (
        "YAML ints and floats in regex and replacement",
        "[{source_labels: [code], regex: 200, target_label: ok, replacement: 1},"
        " {source_labels: [ratio], regex: 1.0, target_label: ratio_text, replacement: 1.50},"
        " {source_labels: [code], regex: 404, action: drop}]",
    ),
    (
        "YAML booleans, sexagesimal, dates, hex, octal; a boolean target_label and separator 0",
        "[{source_labels: [enabled], regex: yes, target_label: on, replacement: off},"
        " {source_labels: [tls], regex: true, target_label: true, replacement: false},"
        " {source_labels: [at], regex: 12:30, target_label: noon, replacement: 0x1F},"
        " {source_labels: [day], regex: 2001-01-01, target_label: dated, replacement: 010},"
        " {source_labels: [on, true], separator: 0, target_label: joined}]",
    ),
    (
        "YAML null separator and replacement",
        "[{source_labels: [enabled, tls], separator: ~, target_label: glued},"
        " {source_labels: [code], regex: 500, target_label: code, replacement: ~}]",
    ),
]
COLLISION_JOB = "collision"
COLLISION_TARGET_LABELS = {"cluster": "ours", "exported_cluster": "ours2", "region": "eu"}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition() -> bytes:
    lines = []
    for i, (name, labels) in enumerate(SERIES):
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{body}}} {i}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def exporter() -> Iterator[str]:
    """The exposition on 127.0.0.1, a free port; yields host:port."""
    payload = exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


LabelSets = set[frozenset[tuple[str, str]]]


def ours(
    job: str, instance: str, rules: Sequence[RelabelConfig], static: dict[str, str] | None = None
) -> LabelSets:
    relabeler = Relabeler(rules) if rules else None
    normalizer = Normalizer(
        cluster_label="job",
        cluster=job,
        static_labels={"instance": instance, **(static or {})},
        relabeler=relabeler,
    )
    out: LabelSets = set()
    for name, labels in SERIES:
        result = normalizer.apply({"__name__": name, **labels})
        if result is not None:
            out.add(frozenset(result.items()))
    return out


def validated(rules: list[dict[str, Any]]) -> list[RelabelConfig]:
    return [RelabelConfig.model_validate(r) for r in rules]


def loaded(tmp_path: Path, rules_yaml: str) -> list[RelabelConfig]:
    """`rules_yaml` as observe reads it from a config file."""
    path = tmp_path / "observe.yaml"
    path.write_text(
        f"clusters: [{{name: a, prometheus: {{url: 'http://x'}}}}]\nrelabel_configs: {rules_yaml}\n"
    )
    return load_config(path).relabel_configs


def theirs(prom: Server, job: str) -> LabelSets:
    selector = f'{{job="{job}",__name__!~"up|scrape_.+"}}'
    body = get_json(f"{prom.url}/api/v1/series?{urlencode({'match[]': selector})}")
    assert body["status"] == "success", body
    return {frozenset(s.items()) for s in body["data"]}


def _show(sets: LabelSets) -> str:
    return "\n".join(f"      {dict(sorted(s))}" for s in sorted(sets, key=sorted))


def test_relabel_matches_prometheus(tmp_path: Path, exporter: str) -> None:
    jobs = [f"parity_{i}" for i in range(len(RULE_SETS))]
    scalar_jobs = [f"scalars_{i}" for i in range(len(SCALAR_RULE_SETS))]
    scrape_configs = [
        {"job_name": job, "static_configs": [{"targets": [exporter]}], "metric_relabel_configs": rules}
        for job, (_, rules) in zip(jobs, RULE_SETS, strict=True)
    ]
    scrape_configs += [
        {"job_name": job, "static_configs": [{"targets": [exporter]}], "metric_relabel_configs": f"RAW_{job}"}
        for job in scalar_jobs
    ]
    scrape_configs.append(
        {
            "job_name": COLLISION_JOB,
            "static_configs": [{"targets": [exporter], "labels": COLLISION_TARGET_LABELS}],
        }
    )
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": scrape_configs}
    config_yaml = yaml.safe_dump(config, allow_unicode=True)
    for job, (_, rules_yaml) in zip(scalar_jobs, SCALAR_RULE_SETS, strict=True):
        # The rule text verbatim: dumping the parsed rules would write `yes` back as `true`, 1.50 as 1.5.
        assert config_yaml.count(f"metric_relabel_configs: RAW_{job}\n") == 1
        config_yaml = config_yaml.replace(f"RAW_{job}\n", f"{rules_yaml}\n")
    prom = start_prometheus(tmp_path / "prometheus", config_yaml)
    try:
        every_job = {*jobs, *scalar_jobs, COLLISION_JOB}

        def all_scraped() -> bool:
            # `up` is written after the scrape's own samples are committed: once it is 1, they are stored.
            return {r["metric"]["job"] for r in prom_query(prom, "up == 1")} >= every_job

        try:
            wait_until(
                all_scraped, timeout=20, interval=0.25, message="every parity job scraped successfully"
            )
        except AssertionError:
            targets = get_json(f"{prom.url}/api/v1/targets")["data"]["activeTargets"]
            errors = {t["labels"].get("job"): t["lastError"] for t in targets if t["health"] != "up"}
            raise AssertionError(f"jobs not scraped: {errors}\n{prom.log_tail()}") from None

        failures = []
        cases: list[tuple[str, str, list[RelabelConfig], dict[str, str] | None]] = [
            (job, desc, validated(rules), None) for job, (desc, rules) in zip(jobs, RULE_SETS, strict=True)
        ]
        cases += [
            (job, desc, loaded(tmp_path, rules_yaml), None)
            for job, (desc, rules_yaml) in zip(scalar_jobs, SCALAR_RULE_SETS, strict=True)
        ]
        cases.append(
            (COLLISION_JOB, "exported_ renaming of colliding target labels", [], COLLISION_TARGET_LABELS)
        )
        for job, desc, rules, static in cases:
            want, got = ours(job, exporter, rules, static), theirs(prom, job)
            if want != got:
                failures.append(
                    f"{job} ({desc}):\n    only in observe:\n{_show(want - got)}\n    only in Prometheus:\n"
                    f"{_show(got - want)}"
                )
        assert not failures, "relabel results differ from Prometheus 2.42:\n" + "\n".join(failures)
        # The table is only as good as what it exercises: every action, and drops as well as keeps.
        actions = {RelabelConfig.model_validate(r).action for _, rules in RULE_SETS for r in rules}
        assert actions == set(ACTIONS)
        assert any(not ours(j, exporter, validated(r)) for j, (_, r) in zip(jobs, RULE_SETS, strict=True))
        # ...and every scalar rule set has values PyYAML would not have read as the text written.
        for _, rules_yaml in SCALAR_RULE_SETS:
            typed = [v for rule in yaml.safe_load(rules_yaml) for v in rule.values()]
            assert any(not isinstance(v, str | list) for v in typed), rules_yaml
    finally:
        prom.stop()
