"""`observe rbac`: the Roles name exactly the proxy segments observe calls, with the verbs its protocol
sends; every manifest validates against Kubernetes' own schemas (kubernetes-validate, offline); the same
config renders the same bytes; the kubeconfig template fills into a working kubeconfig."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from observe.cli import main
from observe.config import Config, parse_config
from observe.errors import ConfigError
from observe.generate.rbac import (
    ClusterAccess,
    Identity,
    ProxiedService,
    cluster_manifests,
    render_rbac,
    write_rbac,
)
from observe.kube.service_ref import ServiceRef

# The oldest Kubernetes still widely run here and the newest the installed kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", latest_version())
LOKI_SELECTORS = ['{namespace=~".+"}']


def _config(*clusters: dict[str, Any]) -> Config:
    """A config with `clusters[].kubernetes` and `*.service` (observe/config/fleet.py)."""
    return parse_config({"clusters": list(clusters)})


def _cluster(name: str = "eu-1", *, prometheus: dict[str, Any] | None = None,
             loki: dict[str, Any] | None = None, **kube: Any) -> dict[str, Any]:  # fmt: skip
    cluster: dict[str, Any] = {
        "name": name,
        "kubernetes": kube or {"kubeconfig": f"/var/run/secrets/observe/{name}"},
    }
    if prometheus is not None:
        cluster["prometheus"] = prometheus
    if loki is not None:
        cluster["loki"] = {"selectors": LOKI_SELECTORS, **loki}
    return cluster


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _roles(text: str) -> dict[str, list[dict[str, Any]]]:
    """namespace -> the rules of its Role."""
    return {d["metadata"]["namespace"]: d["rules"] for d in _docs(text) if d["kind"] == "Role"}


def _proxy_grants(rules: list[dict[str, Any]], resource: str = "services/proxy") -> dict[str, list[str]]:
    """resource name -> verbs, over every rule on `resource`."""
    out: dict[str, list[str]] = {}
    for rule in rules:
        if rule["resources"] == [resource]:
            for name in rule.get("resourceNames", ["*"]):
                out[name] = sorted({*out.get(name, []), *rule["verbs"]})
    return out


# -- the config's services -> resource names and verbs -------------------------------------------------


@pytest.mark.parametrize(
    ("service", "scheme", "segment"),
    [
        ("monitoring/prometheus-k8s:web", "http", "http:prometheus-k8s:web"),  # a named port
        ("monitoring/prometheus:9090", "http", "http:prometheus:9090"),  # a numeric port
        ("monitoring/prometheus", "http", "http:prometheus"),  # no port: the service's only one
        ("monitoring/thanos-sidecar:https", "https", "https:thanos-sidecar:https"),  # TLS to the backend
    ],
)
@pytest.mark.parametrize(
    ("protocol", "verbs"),
    [("federate", ["get"]), ("auto", ["create", "get"]), ("remote_read", ["create", "get"])],
)
def test_the_role_names_exactly_the_segment_with_the_protocols_verbs(
    service: str, scheme: str, segment: str, protocol: str, verbs: list[str]
) -> None:
    prom = {"service": service, "scheme": scheme, "protocol": protocol}
    rendered = render_rbac(_config(_cluster(prometheus=prom)))
    roles = _roles(rendered["eu-1/rbac.yaml"])
    assert list(roles) == ["monitoring"]
    # The whole segment, never the bare service name: RBAC answers 403 for `prometheus-k8s` alone.
    assert _proxy_grants(roles["monitoring"]) == {segment: verbs}
    assert [r["resources"] for r in roles["monitoring"]] == [["services/proxy"]]  # no pin_pod: nothing else


def test_prometheus_and_loki_in_one_namespace_each_get_only_their_own_verbs() -> None:
    cluster = _cluster(
        prometheus={"service": "observability/prometheus-k8s:web", "protocol": "auto"},
        loki={"service": "observability/loki:http"},
    )
    rules = _roles(render_rbac(_config(cluster))["eu-1/rbac.yaml"])["observability"]
    # Loki is only read with GET: it must not share Prometheus' `create`.
    assert _proxy_grants(rules) == {"http:prometheus-k8s:web": ["create", "get"], "http:loki:http": ["get"]}


def test_each_namespace_gets_its_own_role_bound_to_the_reader() -> None:
    cluster = _cluster(
        prometheus={"service": "monitoring/prometheus-k8s:web"}, loki={"service": "logging/loki:http"}
    )
    docs = _docs(render_rbac(_config(cluster))["eu-1/rbac.yaml"])
    assert [(d["kind"], d["metadata"].get("namespace")) for d in docs] == [
        ("Namespace", None), ("ServiceAccount", "observe"), ("Secret", "observe"),
        ("Role", "logging"), ("RoleBinding", "logging"), ("Role", "monitoring"), ("RoleBinding", "monitoring"),
    ]  # fmt: skip
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "observe-reader",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "observe-reader", "namespace": "observe"}
        ]
    secret = docs[2]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "observe-reader"}


def test_pin_pod_adds_endpoints_by_name_and_the_namespaces_pod_proxy() -> None:
    prom = {"service": "monitoring/prometheus-k8s:web", "protocol": "federate", "pin_pod": True}
    text = render_rbac(_config(_cluster(prometheus=prom)))["eu-1/rbac.yaml"]
    rules = _roles(text)["monitoring"]
    by_resource = {(r["apiGroups"][0], r["resources"][0]): r for r in rules}
    assert by_resource["", "endpoints"] == {
        "apiGroups": [""], "resources": ["endpoints"], "verbs": ["get"], "resourceNames": ["prometheus-k8s"],
    }  # fmt: skip
    assert set(by_resource) == {("", "services/proxy"), ("", "endpoints"), ("", "pods/proxy")}  # no slices
    pods = by_resource["", "pods/proxy"]
    assert pods["verbs"] == ["get"]  # federation: GET only, on pods too
    assert "resourceNames" not in pods  # pod names are not known in advance: say so
    assert "Pod names are not known in advance" in text


def test_a_source_reached_by_url_or_a_cluster_without_kubernetes_gets_nothing() -> None:
    cfg = _config(
        _cluster("proxied", prometheus={"service": "monitoring/prometheus-k8s:web"},
                 loki={"url": "http://loki.example:3100"}),  # a direct URL: no grant for it
        {"name": "direct", "prometheus": {"url": "http://prometheus.example:9090"}},
    )  # fmt: skip
    rendered = render_rbac(cfg)
    assert list(rendered) == ["proxied/kubeconfig.yaml", "proxied/rbac.yaml"]
    assert list(_roles(rendered["proxied/rbac.yaml"])) == ["monitoring"]


def test_nothing_to_grant_is_a_config_error() -> None:
    cfg = parse_config({"clusters": [{"name": "a", "prometheus": {"url": "http://a:9090"}}]})
    with pytest.raises(ConfigError, match="no cluster is reached through its API server"):
        render_rbac(cfg)


def test_the_rules_name_the_segments_at_the_value_level() -> None:
    """The same table without the config: ServiceRef.segment() is what the Role names."""
    refs = [ServiceRef.parse(text, scheme=scheme) for text, scheme in (
        ("monitoring/prometheus-k8s:web", "http"), ("monitoring/prometheus:9090", "http"),
        ("monitoring/prometheus", "http"), ("monitoring/thanos:https", "https"),
    )]  # fmt: skip
    services = tuple(
        ProxiedService(ref, ("GET", "POST") if i % 2 else ("GET",)) for i, ref in enumerate(refs)
    )
    docs = [doc for _, doc in cluster_manifests(ClusterAccess("eu-1", "eu-1", services), Identity())]
    rules = next(d["rules"] for d in docs if d["kind"] == "Role")
    assert _proxy_grants(rules) == {
        "http:prometheus-k8s:web": ["get"], "http:prometheus:9090": ["create", "get"],
        "http:prometheus": ["get"], "https:thanos:https": ["create", "get"],
    }  # fmt: skip


# -- the manifests are valid Kubernetes objects --------------------------------------------------------


def _every_kind_config() -> Config:
    return _config(
        _cluster("eu-1", prometheus={"service": "monitoring/prometheus-k8s:web", "pin_pod": True},
                 loki={"service": "logging/loki:http"}),
        _cluster("us-2", prometheus={"service": "monitoring/prometheus:9090", "scheme": "https",
                                     "protocol": "federate", "pin_pod": True},
                 loki={"service": "monitoring/loki"}, api_server="https://us-2.example:6443"),
    )  # fmt: skip


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(version: str) -> None:
    rendered = render_rbac(_every_kind_config(), Identity("reader", "observe-system"))
    rendered.update(_discovery_render())
    manifests = [
        (path, d) for path, text in rendered.items() if path.endswith("/rbac.yaml") for d in _docs(text)
    ]
    assert {d["kind"] for _, d in manifests} == {
        "Namespace",
        "ServiceAccount",
        "Secret",
        "Role",
        "RoleBinding",
    }
    for path, doc in manifests:
        # strict: an unknown field (a typo such as `apiGroup` in a rule) fails too, not only a wrong type.
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{path}: {doc['kind']} {doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"
            )


def test_an_invalid_manifest_is_caught_by_the_validator() -> None:
    """The proof above can fail: a rule with a misspelt field and one without verbs are refused."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r", "namespace": "n"},
    }
    for rule in ({"apiGroup": [""], "resources": ["services/proxy"], "verbs": ["get"]},
                 {"apiGroups": [""], "resources": ["services/proxy"]}):  # fmt: skip
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate({**role, "rules": [rule]}, K8S_VERSIONS[0], strict=True)


