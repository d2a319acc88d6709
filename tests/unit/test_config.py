"""The config loader: every bad file in tests/config/bad/ fails with its expected messages, each naming
its YAML path; good configs load with their defaults; secrets never leak into errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import observe.config
from observe.cli import main
from observe.config import load_config, parse_config, require_service_config, service_problems
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
    "remote_write_backoff.yaml": [
        "central.remote_write: need 0 < min_backoff <= max_backoff, got 1m and 30s"
    ],
    "service_without_kubernetes.yaml": [
        "clusters[0].prometheus.service: needs clusters[0].kubernetes (a kubeconfig or api_server)"
    ],
    "url_and_service.yaml": ["clusters[0].prometheus: give exactly one of url or service"],
    "kubernetes_two_ways.yaml": ["clusters[0].kubernetes: give exactly one of kubeconfig or api_server"],
    "bad_service_ref.yaml": ["clusters[0].loki.service: 'logging/Loki': service name 'Loki' is not a DNS label"],
    "service_with_own_token.yaml": [
        "clusters[0].prometheus: service: the API server proxy takes the cluster's kubernetes credentials"
    ],
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
    assert [c.name for c in cfg.clusters] == ["prod-eu-1", "prod-us-1", "edge-onprem-1", "edge-onprem-2"]


@pytest.mark.parametrize(
    ("section", "backoff", "message"),
    [
        ("remote_write", {"min_backoff": "0s"}, "central.remote_write: need 0 < min_backoff <= max_backoff"),
        ("remote_write", {"max_backoff": "100ms"}, "got 500ms and 100ms"),
        ("loki", {"min_backoff": "2m"}, "central.loki: need 0 < min_backoff <= max_backoff, got 2m and 30s"),
    ],
)
def test_backoff_pairs_are_checked_at_load(section: str, backoff: dict[str, str], message: str) -> None:
    # Before, a bad remote-write pair passed the loader and the delivery layer failed with a traceback.
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "clusters": [{"name": "a", "prometheus": {"url": "http://x"}}],
                "central": {section: {"url": "http://127.0.0.1:1/push", **backoff}},
            }
        )
    assert any(message in p for p in info.value.problems), info.value.problems


def _one_cluster(interval: str, **sources: dict[str, Any]) -> dict[str, Any]:
    return {"interval": interval, "clusters": [{"name": "a", **sources}]}


PROM: dict[str, Any] = {"url": "http://127.0.0.1:9090"}
LOKI: dict[str, Any] = {"url": "http://127.0.0.1:3100", "selectors": ['{job="app"}']}


def test_an_unset_timeout_is_capped_at_interval_as_prometheus_caps_scrape_timeout() -> None:
    cfg = parse_config(_one_cluster("5s", prometheus=PROM, loki=LOKI))
    prom, loki = cfg.clusters[0].prometheus, cfg.clusters[0].loki
    assert prom is not None and loki is not None
    assert (prom.timeout, loki.timeout) == (5.0, 5.0)
    # Still unset: nothing the user wrote is refused, and a re-check would not see a written 5s.
    assert "timeout" not in prom.model_fields_set and "timeout" not in loki.model_fields_set
    assert prom.match == ['{__name__=~".+"}'] and loki.selectors == ['{job="app"}']  # the rest is kept
    # A default shorter than interval is kept as it is.
    roomy = parse_config(_one_cluster("1m", prometheus=PROM)).clusters[0].prometheus
    assert roomy is not None and roomy.timeout == 20.0


@pytest.mark.parametrize("source", ["prometheus", "loki"])
def test_an_explicit_timeout_not_under_interval_is_still_refused(source: str) -> None:
    given: dict[str, Any] = {"prometheus": PROM, "loki": LOKI}[source]
    with pytest.raises(ConfigError) as info:
        parse_config(_one_cluster("5s", **{source: {**given, "timeout": "20s"}}))
    assert info.value.problems == [
        f"clusters[0].{source}.timeout: 20s must be shorter than interval (5s) so one slow cluster cannot "
        "overlap its next cycle"
    ]
    with pytest.raises(ConfigError, match=r"timeout: 5s must be shorter than interval \(5s\)"):
        parse_config(_one_cluster("5s", **{source: {**given, "timeout": "5s"}}))


LOGS_WITHOUT_CENTRAL_LOKI = {
    "clusters": [
        {"name": "a", "prometheus": PROM},
        {"name": "b", "loki": LOKI},
    ]
}


def test_a_cluster_loki_without_central_loki_is_accepted_for_the_service() -> None:
    # Its logs go to the embedded store under data_dir, as metrics without central.remote_write do.
    cfg = parse_config(LOGS_WITHOUT_CENTRAL_LOKI, for_service=True)
    assert service_problems(cfg) == []
    require_service_config(cfg)


def test_run_and_check_accept_it_at_load(tmp_path: Path) -> None:
    path = tmp_path / "observe.yaml"
    path.write_text(yaml.safe_dump(LOGS_WITHOUT_CENTRAL_LOKI))
    assert load_config(path, for_service=True).central.loki is None
    assert main(["check", "--no-probe", "-c", str(path)]) == 0
    assert main(["rules", "-c", str(path), "-o", str(tmp_path / "rules")]) == 0


def test_the_package_exports_exactly_its_public_names() -> None:
    modules = {"alerts", "discovery", "fleet", "http_client", "kubernetes", "loader", "reference", "types"}
    public = {n for n in vars(observe.config) if not n.startswith("_")} - modules - {"annotations"}
    assert set(observe.config.__all__) == public


@pytest.mark.parametrize(
    ("remote_read", "message"),
    [
        ({"min_window": "-1s"}, "remote_read.min_window: not a duration"),
        ({"min_window": "2h"}, "remote_read: min_window (2h) must be shorter than backfill_limit (1h)"),
        ({"min_window": "10m", "backfill_limit": "10m"}, "min_window (10m) must be shorter than backfill_limit"),
    ],
)
def test_a_bad_min_window_is_named(remote_read: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**_one_cluster("30s", prometheus=PROM), "remote_read": remote_read})
    assert any(message in p for p in info.value.problems), info.value.problems


def test_min_window_left_unset_is_not_checked_against_a_short_backfill_limit() -> None:
    cfg = parse_config({**_one_cluster("30s", prometheus=PROM), "remote_read": {"backfill_limit": "30s"}})
    assert cfg.remote_read.min_window == 120.0  # the pipeline applies at most half of backfill_limit
