"""Clusters discovered from Argo CD cluster secrets while `observe run` runs: real Prometheus servers behind
fake Kubernetes API servers (tests/kube_api_fake.py), the secrets in a fake management API server.

A secret created is pulled within a refresh and a cycle; a rotated token (the old one revoked) is picked
up; a deleted secret's cluster is retired (queue drained and removed); a malformed secret is reported by
name in /status and a metric, and the other clusters go on.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.collector_proc import start_collector, write_config
from tests.e2e.remote_read_lab import SELECTOR, Exporter, central_prometheus, cluster_prometheus
from tests.kube_api_fake import FakeKubeAPI, Pod, Rule, Service, ServicePort
from tests.servers import Server, prom_query, wait_until

pytestmark = pytest.mark.real_server

SEGMENT = "http:prometheus-k8s:web"
PROXY = Rule(("get", "create"), "services/proxy", (SEGMENT,), "monitoring")
LABELS = {"argocd.argoproj.io/secret-type": "cluster", "region": "eu-west-1"}


def workload(prometheus: Server, token: str) -> FakeKubeAPI:
    api = FakeKubeAPI().start()
    api.add_service(Service("monitoring", "prometheus-k8s", [ServicePort("web", 9090, 9090)],
                            [Pod("prometheus-k8s-0", {9090: prometheus.url})]))  # fmt: skip
    api.grant(token, "observe-reader", PROXY)
    return api


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def argocd_secret(name: str, server: str, token: str) -> dict[str, str]:
    return {"name": b64(name), "server": b64(server), "config": b64(json.dumps({"bearerToken": token}))}


def test_argocd_secrets_created_rotated_and_deleted_while_running(tmp_path: Path) -> None:
    exporter = Exporter().start()
    pa = cluster_prometheus(tmp_path / "pa", exporter, external={}, name="pa")
    pb = cluster_prometheus(tmp_path / "pb", exporter, external={}, name="pb")
    centre = central_prometheus(tmp_path / "centre")
    a, b = workload(pa, "tok-a"), workload(pb, "tok-b")
    mgmt = FakeKubeAPI().start()
    mgmt.grant("mgmt", "observe", Rule(("list", "get", "watch"), "secrets", (), "argocd"))
    (tmp_path / "mgmt-token").write_text("mgmt")
    doc: dict[str, Any] = {
        "interval": "2s",
        "data_dir": str(tmp_path / "data"),
        "self_metrics": False,
        "shutdown_timeout": "5s",
        "removal_grace": "3s",
        "remote_read": {"start_from": "1m", "safety_lag": "1s", "min_window": "0s"},  # every cycle reads
        "central": {"remote_write": {"url": centre.url + "/api/v1/write"}},
        "discovery": {
            "refresh": "2s",
            "argocd": {
                "namespace": "argocd",
                "management": {"api_server": mgmt.url, "bearer_token_file": str(tmp_path / "mgmt-token")},
                "template": {
                    "labels": {"env": "prod"},
                    "labels_from": {"region": "label:region"},
                    "prometheus": {"service": "monitoring/prometheus-k8s:web", "match": [SELECTOR], "timeout": "1500ms"},
                },
            },
        },
    }
    proc = start_collector(write_config(tmp_path / "observe.yaml", doc))
    try:
        mgmt.put_secret("argocd", "cluster-a", argocd_secret("alpha", a.url, "tok-a"), LABELS)
        got = wait_until(lambda: prom_query(centre, 'lab_scrapes_total{cluster="alpha"}'), 40, message="alpha")
        assert got[0]["metric"]["region"] == "eu-west-1" and got[0]["metric"]["env"] == "prod"

        mgmt.put_secret("argocd", "cluster-b", argocd_secret("beta", b.url, "tok-b"), LABELS)
        mgmt.put_secret("argocd", "broken", {"name": b64("gamma"), "config": b64("{}")}, LABELS)
        mgmt.put_secret("argocd", "not-a-cluster", argocd_secret("delta", b.url, "tok-b"), {"other": "x"})
        wait_until(lambda: prom_query(centre, 'lab_scrapes_total{cluster="beta"}'), 30, message="beta")
        status = proc.status()
        assert set(status["clusters"]) == {"alpha", "beta"}  # the unlabelled secret is not Argo CD's cluster
        assert status["discovery"]["clusters"] == {"argocd": ["alpha", "beta"]}
        problems = status["discovery"]["problems"]
        assert [(p["object"], p["error"]) for p in problems] == [
            ("secret argocd/broken", "no data.server: not a usable Argo CD cluster secret")
        ]
        assert proc.metric_value("observe_discovery_problems", source="argocd") == 1
        assert "mgmt" not in json.dumps(status) and "tok-a" not in json.dumps(status)

        # rotated token: the old one revoked at the cluster, the secret updated
        a.grant("tok-a2", "observe-reader", PROXY)
        with a._lock:
            del a.tokens["tok-a"]
        mgmt.put_secret("argocd", "cluster-a", argocd_secret("alpha", a.url, "tok-a2"), LABELS)
        wait_until(lambda: "fleet changed" in proc.log_text() and '"changed": ["alpha"]' in proc.log_text(), 20,
                   message="alpha changed")  # fmt: skip
        after = proc.status()["clusters"]["alpha"]["prometheus"]["last_finished"]
        wait_until(lambda: (s := proc.status()["clusters"]["alpha"]["prometheus"])["last_finished"] != after and s["up"],
                   20, message="alpha pulled with the new token")  # fmt: skip

        # deleted: beta retired, its queue drained and removed; alpha goes on
        mgmt.delete_secret("argocd", "cluster-b")
        wait_until(lambda: set(proc.status()["clusters"]) == {"alpha"}, 20, message="beta gone")
        wait_until(lambda: not (tmp_path / "data" / "queue" / "beta").exists(), 20, message="beta's queue removed")
        assert proc.status()["clusters"]["alpha"]["prometheus"]["up"] is True
    finally:
        code = proc.terminate()
        for api in (a, b, mgmt):
            api.stop()
        for s in (pa, pb, centre):
            s.stop()
        exporter.stop()
    assert code == 0
