"""Reaching a cluster through its API server (observe/kube/): kubeconfig contexts, exec credential plugins
(run, cached until expiry, re-run on 401, errors naming the plugin), TLS from kubeconfig data, refusals
explained, ready endpoints for pin_pod. The API server is tests/kube_api_fake.py, on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from observe.config import ClusterConfig, parse_config, service_problems
from observe.errors import ConfigError, SourceError
from observe.http import new_session
from observe.kube.api_server import APIServer, PinnedPods, PodEndpoint, ready_endpoints
from observe.kube.exec_credential import ExecCredentialCache, ExecPlugin
from observe.kube.kubeconfig import load_kubeconfig
from observe.kube.service_ref import ServiceRef
from tests.kube_api_fake import FakeKubeAPI, Pod, Rule, Service, ServicePort, User, endpoints_object
from tests.unit.test_http import PKI, _server_ssl, pki  # noqa: F401  (pki is a fixture)

ENDPOINTS = "/api/v1/namespaces/monitoring/endpoints/prometheus-k8s"
READ_ENDPOINTS = Rule(("get",), "endpoints", ("prometheus-k8s",), "monitoring")


def plugin_script(tmp: Path, body: str) -> Path:
    """An exec plugin: a Python script whose `body` prints (or fails) as the test wants."""
    path = tmp / "plugin"
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


COUNTING = """
counter = os.environ["COUNTER"]
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
api = json.loads(os.environ["KUBERNETES_EXEC_INFO"])["apiVersion"]
status = {"token": f"tok-{n}"}
if os.environ.get("EXPIRES"):
    status["expirationTimestamp"] = os.environ["EXPIRES"]
