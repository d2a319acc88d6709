"""The inventories, offline: a kubeconfig's contexts, Argo CD cluster secrets and Cluster API kubeconfig
secrets become clusters (or problems naming their object), and the merge with `clusters:`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from observe.config import parse_config
from observe.discovery.argocd import kubeconfig_of
from observe.discovery.kubeconfig import discover_kubeconfig
from observe.discovery.model import Found
from observe.discovery.runner import merge
from observe.discovery.template import cluster_name

TEMPLATE = {
    "labels": {"env": "prod"},
    "labels_from": {"region": "label:topology.kubernetes.io/region"},
    "prometheus": {"service": "monitoring/prometheus-k8s:web"},
    "loki": {"service": "logging/loki:http", "selectors": ['{namespace=~".+"}']},
}


def kubeconfig(path: Path, contexts: list[str]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": f"https://{i}.example:6443"}} for i, c in enumerate(contexts)],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": c, "context": {"cluster": c, "user": "u"}} for c in contexts],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_one_cluster_per_context_with_globs_and_the_template(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "fleet.kubeconfig", ["prod-eu-1", "prod-us-1", "prod-sandbox", "dev-1"])
    cfg = parse_config({"discovery": {"kubeconfig": {
        "path": str(path), "include": ["prod-*"], "exclude": ["*-sandbox"], "template": TEMPLATE,
    }}})  # fmt: skip
    assert cfg.discovery is not None and cfg.discovery.kubeconfig is not None
    found = discover_kubeconfig(cfg.discovery.kubeconfig)
    assert [c.name for c in found.clusters] == ["prod-eu-1", "prod-us-1"] and not found.problems
    c = found.clusters[0]
    assert c.labels == {"env": "prod"}  # labels_from reads inventory objects: a context has none
    assert c.kubernetes is not None and c.kubernetes.context == "prod-eu-1" and c.kubernetes.kubeconfig == path
    assert c.prometheus is not None and str(c.prometheus.service) == "monitoring/prometheus-k8s:web"


def test_an_unreadable_kubeconfig_is_an_error_not_an_empty_fleet(tmp_path: Path) -> None:
    cfg = parse_config({"discovery": {"kubeconfig": {"path": str(tmp_path / "missing")}}})
    assert cfg.discovery is not None and cfg.discovery.kubeconfig is not None
    found = discover_kubeconfig(cfg.discovery.kubeconfig)
    assert found.error is not None and "cannot read" in found.error and found.clusters == []


def test_context_names_become_valid_cluster_names() -> None:
    assert cluster_name("arn:aws:eks:eu-west-1:123:cluster/prod") == "arn-aws-eks-eu-west-1-123-cluster-prod"
    assert cluster_name("gke_proj_europe-west1_prod") == "gke_proj_europe-west1_prod"
    with pytest.raises(ValueError, match="no letters or digits"):
        cluster_name("::/")


def secret(name: str, data: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    enc = {k: base64.b64encode((v if isinstance(v, str) else json.dumps(v)).encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": name, "namespace": "argocd", "labels": labels or {}}, "data": enc}


def test_an_argocd_secret_becomes_a_one_context_kubeconfig() -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    s = secret("cluster-prod", {
        "name": "prod-eu-1", "server": "https://10.0.0.1:6443",
        "config": {"bearerToken": "tok", "tlsClientConfig": {"caData": ca, "serverName": "api.prod"}},
    })  # fmt: skip
    name, raw = kubeconfig_of(s)
    doc = yaml.safe_load(raw)
    assert name == "prod-eu-1" and doc["current-context"] == "prod-eu-1"
    assert doc["clusters"][0]["cluster"] == {
        "server": "https://10.0.0.1:6443", "certificate-authority-data": ca, "tls-server-name": "api.prod",
    }  # fmt: skip
    assert doc["users"][0]["user"] == {"token": "tok"}


def test_an_argocd_exec_provider_becomes_an_exec_plugin() -> None:
    s = secret("c", {"name": "eks-1", "server": "https://x", "config": {"execProviderConfig": {
        "command": "aws", "args": ["eks", "get-token", "--cluster-name", "eks-1"], "env": {"AWS_REGION": "eu-west-1"},
        "apiVersion": "client.authentication.k8s.io/v1beta1",
    }}})  # fmt: skip
    user = yaml.safe_load(kubeconfig_of(s)[1])["users"][0]["user"]
    assert user["exec"]["command"] == "aws" and user["exec"]["env"] == [{"name": "AWS_REGION", "value": "eu-west-1"}]
    assert user["exec"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "a", "config": {}}, "no data.server"),
        ({"name": "a", "server": "https://x", "config": "{not json"}, "data.config is not JSON"),
        ({"name": "a", "server": "https://x", "config": {"awsAuthConfig": {"clusterName": "a"}}}, "awsAuthConfig is not supported"),
        ({"name": "a", "server": "https://x", "config": {}}, "no way to log in"),
        ({"name": "a", "server": "https://x", "config": {"tlsClientConfig": {"certData": "eA=="}, "bearerToken": "t"}},
         "certData and keyData go together"),
    ],
)  # fmt: skip
def test_a_malformed_argocd_secret_says_what_is_wrong(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kubeconfig_of(secret("bad", data))


def test_a_secret_whose_data_is_not_base64_is_refused() -> None:
    s = {"metadata": {"name": "x"}, "data": {"name": "!!!", "server": "aHR0cHM6Ly94"}}
    with pytest.raises(ValueError, match=r"data\.name is not base64"):
        kubeconfig_of(s)


def test_static_clusters_win_a_name_clash_and_the_clash_is_reported(tmp_path: Path) -> None:
    cfg = parse_config({"clusters": [{"name": "prod-eu-1", "prometheus": {"url": "http://127.0.0.1:1"}}]})
    path = kubeconfig(tmp_path / "k", ["prod-eu-1", "prod-us-1"])
    disc = parse_config({"discovery": {"kubeconfig": {"path": str(path), "template": TEMPLATE}}})
    assert disc.discovery is not None and disc.discovery.kubeconfig is not None
    found: list[Found] = [discover_kubeconfig(disc.discovery.kubeconfig)]
    merged, problems = merge(cfg, found)
    assert [c.name for c in merged.clusters] == ["prod-eu-1", "prod-us-1"]
    assert merged.clusters[0].prometheus is not None and merged.clusters[0].prometheus.url == "http://127.0.0.1:1"
    assert [str(p) for p in problems] == ["kubeconfig: cluster 'prod-eu-1': the name is taken (by clusters): skipped"]


async def test_cluster_api_kubeconfig_secrets_in_the_namespaces_given(tmp_path: Path) -> None:
    from observe.discovery.cluster_api import discover_cluster_api
    from tests.kube_api_fake import FakeKubeAPI, Rule

    api = FakeKubeAPI().start()
    try:
        api.grant("mgmt", "observe", Rule(("list",), "secrets", (), "capi"))
        (tmp_path / "token").write_text("mgmt")
        workload = yaml.safe_load(kubeconfig(tmp_path / "w", ["wl-admin@wl"]).read_text())
        workload["current-context"] = "wl-admin@wl"
        label = {"cluster.x-k8s.io/cluster-name": "wl", "region": "eu"}
        api.put_secret("capi", "wl-kubeconfig", {"value": base64.b64encode(yaml.safe_dump(workload).encode()).decode()}, label)
        api.put_secret("capi", "wl-ca", {"tls.crt": "eA=="}, label)  # the cluster's other secrets: not clusters
        api.put_secret("capi", "broken-kubeconfig", {"value": base64.b64encode(b"just text").decode()},
                       {"cluster.x-k8s.io/cluster-name": "broken"})  # fmt: skip
        cfg = parse_config({"data_dir": str(tmp_path / "data"), "discovery": {"cluster_api": {
            "namespaces": ["capi"], "template": TEMPLATE,
            "management": {"api_server": api.url, "bearer_token_file": str(tmp_path / "token")},
        }}})  # fmt: skip
        assert cfg.discovery is not None and cfg.discovery.cluster_api is not None
        found = await discover_cluster_api(cfg.discovery.cluster_api, cfg.data_dir)
        assert found.error is None
        assert [c.name for c in found.clusters] == ["wl"]
        k = found.clusters[0].kubernetes
        assert k is not None and k.context == "wl-admin@wl" and k.kubeconfig is not None
        assert oct(k.kubeconfig.stat().st_mode & 0o777) == "0o600"  # it holds the admin credentials
        assert [(p.object, p.message) for p in found.problems] == [
            ("secret capi/broken-kubeconfig", "data.value is not a kubeconfig with a current-context")
        ]
        # a namespace the token may not list: an error naming it, no clusters invented
        cfg2 = parse_config({**cfg.model_dump(mode="json"), "discovery": {"cluster_api": {
            **cfg.model_dump(mode="json")["discovery"]["cluster_api"], "namespaces": ["other"]}}})  # fmt: skip
        assert cfg2.discovery is not None and cfg2.discovery.cluster_api is not None
        denied = await discover_cluster_api(cfg2.discovery.cluster_api, cfg2.data_dir)
        assert denied.error is not None and "403" in denied.error and denied.clusters == []
    finally:
        api.stop()