def test_the_kubeconfig_template_fills_into_a_kubeconfig_for_the_reader() -> None:
    cfg = _config(
        _cluster(prometheus={"service": "monitoring/prometheus-k8s:web"}, kubeconfig="/k/eu-1", context="eu")
    )
    text = render_rbac(cfg)["eu-1/kubeconfig.yaml"]
    assert "kubectl --context $ADMIN -n observe get secret observe-reader-token" in text
    filled = text.replace("__SERVER__", "https://eu-1.example:6443").replace("__CA_DATA__", "Q0E=")
    kubeconfig = yaml.safe_load(filled.replace("__TOKEN__", "eyJhbGciOi.x.y"))
    assert kubeconfig["kind"] == "Config" and kubeconfig["current-context"] == "eu"  # kubernetes.context
    assert kubeconfig["clusters"] == [
        {
            "name": "eu",
            "cluster": {"server": "https://eu-1.example:6443", "certificate-authority-data": "Q0E="},
        }
    ]
    assert kubeconfig["users"] == [{"name": "observe-reader", "user": {"token": "eyJhbGciOi.x.y"}}]
    assert kubeconfig["contexts"] == [
        {"name": "eu", "context": {"cluster": "eu", "user": "observe-reader", "namespace": "observe"}}
    ]