print(json.dumps({"apiVersion": api, "kind": "ExecCredential", "status": status}))
"""


def kubeconfig(tmp: Path, server: str, user: dict[str, Any], **cluster: Any) -> Path:
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                     {"name": "other", "context": {"cluster": "c", "user": "nobody"}}],
    }))  # fmt: skip
    return path


def cluster_for(path: Path, context: str | None = None) -> ClusterConfig:
    k8s: dict[str, Any] = {"kubeconfig": str(path), **({"context": context} if context else {})}
    cfg = parse_config({"clusters": [{"name": "k", "kubernetes": k8s,
                                      "prometheus": {"service": "monitoring/prometheus-k8s:web"}}]})  # fmt: skip
    return cfg.clusters[0]


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    fake = FakeKubeAPI().start()
    fake.add_service(Service("monitoring", "prometheus-k8s", [ServicePort("web", 9090, 19090)],
                             [Pod("prometheus-k8s-1", {19090: "http://127.0.0.1:9"}),
                              Pod("prometheus-k8s-0", {19090: "http://127.0.0.1:9"}),
                              Pod("prometheus-k8s-2", {19090: "http://127.0.0.1:9"}, ready=False)]))  # fmt: skip
    yield fake
    fake.stop()


async def get_endpoints(cluster: ClusterConfig) -> Any:
    server = APIServer.for_cluster(cluster)
    async with new_session(cluster.prometheus) as session:  # type: ignore[arg-type]
        return await server.get_json(session, ENDPOINTS)


# -- kubeconfig -----------------------------------------------------------------------------------------------


def test_kubeconfig_context_defaults_to_current_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "https://10.0.0.1:6443/k8s/clusters/c-1/", {"tokenFile": "tok"},
                      **{"certificate-authority": "ca.crt", "tls-server-name": "kubernetes"})  # fmt: skip
    target = load_kubeconfig(path)
    assert target.context == "main" and target.server == "https://10.0.0.1:6443/k8s/clusters/c-1"
    assert target.ca_file == tmp_path / "ca.crt" and target.user.token_file == tmp_path / "tok"
    assert target.server_name == "kubernetes"
    with pytest.raises(ConfigError, match=r"no user 'nobody' in users \(there: u\)"):
        load_kubeconfig(path, "other")
    with pytest.raises(ConfigError, match=r"no context 'prod' in contexts \(there: main, other\)"):
        load_kubeconfig(path, "prod")


def test_unsupported_kubeconfig_auth_is_an_error_not_an_anonymous_request(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "https://x:6443", {"auth-provider": {"name": "oidc"}})
    with pytest.raises(ConfigError, match="auth-provider is not supported"):
        load_kubeconfig(path)


def test_observe_run_checks_the_kubeconfig_context_with_its_yaml_path(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "https://x:6443", {"token": "t"})
    cfg = parse_config({"clusters": [{"name": "k", "kubernetes": {"kubeconfig": str(path), "context": "prod"},
                                      "prometheus": {"service": "monitoring/p:web"}}]})  # fmt: skip
    problems = service_problems(cfg)
    assert len(problems) == 1 and problems[0].startswith("clusters[0].kubernetes.context: kubeconfig ")


# -- exec plugins ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"])
async def test_an_exec_credential_is_cached_until_its_expiry(tmp_path: Path, version: str) -> None:
    script = plugin_script(tmp_path, COUNTING)
    now = [1_800_000_000.0]
    plugin = ExecPlugin(str(script), version, env=(("COUNTER", str(tmp_path / "n")), ("EXPIRES", "2027-02-01T00:00:00Z")))
    cache = ExecCredentialCache(plugin, timeout=10, clock=lambda: now[0])
    assert (await cache.get()).token == "tok-1"
    assert (await cache.get()).token == "tok-1" and cache.runs == 1  # cached
    now[0] = 1_800_000_000.0 + 86400 * 400  # past 2027-02-01
    assert (await cache.get()).token == "tok-2" and cache.runs == 2
    cache.expire()  # a 401
    assert (await cache.get()).token == "tok-3"


async def test_exec_plugin_errors_name_the_plugin_and_its_stderr_first_line(tmp_path: Path) -> None:
    script = plugin_script(tmp_path, 'sys.stderr.write("\\nerror: token expired, run login\\nmore\\n"); sys.exit(3)')
    cache = ExecCredentialCache(ExecPlugin(str(script), "client.authentication.k8s.io/v1"), timeout=10)
    with pytest.raises(ConfigError) as info:
        await cache.get()
    assert str(info.value) == f"exec plugin {str(script)!r}: exit status 3: error: token expired, run login"
    missing = ExecPlugin("/nonexistent/aws", "client.authentication.k8s.io/v1", install_hint="install the AWS CLI")
    with pytest.raises(ConfigError, match=r"exec plugin '/nonexistent/aws': cannot run it: .*\(install the AWS CLI\)"):
        await ExecCredentialCache(missing, timeout=10).get()
    wrong = plugin_script(tmp_path, 'print(json.dumps({"apiVersion": "v9", "kind": "ExecCredential", "status": {}}))')
    with pytest.raises(ConfigError, match="printed apiVersion 'v9'"):
        await ExecCredentialCache(ExecPlugin(str(wrong), "client.authentication.k8s.io/v1"), timeout=10).get()


async def test_a_401_runs_the_plugin_again_once_within_the_request(tmp_path: Path, api: FakeKubeAPI) -> None:
    script = plugin_script(tmp_path, COUNTING)
    valid = {"tok-2"}  # the first credential is already revoked
    api.authenticate = lambda t: User("exec-user", [READ_ENDPOINTS]) if t in valid else None
    path = kubeconfig(tmp_path, api.url, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(script), "interactiveMode": "Never",
        "env": [{"name": "COUNTER", "value": str(tmp_path / "n")}]}})  # fmt: skip
    doc = await get_endpoints(cluster_for(path))
    assert doc["kind"] == "Endpoints" and (tmp_path / "n").read_text() == "2"
    assert [st for _, p, _, st in api.requests] == [401, 200]
    valid.clear()  # now nothing is accepted: one re-run, then the 401 is the answer
    with pytest.raises(SourceError, match="HTTP 401: the API server did not accept our credentials") as info:
        await get_endpoints(cluster_for(path))
    assert "tok-" not in str(info.value) and "exec plugin" in str(info.value)


# -- TLS from the kubeconfig -----------------------------------------------------------------------------------


async def test_ca_data_and_an_exec_client_certificate_over_tls(tmp_path: Path, pki: PKI) -> None:  # noqa: F811
    fake = FakeKubeAPI(ssl_context=_server_ssl(pki, require_client_cert=True),
                       client_cert_users={"client": User("cert-user", [READ_ENDPOINTS])}).start()  # fmt: skip
    fake.add_service(Service("monitoring", "prometheus-k8s", [ServicePort("web", 9090, 9090)], []))
    try:
        cert, key = pki.client_cert.read_text(), pki.client_key.read_text()
        script = plugin_script(tmp_path, f"""
