"""The deploy/ artifacts agree with the code: the manifests parse, point at the collector's real
endpoints and port, and the example config they mount loads."""

from __future__ import annotations

from pathlib import Path

import yaml

from observe.config import load_config

ROOT = Path(__file__).resolve().parent.parent.parent


def test_kubernetes_manifests_match_the_collector() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "observe.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "Service", "StatefulSet"}
    sts = kinds["StatefulSet"]
    assert sts["spec"]["replicas"] == 1
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["run", "-c", "/etc/observe/observe.yaml"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == 9464
    cfg = load_config(ROOT / "deploy" / "observe.example.yaml")
    # SIGTERM must leave time for the flush.
    assert pod["terminationGracePeriodSeconds"] > cfg.shutdown_timeout
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(cfg.data_dir) in mounts
    assert cfg.listen_host_port()[1] == 9464


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["observe"' in text
    assert "USER 10001" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'observe = "observe.cli:main"' in pyproject