# -- reproducible ---------------------------------------------------------------------------------------


def test_the_same_config_renders_byte_identical_files(tmp_path: Path) -> None:
    first, second = render_rbac(_every_kind_config()), render_rbac(_every_kind_config())
    assert first == second and list(first) == sorted(first)
    write_rbac(_every_kind_config(), tmp_path / "a")
    write_rbac(_every_kind_config(), tmp_path / "b")
    for rel, text in first.items():
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes() == text.encode()


def test_a_cluster_that_left_the_config_loses_its_files_and_nothing_else(tmp_path: Path) -> None:
    write_rbac(_every_kind_config(), tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "us-2" / "README").write_text("mine")
    write_rbac(_config(_cluster("eu-1", prometheus={"service": "monitoring/prometheus-k8s:web"})), tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "eu-1", "eu-1/kubeconfig.yaml", "eu-1/rbac.yaml", "notes", "us-2", "us-2/README",
    ]  # fmt: skip


# -- discovery (management cluster) ---------------------------------------------------------------------


def _discovery_render() -> dict[str, str]:
    # A stand-in for a config with `discovery:` (read with getattr, as attribute or mapping), which may be
    # newer than observe.config.
    cfg: Any = SimpleNamespace(clusters=[], discovery={
        "argocd": {"namespace": "argocd"}, "cluster_api": {"namespaces": ["capi-system", "argocd"]},
    })  # fmt: skip
    return render_rbac(cfg, Identity(collector_service_account="observe", collector_namespace="observe"))


def test_discovery_reads_secrets_in_the_namespaces_it_names_and_no_others() -> None:
    rendered = _discovery_render()
    assert list(rendered) == ["_management/rbac.yaml"]
    docs = _docs(rendered["_management/rbac.yaml"])
    roles = {d["metadata"]["namespace"]: d["rules"] for d in docs if d["kind"] == "Role"}
    assert roles == {ns: [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]
                     for ns in ("argocd", "capi-system")}  # fmt: skip
    subjects = {tuple(s.values()) for d in docs if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert subjects == {("ServiceAccount", "observe", "observe")}


# -- the command ----------------------------------------------------------------------------------------


def _write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_the_rbac_command_writes_one_directory_per_cluster(tmp_path: Path) -> None:
    cfg = {"clusters": [_cluster(prometheus={"service": "monitoring/prometheus-k8s:web"})]}
    path = _write_config(tmp_path / "observe.yaml", cfg)
    args = [
        "rbac",
        "-c",
        str(path),
        "-o",
        str(tmp_path / "out"),
        "--service-account",
        "obs",
        "--namespace",
        "o11y",
    ]
    assert main(args) == 0
    docs = _docs((tmp_path / "out" / "eu-1" / "rbac.yaml").read_text())
    assert ("ServiceAccount", "obs", "o11y") in {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
                                                  for d in docs}  # fmt: skip


def test_the_rbac_command_refuses_a_bad_name_or_nothing_to_grant(tmp_path: Path) -> None:
    direct = _write_config(
        tmp_path / "direct.yaml", {"clusters": [{"name": "a", "prometheus": {"url": "http://a:9"}}]}
    )
    assert main(["rbac", "-c", str(direct), "-o", str(tmp_path / "out")]) == 2
    assert main(["rbac", "-c", str(direct), "-o", str(tmp_path / "out"), "--namespace", "Observe"]) == 2
    assert not (tmp_path / "out").exists()
