"""Read one context of a kubeconfig file: its cluster (server, CA, TLS settings) and its user's credentials.

Format: https://kubernetes.io/docs/reference/config-api/kubeconfig.v1/ (`clusters`, `users`, `contexts`,
`current-context`). What is read, and how client-go reads it:

    cluster   server (a path prefix is kept: Rancher's /k8s/clusters/<id>), certificate-authority(-data),
              insecure-skip-tls-verify, tls-server-name
    user      token, tokenFile (re-read when it changes; it wins over token, as in client-go),
              client-certificate(-data) + client-key(-data), exec (an ExecCredential plugin:
              observe/kube/exec_credential.py)

Relative file paths (and an exec command with a `/` in it) are relative to the kubeconfig's directory.
Unsupported ways (`auth-provider`, `username`/`password`, `proxy-url`) are errors that say so, never
silently unauthenticated requests. Every error names the file and the context, never a secret's value.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from observe.errors import ConfigError
from observe.kube.exec_credential import ExecPlugin

__all__ = ["KubeconfigTarget", "UserCredentials", "load_kubeconfig"]


@dataclass(frozen=True, slots=True)
class UserCredentials:
    """A kubeconfig user: a token (inline or a file), a client certificate (PEM data or files), or a plugin."""

    name: str
    token: str | None = None
    token_file: Path | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    exec_plugin: ExecPlugin | None = None

    def __repr__(self) -> str:  # a token or key never reaches a log line or an error
        return f"UserCredentials({self.name!r})"

    def describe(self) -> str:
        """What kind of credentials these are, for an error message (no values)."""
        if self.exec_plugin is not None:
            return f"user {self.name!r}, exec plugin {self.exec_plugin.command!r}"
        if self.token_file is not None:
            return f"user {self.name!r}, tokenFile {self.token_file}"
        if self.token is not None:
            return f"user {self.name!r}, token"
        if self.cert_file is not None or self.cert_data is not None:
            return f"user {self.name!r}, client certificate"
        return f"user {self.name!r} (no credentials)"


@dataclass(frozen=True, slots=True)
class KubeconfigTarget:
    """One context resolved: where the API server is, how to trust it, and who we are."""

    path: Path
    context: str
    server: str
    ca_data: bytes | None
    ca_file: Path | None
    insecure_skip_verify: bool
    server_name: str | None
    user: UserCredentials

    def __repr__(self) -> str:
        return f"KubeconfigTarget({self.path}, context={self.context!r}, server={self.server!r})"


def load_kubeconfig(path: Path, context: str | None = None) -> KubeconfigTarget:
    """The `context` (default: `current-context`) of the kubeconfig at `path`; ConfigError naming the file,
    the context and the key when something is missing or unsupported."""
    where = f"kubeconfig {path}"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: not a kubeconfig (the top level is not a mapping)")
    name = context or doc.get("current-context")
    if not name:
        raise ConfigError(f"{where}: no context given and no current-context set")
    where = f"{where}, context {name!r}"
    ctx = _named(doc, "contexts", "context", str(name), where)
    base = path.parent
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not cluster_name:
        raise ConfigError(f"{where}: the context names no cluster")
    cluster = _named(doc, "clusters", "cluster", str(cluster_name), where)
    user = _named(doc, "users", "user", str(user_name), where) if user_name else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: cluster {cluster_name!r} has no http(s) server URL")
    if cluster.get("proxy-url"):
        raise ConfigError(f"{where}: cluster {cluster_name!r}: proxy-url is not supported")
    return KubeconfigTarget(
        path=path,
        context=str(name),
        server=server.rstrip("/"),
        ca_data=_data(cluster, "certificate-authority-data", where),
        ca_file=_file(cluster, "certificate-authority", base),
        insecure_skip_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        server_name=cluster.get("tls-server-name") or None,
        user=_user(str(user_name or ""), user, base, server, where),
    )


def _named(doc: dict[str, Any], section: str, key: str, name: str, where: str) -> dict[str, Any]:
    entries = doc.get(section) or []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(key) or {}
            if not isinstance(body, dict):
                raise ConfigError(f"{where}: {section} entry {name!r} has no {key} mapping")
            return body
    known = (
        sorted(str(e.get("name")) for e in entries if isinstance(e, dict))
        if isinstance(entries, list)
        else []
    )
    raise ConfigError(f"{where}: no {key} {name!r} in {section} (there: {', '.join(known) or 'none'})")


def _data(node: dict[str, Any], key: str, where: str) -> bytes | None:
    value = node.get(key)
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: {key} is not base64") from None


def _file(node: dict[str, Any], key: str, base: Path) -> Path | None:
    value = node.get(key)
    if not value:
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _user(name: str, user: dict[str, Any], base: Path, server: str, where: str) -> UserCredentials:
    where = f"{where}, user {name!r}"
    for unsupported in ("auth-provider", "username", "password"):
        if user.get(unsupported):
            raise ConfigError(
                f"{where}: {unsupported} is not supported (use a token, a client certificate or exec)"
            )
    plugin = None
    if user.get("exec"):
        if user.get("token") or user.get("tokenFile"):
            raise ConfigError(f"{where}: give exec or a token, not both")
        plugin = ExecPlugin.from_kubeconfig(user["exec"], base=base, server=server, where=where)
    cert_data, key_data = _data(user, "client-certificate-data", where), _data(user, "client-key-data", where)
    cert_file, key_file = _file(user, "client-certificate", base), _file(user, "client-key", base)
    if (cert_data is None and cert_file is None) != (key_data is None and key_file is None):
        raise ConfigError(f"{where}: a client certificate and its key go together")
    token = user.get("token")
    return UserCredentials(
        name=name,
        token=str(token) if token else None,
        token_file=_file(user, "tokenFile", base),
        cert_data=cert_data,
        key_data=key_data,
        cert_file=cert_file,
        key_file=key_file,
        exec_plugin=plugin,
    )
