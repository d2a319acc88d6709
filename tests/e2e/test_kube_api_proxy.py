"""Clusters reached through their Kubernetes API servers: `observe run` against real Prometheus servers behind
the fake API server (tests/kube_api_fake.py), remote-read through the service and pod proxies.

- A kubeconfig with three contexts (a token, a tokenFile behind a Rancher-style path prefix, an exec plugin)
  becomes three clusters whose samples arrive at a real central Prometheus, stamped, sample for sample.
  The exec plugin runs once (its credential is cached until its expiry) and again after a 401.
- A token without the `create` grant on that exact `services/proxy` resource name fails with a 403 that
  names the resource and the rule, and no secret.
- An HA pair behind one Service with `pin_pod: true`: the centre sees one replica; when that pod's
  Prometheus stops, the other takes over.
"""

from __future__ import annotations

import json
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.collector_proc import run_once, start_collector, write_config
from tests.e2e.remote_read_lab import (
    SELECTOR,
    Exporter,
    as_centre,
    central_prometheus,
    cluster_prometheus,
    cursor_ms,
    diff,
    raw,
)
from tests.kube_api_fake import FakeKubeAPI, Pod, Rule, Service, ServicePort, User
from tests.servers import Server, prom_query, wait_until

pytestmark = pytest.mark.real_server

PROXY_SEGMENT = "http:prometheus-k8s:web"
READ_PATH = f"/api/v1/namespaces/monitoring/services/{PROXY_SEGMENT}/proxy/api/v1/read"
PROXY_RULE = Rule(("get", "create"), "services/proxy", (PROXY_SEGMENT,), "monitoring")