api = json.loads(os.environ["KUBERNETES_EXEC_INFO"])["apiVersion"]
print(json.dumps({{"apiVersion": api, "kind": "ExecCredential",
                  "status": {{"clientCertificateData": {cert!r}, "clientKeyData": {key!r}}}}}))""")
        ca = base64.b64encode(pki.ca.read_bytes()).decode()
        exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script)}}
        path = kubeconfig(tmp_path, fake.url, exec_user, **{"certificate-authority-data": ca})
        assert (await get_endpoints(cluster_for(path)))["subsets"][0]["addresses"] == []
        data_user = {"client-certificate-data": base64.b64encode(cert.encode()).decode(),
                     "client-key-data": base64.b64encode(key.encode()).decode()}  # fmt: skip
        path = kubeconfig(tmp_path, fake.url, data_user, **{"certificate-authority-data": ca})
        assert (await get_endpoints(cluster_for(path)))["kind"] == "Endpoints"
        other = base64.b64encode(pki.other_ca.read_bytes()).decode()
        path = kubeconfig(tmp_path, fake.url, data_user, **{"certificate-authority-data": other})
        with pytest.raises(SourceError, match=r"certificate verification failed: self-signed certificate in certificate chain \(check the TLS settings of kubeconfig "):
            await get_endpoints(cluster_for(path))
    finally:
        fake.stop()


# -- refusals and endpoints --------------------------------------------------------------------------------------


async def test_a_refusal_names_the_rbac_rule_and_never_the_token(tmp_path: Path, api: FakeKubeAPI) -> None:
    api.grant("sekrit-token", "observe", Rule(("get",), "endpoints", ("other",), "monitoring"))
    path = kubeconfig(tmp_path, api.url, {"token": "sekrit-token"})
    with pytest.raises(SourceError) as info:
        await get_endpoints(cluster_for(path))
    text = str(info.value)
    assert 'endpoints "prometheus-k8s" is forbidden: User "observe" cannot get resource "endpoints"' in text
    assert "sekrit-token" not in text
    server = APIServer.for_cluster(cluster_for(path))
    body = json.dumps({"kind": "Status", "code": 403, "message": "token sekrit-token is not allowed"}).encode()
    url = server.service_url(ServiceRef.parse("monitoring/prometheus-k8s:web")) + "/api/v1/read"
    said = server.refusal("POST", url, 403, body)
    assert said is not None and "sekrit-token" not in said
    assert "RBAC `create` on `services/proxy` with resourceNames ['http:prometheus-k8s:web']" in said
    assert server.refusal("POST", url, 404, b"404 page not found\n") is None  # the backend's, not a Status


async def test_pinned_pods_are_the_ready_ones_in_name_order_with_a_numeric_service_port(
    tmp_path: Path, api: FakeKubeAPI
) -> None:
    api.grant("t", "observe", READ_ENDPOINTS, Rule(("get",), "services", ("prometheus-k8s",), "monitoring"))
    path = kubeconfig(tmp_path, api.url, {"token": "t"})
    server = APIServer.for_cluster(cluster_for(path))
    async with new_session(cluster_for(path).prometheus) as session:  # type: ignore[arg-type]
        pods = PinnedPods(server, ServiceRef.parse("monitoring/prometheus-k8s:9090"), session)
        tried: list[str] = []

        async def fails(base: str) -> str:
            tried.append(base)
            raise SourceError("down", reason="unreachable")

        with pytest.raises(SourceError, match="every ready pod of service monitoring/prometheus-k8s:9090 failed"):
            await pods.attempt(fails)
    assert [t.rsplit("/pods/", 1)[1] for t in tried] == [
        "http:prometheus-k8s-0:19090/proxy", "http:prometheus-k8s-1:19090/proxy"
    ]  # the pod's port behind the service's 9090; the not-ready pod is never tried


def test_ready_endpoints_reads_the_port_by_name() -> None:
    svc = Service("m", "s", [ServicePort("web", 80, 8080), ServicePort("grpc", 81, 8081)],
                  [Pod("b", {}), Pod("a", {}), Pod("c", {}, ready=False)])  # fmt: skip
    assert ready_endpoints(endpoints_object(svc), "grpc") == [PodEndpoint("a", 8081), PodEndpoint("b", 8081)]
    with pytest.raises(ValueError, match="the service has 2 ports: name one"):
        ready_endpoints(endpoints_object(svc), None)
