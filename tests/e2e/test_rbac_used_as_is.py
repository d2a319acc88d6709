"""The RBAC `observe rbac` generates, used as is by the fake Kubernetes API server (tests/kube_api_fake.py,
which decides by RBAC rules as the API server documents them): the token it grants reads exactly what
the collector needs, through `observe run --once` into a real central Prometheus, and gets 403 elsewhere."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from observe.config import parse_config
from observe.generate.rbac import render_rbac
from tests.collector_proc import run_once, write_config
from tests.e2e.remote_read_lab import SELECTOR, Exporter, central_prometheus, cluster_prometheus
from tests.kube_api_fake import FakeKubeAPI, Pod, Rule, Service, ServicePort
from tests.servers import prom_query, wait_until

pytestmark = pytest.mark.real_server


def rules_of(manifests: str) -> list[Rule]:
    """Every Role rule of the generated manifests, as the fake's RBAC rules (namespace-scoped)."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if doc and doc["kind"] == "Role":
            for r in doc["rules"]:
                for resource in r["resources"]:
                    out.append(Rule(tuple(r["verbs"]), resource, tuple(r.get("resourceNames", ())), doc["metadata"]["namespace"]))
    return out


def status_of(url: str, token: str, method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"},
                                 data=b"" if method == "POST" else None)  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_generated_role_grants_exactly_what_observe_calls(tmp_path: Path) -> None:
    exporter = Exporter().start()
    prom = cluster_prometheus(tmp_path / "prom", exporter, external={})
    centre = central_prometheus(tmp_path / "centre")
    api = FakeKubeAPI().start()
    pods = [Pod("prometheus-k8s-0", {9090: prom.url})]
    api.add_service(Service("monitoring", "prometheus-k8s", [ServicePort("web", 9090, 9090)], pods))
    api.add_service(Service("monitoring", "other", [ServicePort("web", 9090, 9090)], pods))
    (tmp_path / "token").write_text("generated")
    doc = {
        "interval": "5s",
        "data_dir": str(tmp_path / "data"),
        "self_metrics": False,
        "remote_read": {"start_from": "1m", "safety_lag": "1s", "min_window": "0s"},  # every cycle reads
        "clusters": [{
            "name": "edge",
            "kubernetes": {"api_server": api.url, "bearer_token_file": str(tmp_path / "token")},
            "prometheus": {"service": "monitoring/prometheus-k8s:web", "match": [SELECTOR], "timeout": "3s"},
        }],
        "central": {"remote_write": {"url": centre.url + "/api/v1/write"}},
    }  # fmt: skip
    try:
        rules = rules_of(render_rbac(parse_config(doc))["edge/rbac.yaml"])
        api.grant("generated", "system:serviceaccount:observe:observe-reader", *rules)
        wait_until(lambda: prom_query(prom, "lab_scrapes_total"), 30, message="samples in the source")
        time.sleep(2.5)  # older than the safety lag
        done = run_once(write_config(tmp_path / "observe.yaml", doc))
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: prom_query(centre, 'lab_scrapes_total{cluster="edge"}'), 10, message=done.stdout)
        assert prom_query(centre, 'lab_scrapes_total{cluster="edge"}')  # remote-read (a POST) was allowed

        base = api.url + "/api/v1/namespaces/monitoring"
        assert status_of(f"{base}/services/http:prometheus-k8s:web/proxy/api/v1/read", "generated", "POST") != 403
        assert status_of(f"{base}/services/http:other:web/proxy/federate", "generated") == 403  # another service
        assert status_of(f"{base}/services/prometheus-k8s/proxy/federate", "generated") == 403  # another segment
        assert status_of(f"{base}/pods/http:prometheus-k8s-0:9090/proxy/federate", "generated") == 403  # no pin_pod
        assert status_of(f"{base}/secrets", "generated") == 403
        assert status_of(api.url + "/api/v1/namespaces/kube-system/services/http:prometheus-k8s:web/proxy/", "generated") == 403
    finally:
        api.stop()
        prom.stop()
        centre.stop()
        exporter.stop()
