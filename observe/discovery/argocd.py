"""Argo CD's cluster secrets in the management cluster, each one workload cluster.

Format (https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/#clusters): a Secret
labelled `argocd.argoproj.io/secret-type: cluster` with keys `name`, `server` and `config`, a JSON document:

    bearerToken          a token for the cluster's API server
    tlsClientConfig      caData, certData, keyData (base64 PEM), insecure, serverName
    execProviderConfig   command, args, env, apiVersion: an exec credential plugin
    awsAuthConfig        clusterName, roleARN: Argo CD's own AWS signer; not supported here (reported)

Each secret becomes a kubeconfig of one context under `data_dir/discovered/argocd/` (0600: it holds the
credentials; named by its content, so a rotated token restarts the cluster with it), read by observe/kube/kubeconfig.py like any other; a secret that cannot be used is reported
by name and the others go on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from observe.config import ArgoCDDiscovery
from observe.discovery.management import decode_data, list_secrets, object_name
from observe.discovery.model import Found, Problem
from observe.discovery.template import build_cluster, cluster_name, credentials_file, remove_unused
from observe.errors import ObserveError

__all__ = ["LABEL", "discover_argocd", "kubeconfig_of"]

SOURCE = "argocd"
LABEL = "argocd.argoproj.io/secret-type=cluster"


async def discover_argocd(cfg: ArgoCDDiscovery, data_dir: Path) -> Found:
    found = Found(SOURCE)
    selector = ",".join(s for s in (LABEL, cfg.selector.strip()) if s)
    try:
        secrets = await list_secrets(cfg.management, cfg.namespace, selector)
    except ObserveError as exc:
        found.error = str(exc)
        return found
    directory = data_dir / "discovered" / SOURCE
    written: set[Path] = set()
    for secret in secrets:
        namespace, name, labels, annotations = object_name(secret)
        where = f"secret {namespace or cfg.namespace}/{name}"
        try:
            cluster, kubeconfig = kubeconfig_of(secret)
            path = credentials_file(directory, cluster_name(name), kubeconfig)
            written.add(path)
            k8s = {"kubeconfig": str(path), "context": cluster_name(cluster)}
            found.clusters.append(build_cluster(cluster, cfg.template, k8s, labels=labels, annotations=annotations))
        except ValueError as exc:
            found.problems.append(Problem(SOURCE, where, str(exc)))
    remove_unused(directory, written)
    return found


def kubeconfig_of(secret: dict[str, Any]) -> tuple[str, bytes]:
    """(cluster name, a one-context kubeconfig) of an Argo CD cluster secret; ValueError saying what is wrong."""
    name = decode_data(secret, "name")
    server = decode_data(secret, "server")
    raw = decode_data(secret, "config")
    if not server:
        raise ValueError("no data.server: not a usable Argo CD cluster secret")
    if not name:
        raise ValueError("no data.name")
    try:
        config = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ValueError(f"data.config is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError("data.config is not a JSON object")
    if config.get("awsAuthConfig"):
        raise ValueError(
            "config.awsAuthConfig is not supported (Argo CD's own AWS signer): give the cluster an "
            "execProviderConfig (e.g. `aws eks get-token`) or a bearerToken"
        )
    tls = config.get("tlsClientConfig") or {}
    if not isinstance(tls, dict):
        raise ValueError("config.tlsClientConfig is not an object")
    cluster: dict[str, Any] = {"server": server}
    if tls.get("caData"):
        cluster["certificate-authority-data"] = _b64(tls["caData"], "caData")
    if tls.get("insecure"):
        cluster["insecure-skip-tls-verify"] = True
    if tls.get("serverName"):
        cluster["tls-server-name"] = str(tls["serverName"])
    user: dict[str, Any] = {}
    if config.get("bearerToken"):
        user["token"] = str(config["bearerToken"])
    if tls.get("certData") or tls.get("keyData"):
        if not (tls.get("certData") and tls.get("keyData")):
            raise ValueError("config.tlsClientConfig: certData and keyData go together")
        user["client-certificate-data"] = _b64(tls["certData"], "certData")
        user["client-key-data"] = _b64(tls["keyData"], "keyData")
    exec_cfg = config.get("execProviderConfig")
    if exec_cfg:
        if not isinstance(exec_cfg, dict) or not exec_cfg.get("command"):
            raise ValueError("config.execProviderConfig needs a command")
        env = exec_cfg.get("env") or {}
        user["exec"] = {
            "apiVersion": exec_cfg.get("apiVersion") or "client.authentication.k8s.io/v1",
            "command": str(exec_cfg["command"]),
            "args": [str(a) for a in exec_cfg.get("args") or []],
            "env": [{"name": str(k), "value": str(v)} for k, v in env.items()] if isinstance(env, dict) else [],
            "interactiveMode": "Never",
        }
    if not user:
        raise ValueError("config has no bearerToken, client certificate or execProviderConfig: no way to log in")
    context = cluster_name(name)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    return name, yaml.safe_dump(doc, sort_keys=True).encode()


def _b64(value: Any, what: str) -> str:
    # Go's []byte marshals to base64 in JSON: what a kubeconfig's *-data keys hold too.
    if not isinstance(value, str):
        raise ValueError(f"config.tlsClientConfig.{what} is not a base64 string")
    return value