# The exec plugin: counts its runs in a file, prints an ExecCredential with token "exec-<run>".
PLUGIN = """#!{python}
import json, os, sys, datetime
counter = os.environ["COUNTER"]
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["interactive"] is False, info
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(os.environ["TTL"]))
print(json.dumps({{"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                  "status": {{"token": f"exec-{{n}}", "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


def prometheus_service(*pods: tuple[str, Server]) -> Service:
    return Service(
        "monitoring", "prometheus-k8s", [ServicePort("web", 9090, 9090)],
        [Pod(name, {9090: server.url}) for name, server in pods],
    )  # fmt: skip


def fake_api(*pods: tuple[str, Server], prefix: str = "") -> FakeKubeAPI:
    api = FakeKubeAPI(prefix=prefix).start()
    api.add_service(prometheus_service(*pods))
    return api


def collector_config(tmp: Path, clusters: list[dict[str, Any]], write_url: str) -> Path:
    doc = {
        "interval": "2s",
        "data_dir": str(tmp / "data"),
        "self_metrics": False,
        "shutdown_timeout": "10s",
        "queue": {"fsync": "always"},
        "remote_read": {"start_from": "1m", "safety_lag": "2s", "max_window": "20s", "min_window": "0s"},
        "clusters": clusters,
        "central": {"remote_write": {"url": write_url, "min_backoff": "100ms", "max_backoff": "1s"}},
    }
    return write_config(tmp / "observe.yaml", doc)


def prom_cluster(name: str, kubernetes: dict[str, Any], **prometheus: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kubernetes": kubernetes,
        "prometheus": {"service": "monitoring/prometheus-k8s:web", "protocol": "remote_read", "timeout": "1500ms",
                       "match": [SELECTOR], **prometheus},
    }  # fmt: skip


def centre_clusters(centre: Server) -> set[str]:
    return {r["metric"].get("cluster", "") for r in prom_query(centre, "count by (cluster) (lab_value)")}


def statuses(api: FakeKubeAPI, path_end: str) -> list[int]:
    with api._lock:
        return [st for _, path, _, st in api.requests if path.endswith(path_end)]


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter().start()
    yield e
    e.stop()


def test_three_kubeconfig_contexts_become_three_clusters_at_the_centre(tmp_path: Path, exporter: Exporter) -> None:
    sources = [cluster_prometheus(tmp_path / f"src-{c}", exporter, external={"cluster": "theirs"}, name=c)
               for c in "abc"]  # fmt: skip
    centre = central_prometheus(tmp_path / "centre")
    apis = [fake_api(("prometheus-k8s-0", sources[0])),
            fake_api(("prometheus-k8s-0", sources[1]), prefix="/k8s/clusters/c-m-4x7kq"),  # Rancher's form
            fake_api(("prometheus-k8s-0", sources[2]))]  # fmt: skip
    try:
        apis[0].grant("token-a-secret", "system:serviceaccount:observe:observe", PROXY_RULE)
        apis[1].grant("token-b-secret", "observe-b", PROXY_RULE)
        valid = {"exec-1"}  # the exec plugin's tokens the third API server accepts
        apis[2].authenticate = lambda t: User("observe-exec", [PROXY_RULE]) if t in valid else None
        (tmp_path / "token-b").write_text("token-b-secret\n")
        plugin = tmp_path / "bin" / "get-token"
        plugin.parent.mkdir()
        plugin.write_text(PLUGIN.format(python=sys.executable))
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
        counter = tmp_path / "plugin-runs"
        kubeconfig = tmp_path / "kube" / "config"
        kubeconfig.parent.mkdir()
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "ctx-a",
            "clusters": [{"name": f"k-{c}", "cluster": {"server": api.url}} for c, api in zip("abc", apis, strict=True)],
            "users": [
                {"name": "u-a", "user": {"token": "token-a-secret"}},
                {"name": "u-b", "user": {"tokenFile": "../token-b"}},  # relative to the kubeconfig
                {"name": "u-c", "user": {"exec": {
                    "apiVersion": "client.authentication.k8s.io/v1", "command": "../bin/get-token",
                    "interactiveMode": "Never",
                    "env": [{"name": "COUNTER", "value": str(counter)}, {"name": "TTL", "value": "3600"}]}}},
            ],
            "contexts": [{"name": f"ctx-{c}", "context": {"cluster": f"k-{c}", "user": f"u-{c}"}} for c in "abc"],
        }))  # fmt: skip
        clusters = [
            prom_cluster("alpha", {"kubeconfig": str(kubeconfig)}),  # current-context: ctx-a
            prom_cluster("bravo", {"kubeconfig": str(kubeconfig), "context": "ctx-b"}),
            prom_cluster("charlie", {"kubeconfig": str(kubeconfig), "context": "ctx-c"}),
        ]
        time.sleep(3)
        proc = start_collector(collector_config(tmp_path, clusters, centre.url + "/api/v1/write"))
        try:
            wait_until(lambda: centre_clusters(centre) >= {"alpha", "bravo", "charlie"}, 40,
                       message="all three clusters at the centre")  # fmt: skip
            assert counter.read_text() == "1"  # cached: one run for every request so far
            ok_before = statuses(apis[2], READ_PATH).count(200)
            assert ok_before >= 2
            valid.clear()
            valid.add("exec-2")  # the API server stops accepting exec-1: 401, a new run, exec-2
            wait_until(lambda: statuses(apis[2], READ_PATH).count(200) > ok_before + 1, 30,
                       message="reads with the re-run plugin's token")  # fmt: skip
            assert counter.read_text() == "2"
            assert 401 in statuses(apis[2], READ_PATH)
            status = proc.status()
        finally:
            assert proc.terminate() == 0
        log = proc.log_text()
        for secret in ("token-a-secret", "token-b-secret", "exec-1", "exec-2"):
            assert secret not in log
            assert secret not in json.dumps(status)
        # Remote-read went through the proxy (POST, the streamed reply), no Authorization reached a backend.
        for api in apis:
            assert 200 in statuses(api, READ_PATH)
            assert all("authorization" not in {k.lower() for k in h} for h in api.forwarded_headers)
        for name, src in zip(("alpha", "bravo", "charlie"), sources, strict=True):
            end = cursor_ms(tmp_path / "data", name)
            want = as_centre(raw(src, end), cluster=name)
            got = raw(centre, end, SELECTOR[:-1] + f',cluster="{name}"}}')
            assert sum(map(len, want.values())) > 0
            problems = diff(want, got)
            assert not problems, "\n".join(problems[:10])
    finally:
        for api in apis:
            api.stop()
        for s in [*sources, centre]:
            s.stop()


def test_a_token_without_the_grant_gets_a_403_naming_the_resource(tmp_path: Path, exporter: Exporter) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external={"cluster": "theirs"})
    api = fake_api(("prometheus-k8s-0", src))
    try:
        # `create` on services/proxy, but for another segment: the resource name is the whole segment
        api.grant("token-narrow", "observe-narrow", Rule(("get", "create"), "services/proxy", ("prometheus-k8s",)))
        (tmp_path / "token").write_text("token-narrow")
        k8s = {"api_server": api.url, "bearer_token_file": str(tmp_path / "token")}
        config = collector_config(tmp_path, [prom_cluster("alpha", k8s)], "http://127.0.0.1:9/api/v1/write")
        done = run_once(config, timeout=60)
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert 'services \\"http:prometheus-k8s:web\\" is forbidden' in out or (
            'services "http:prometheus-k8s:web" is forbidden' in out
        ), out
        assert "`create` on `services/proxy`" in out and "'http:prometheus-k8s:web'" in out, out
        assert "token-narrow" not in out
        assert statuses(api, READ_PATH) and set(statuses(api, READ_PATH)) == {403}
    finally:
        api.stop()
        src.stop()


def test_pin_pod_reads_one_replica_of_an_ha_pair_and_fails_over(tmp_path: Path, exporter: Exporter) -> None:
    prom_0 = cluster_prometheus(tmp_path / "p0", exporter, external={"replica": "a"}, name="p0")
    prom_1 = cluster_prometheus(tmp_path / "p1", exporter, external={"replica": "b"}, name="p1")
    centre = central_prometheus(tmp_path / "centre")
    api = fake_api(("prometheus-k8s-1", prom_1), ("prometheus-k8s-0", prom_0))  # listed out of order
    try:
        api.grant("token-ha", "observe-ha", PROXY_RULE, Rule(("get", "create"), "pods/proxy", (), "monitoring"),
                  Rule(("get",), "endpoints", ("prometheus-k8s",), "monitoring"))  # fmt: skip
        (tmp_path / "token").write_text("token-ha")
        k8s = {"api_server": api.url, "bearer_token_file": str(tmp_path / "token")}
        cluster = prom_cluster("ha", k8s, pin_pod=True)
        time.sleep(3)
        proc = start_collector(collector_config(tmp_path, [cluster], centre.url + "/api/v1/write"))
        try:
            wait_until(lambda: "ha" in centre_clusters(centre), 40, message="the pinned replica at the centre")
            time.sleep(4)  # a few more cycles: still one replica
            replicas = {r["metric"]["replica"] for r in prom_query(centre, 'lab_value{cluster="ha"}')}
            assert replicas == {"a"}  # prometheus-k8s-0: the first ready pod by name
            pod_reads = [p for _, p, _, _ in api.requests if "/pods/" in p]
            assert pod_reads and all("/pods/http:prometheus-k8s-0:9090/proxy/" in p for p in pod_reads)
            prom_0.stop()  # the pinned pod's Prometheus goes away (the pod still listed ready)
            wait_until(
                lambda: {r["metric"]["replica"] for r in prom_query(centre, 'lab_value{cluster="ha"}[5s]')} >= {"b"},
                40, message="the other replica's samples after failover",
            )  # fmt: skip
        finally:
            assert proc.terminate() == 0
        assert "failed over to the next ready pod" in proc.log_text()
    finally:
        api.stop()
        for s in (prom_0, prom_1, centre):
            s.stop()
