"""The config loader: every bad file in tests/config/bad/ fails with its expected messages, each naming
its YAML path; good configs load with their defaults; secrets never leak into errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from observe.config import load_config, parse_config
from observe.errors import ConfigError
from observe.secrets import Secret

BAD = Path(__file__).parent.parent / "config" / "bad"

# file -> every message expected (substring of one problem each); one row per rule.
EXPECTED: dict[str, list[str]] = {
    "unknown_key.yaml": ["clusters[0].prometheus.timeot: unknown key"],
    "bad_url.yaml": ["clusters[0].prometheus.url: not a URL: 'htp://x'"],
    "inline_token.yaml": [
        "clusters[0].prometheus.bearer_token: inline secrets are not accepted: use bearer_token_file or bearer_token_env"
    ],
    "inline_password.yaml": ["clusters[0].prometheus.basic_auth.password: inline secrets are not accepted"],
    "duplicate_cluster.yaml": ["clusters[1].name: duplicate cluster name 'a' (also clusters[0])"],
    "bad_duration.yaml": ["interval: not a duration (use forms like 30s, 5m, 1h30m, 500ms): '30 seconds'"],
    "bad_size.yaml": ["queue.max_bytes: not a size (use forms like 512MiB, 2GiB, 10MB): 'lots'"],
    "timeout_over_interval.yaml": ["clusters[0].prometheus.timeout: 15s must be shorter than interval (10s)"],
    "no_clusters.yaml": ["clusters: required key is missing"],
    "missing_env.yaml": [
        "clusters[0].prometheus.url: environment variable ${OBSERVE_TEST_SURELY_UNSET_VAR} is not set"
    ],
    "cluster_label_clash.yaml": ["clusters[0].labels.cluster: clashes with cluster_label"],
    "bad_label_name.yaml": ["clusters[0].labels: not a valid label name: 'region-name'"],
    "bad_relabel_action.yaml": ["relabel_configs[0].action:"],
    "not_yaml.yaml": ["not valid YAML at line"],
    "cert_without_key.yaml": ["clusters[0].prometheus.tls: cert_file and key_file go together"],
    "two_secrets.yaml": ["clusters[0].prometheus: give either a bearer token or basic_auth, not both"],
    "no_source.yaml": ["clusters[0]: give at least one of prometheus or loki"],
    "bad_cluster_name.yaml": ["clusters[0].name: cluster names are letters, digits"],
    "top_level_list.yaml": ["the top level must be a mapping of keys"],
}


def test_every_bad_file_has_a_row_and_every_row_a_file() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_is_rejected_with_its_message(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(BAD / name)
    problems = info.value.problems
    for expected in EXPECTED[name]:
        assert any(expected in p for p in problems), f"{expected!r} not in {problems}"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "interval": "soon",
                "clusters": [{"name": "a", "prometheus": {"url": "ftp://x", "bogus": 1}}],
                "queue": {"max_bytes": "many"},
            }
        )
    joined = "\n".join(info.value.problems)
    for path in (
        "interval:",
        "clusters[0].prometheus.url:",
        "clusters[0].prometheus.bogus:",
        "queue.max_bytes:",
    ):
        assert path in joined
    assert len(info.value.problems) == 4


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(BAD / "inline_token.yaml")
    assert "s3cr3t-value" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(BAD / "inline_password.yaml")
    assert "hunter2" not in str(info.value)


def test_defaults_and_human_units() -> None:
    cfg = parse_config(
        {
            "clusters": [{"name": "a", "prometheus": {"url": "http://127.0.0.1:9090/", "timeout": "1m"}}],
            "interval": "2m30s",
            "queue": {"max_bytes": "1GiB", "segment_bytes": "4MiB"},
        }
    )
    assert cfg.interval == 150.0
    assert cfg.cluster_label == "cluster"
    prom = cfg.clusters[0].prometheus
    assert prom is not None
    assert prom.url == "http://127.0.0.1:9090"
    assert prom.timeout == 60.0
    assert prom.match == ['{__name__=~".+"}']
    assert cfg.queue.max_bytes == 2**30
    assert cfg.queue.segment_bytes == 4 * 2**20
    assert cfg.central.remote_write is None  # -> the embedded local store


def test_env_expansion_and_dollar_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVE_TEST_HOST", "prom.internal")
    cfg = parse_config(
        {
            "clusters": [
                {
                    "name": "a",
                    "labels": {"note": "cost$$"},
                    "prometheus": {"url": "http://${OBSERVE_TEST_HOST}:9090"},
                }
            ]
        }
    )
    assert cfg.clusters[0].prometheus is not None
    assert cfg.clusters[0].prometheus.url == "http://prom.internal:9090"
    assert cfg.clusters[0].labels["note"] == "cost$"


@pytest.mark.parametrize(
    ("url", "kind", "header"),
    [
        ("http://thanos:19291/api/v1/receive", "thanos", "THANOS-TENANT"),
        ("http://mimir:8080/api/v1/push", "mimir", "X-Scope-OrgID"),
        ("http://prom:9090/api/v1/write", "generic", "X-Scope-OrgID"),
    ],
)
def test_tenant_header_follows_the_receiver_kind(url: str, kind: str, header: str) -> None:
    cfg = parse_config(
        {
            "clusters": [{"name": "a", "prometheus": {"url": "http://x"}}],
            "central": {"remote_write": {"url": url}},
        }
    )
    rw = cfg.central.remote_write
    assert rw is not None
    assert rw.receiver_kind() == kind
    assert rw.tenant_header_name() == header


def test_file_secret_is_reread_when_rotated(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    secret = Secret(path=token)
    assert secret.value() == "first"
    token.write_text("second-and-longer\n")
    assert secret.value() == "second-and-longer"
    assert "second" not in repr(secret)


def test_example_config_loads() -> None:
    cfg = load_config(Path(__file__).parent.parent.parent / "deploy" / "observe.example.yaml")
    assert [c.name for c in cfg.clusters] == ["prod-eu-1", "prod-us-1", "edge-onprem-1"]
