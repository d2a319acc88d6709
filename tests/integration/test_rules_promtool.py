"""The generated rules against the real tools: `promtool check rules` on every Prometheus and Thanos rule
file, `promtool test rules` on the generated tests (for the committed example and for a second fleet
with another cluster label, thresholds and evaluation interval), and `amtool check-config`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from observe.config import parse_config
from observe.generate.rules import write_rules
from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"

pytestmark = pytest.mark.real_server


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _check_rules(promtool: str, files: list[Path]) -> None:
    assert files
    done = _run([promtool, "check", "rules", *map(str, files)])
    assert done.returncode == 0, done.stdout + done.stderr


def _test_rules(promtool: str, rules_dir: Path) -> str:
    tests = sorted((rules_dir / "tests").glob("*.yaml"))
    assert len(tests) >= 5
    done = _run([promtool, "test", "rules", *(str(t.relative_to(rules_dir)) for t in tests)], cwd=rules_dir)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout


def test_promtool_checks_every_committed_rule_file(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    _check_rules(promtool, sorted((RULES / "prometheus").glob("*.yaml")))
    # promtool rejects Thanos' extra group field: check the Thanos files with it removed.
    for path in sorted((RULES / "thanos").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            assert group.pop("partial_response_strategy") == "abort"
        (tmp_path / path.name).write_text(yaml.safe_dump(data))
    _check_rules(promtool, sorted(tmp_path.glob("*.yaml")))


def test_promtool_unit_tests_of_the_committed_rules_pass() -> None:
    out = _test_rules(require_binary("promtool"), RULES)
    assert out.count("SUCCESS") == len(list((RULES / "tests").glob("*.yaml")))


def test_a_wrong_expectation_fails_promtool(tmp_path: Path) -> None:
    """The generated tests are not vacuous: change one expected label and promtool must fail."""
    promtool = require_binary("promtool")
    for sub in ("prometheus", "tests"):
        (tmp_path / sub).mkdir()
        for path in (RULES / sub).glob("*.yaml"):
            (tmp_path / sub / path.name).write_text(path.read_text())
    fleet = tmp_path / "tests" / "fleet.yaml"
    text = fleet.read_text()
    assert "      cluster: prod-eu-1\n" in text
    fleet.write_text(text.replace("      cluster: prod-eu-1\n", "      cluster: prod-us-1\n", 1))
    done = _run([promtool, "test", "rules", "tests/fleet.yaml"], cwd=tmp_path)
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr


def test_promtool_unit_tests_pass_for_another_fleet(tmp_path: Path) -> None:
    """Cases are built from the config: another label, other thresholds, 30s evaluation, failover pools."""
    cfg = parse_config(
        {
            "cluster_label": "k8s_cluster",
            "self_cluster": "hub",
            "clusters": [
                {
                    "name": "eu.a",
                    "labels": {"env": "prod"},
                    "prometheus": {"url": "http://a:9090"},
                    "loki": {"url": "http://a:3100", "selectors": ['{ns=~".+"}']},
                },
                {"name": "eu.b", "labels": {"env": "prod"}, "prometheus": {"url": "http://b:9090"}},
                {"name": "lab", "labels": {"env": "dev"}, "prometheus": {"url": "http://c:9090"}},
            ],
            "alerts": {
                "evaluation_interval": "30s",
                "cluster_missing_for": "2m",
                "collector_down_for": "1m",
                "nodes_not_ready_warning": 0.2,
                "nodes_not_ready_critical": 0.25,
                "failover_pool_labels": ["env"],
                "failover_headroom": 1.5,
                "istio_cluster_ids": {"eu.a": "mesh-a"},
                "apiserver_selector": 'job="kube-apiserver"',
                "queue_usage_critical": 1.0,
                "apiserver_availability_slo": 0.9,
            },
        }
    )
    write_rules(cfg, tmp_path)
    promtool = require_binary("promtool")
    _check_rules(promtool, sorted((tmp_path / "prometheus").glob("*.yaml")))
    _test_rules(promtool, tmp_path)


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = require_binary("amtool")
    done = _run([amtool, "check-config", str(RULES / "alertmanager" / "alertmanager.yaml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 inhibit rules" in done.stdout
