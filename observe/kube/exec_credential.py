"""Exec credential plugins: run the kubeconfig user's command, read the `ExecCredential` it prints, cache it.

Spec: https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins
(client.authentication.k8s.io/v1 and v1beta1). The plugin gets `KUBERNETES_EXEC_INFO` (an ExecCredential
whose `spec.interactive` is false: the collector has no terminal; with `provideClusterInfo`, also
`spec.cluster`) on top of our environment and the user's `env`, and prints an ExecCredential whose
`status` holds a `token` or a `clientCertificateData`/`clientKeyData` pair (PEM), and optionally an
`expirationTimestamp` (RFC 3339). The result is used until that time (without one, until a 401), and the
plugin runs again after it, or when the API server answers 401 (client-go does the same).

The plugin is the user's binary (aws, gke-gcloud-auth-plugin, kubelogin...): each run is bounded by
`kubernetes.timeout` and killed by its PID past it. Errors name the command and the first line of its
stderr; the credential itself never appears in one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from observe.errors import ConfigError

__all__ = ["API_VERSIONS", "ExecCredential", "ExecCredentialCache", "ExecPlugin"]

API_VERSIONS: Final = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
_MAX_OUTPUT: Final = 1 << 20  # an ExecCredential is a few KiB: a runaway plugin is not read further
# A credential is renewed this long before it expires, so a request never leaves with one that lapses
# on its way (client-go renews at expiry; a proxied request may take as long as its timeout, though).
_EXPIRY_MARGIN: Final = 1.0


@dataclass(frozen=True, slots=True)
class ExecPlugin:
    """The `users[].user.exec` section of a kubeconfig."""

    command: str
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    install_hint: str | None = None
    provide_cluster_info: bool = False
    cluster_info: tuple[tuple[str, Any], ...] = ()  # what `spec.cluster` says with provideClusterInfo

    @classmethod
    def from_kubeconfig(cls, node: Any, *, base: Path, server: str, where: str) -> ExecPlugin:
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: exec is not a mapping")
        command, api_version = node.get("command"), node.get("apiVersion")
        if not command:
            raise ConfigError(f"{where}: exec has no command")
        if api_version not in API_VERSIONS:
            raise ConfigError(
                f"{where}: exec apiVersion {api_version!r} is not one of {', '.join(API_VERSIONS)}"
            )
        if node.get("interactiveMode") == "Always":
            raise ConfigError(f"{where}: exec plugin {command!r} needs a terminal (interactiveMode: Always)")
        command = str(command)
        if "/" in command and not Path(command).is_absolute():
            command = str(base / command)  # client-go: relative to the kubeconfig, a bare name from $PATH
        env = node.get("env") or []
        if not isinstance(env, list) or not all(isinstance(e, dict) and "name" in e for e in env):
            raise ConfigError(f"{where}: exec env is not a list of {{name, value}}")
        return cls(
            command=command,
            api_version=str(api_version),
            args=tuple(str(a) for a in node.get("args") or ()),
            env=tuple((str(e["name"]), str(e.get("value", ""))) for e in env),
            install_hint=node.get("installHint") or None,
            provide_cluster_info=bool(node.get("provideClusterInfo", False)),
            cluster_info=(("server", server),),
        )


@dataclass(frozen=True, slots=True)
class ExecCredential:
    """What a plugin printed: a token or a client certificate, and until when it holds."""

    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    expires_at: float | None = None  # unix seconds; None: until the API server answers 401

    def __repr__(self) -> str:
        return f"ExecCredential(expires_at={self.expires_at})"


@dataclass(eq=False)
class ExecCredentialCache:
    """One plugin's current credential: run on first use, again after expiry or a 401."""

    plugin: ExecPlugin
    timeout: float
    clock: Callable[[], float] = time.time
    runs: int = 0  # how often the plugin ran (for tests and /status)
    _cached: ExecCredential | None = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)  # one run at a time; guards _cached

    async def get(self) -> ExecCredential:
        async with self._lock:
            cached = self._cached
            if cached is not None and (
                cached.expires_at is None or self.clock() < cached.expires_at - _EXPIRY_MARGIN
            ):
                return cached
            self._cached = await self._run()
            self.runs += 1
            return self._cached

    def expire(self) -> None:
        """Forget the credential (the API server refused it): the next `get` runs the plugin."""
        self._cached = None

    def current_secrets(self) -> list[str]:
        cached = self._cached
        return [cached.token] if cached is not None and cached.token else []

    # -- one run --------------------------------------------------------------------------------------
    def _what(self) -> str:
        return f"exec plugin {self.plugin.command!r}"

    async def _run(self) -> ExecCredential:
        plugin = self.plugin
        spec: dict[str, Any] = {"interactive": False}
        if plugin.provide_cluster_info:
            spec["cluster"] = dict(plugin.cluster_info)
        info = {"apiVersion": plugin.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **dict(plugin.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            proc = await asyncio.create_subprocess_exec(
                plugin.command, *plugin.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            hint = f" ({plugin.install_hint.strip()})" if plugin.install_hint else ""
            raise ConfigError(f"{self._what()}: cannot run it: {exc.strerror}{hint}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()  # our child, by its PID
            await proc.wait()
            raise ConfigError(f"{self._what()}: no answer within {self.timeout:g}s (killed)") from None
        if proc.returncode != 0:
            raise ConfigError(f"{self._what()}: exit status {proc.returncode}{_first_line(stderr)}")
        if len(stdout) > _MAX_OUTPUT:
            raise ConfigError(f"{self._what()}: printed more than {_MAX_OUTPUT} bytes, not an ExecCredential")
        return self._parse(stdout)

    def _parse(self, stdout: bytes) -> ExecCredential:
        try:
            doc = json.loads(stdout)
        except ValueError:
            raise ConfigError(f"{self._what()}: did not print JSON (an ExecCredential)") from None
        if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
            raise ConfigError(f"{self._what()}: printed no ExecCredential (kind is {_kind(doc)!r})")
        if doc.get("apiVersion") != self.plugin.api_version:
            raise ConfigError(
                f"{self._what()}: printed apiVersion {doc.get('apiVersion')!r}, the kubeconfig asks for "
                f"{self.plugin.api_version!r}"
            )
        status = doc.get("status")
        if not isinstance(status, dict):
            raise ConfigError(f"{self._what()}: the ExecCredential has no status")
        token = status.get("token") or None
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if bool(cert) != bool(key):
            raise ConfigError(f"{self._what()}: clientCertificateData and clientKeyData go together")
        if not token and not cert:
            raise ConfigError(
                f"{self._what()}: the ExecCredential status has neither token nor clientCertificateData"
            )
        expires = status.get("expirationTimestamp")
        return ExecCredential(
            token=str(token) if token else None,
            cert_pem=str(cert).encode() if cert else None,
            key_pem=str(key).encode() if key else None,
            expires_at=_rfc3339(expires, self._what()) if expires else None,
        )


def _rfc3339(value: Any, what: str) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ConfigError(f"{what}: expirationTimestamp {str(value)[:40]!r} is not RFC 3339") from None


def _first_line(stderr: bytes) -> str:
    for line in stderr.decode("utf-8", "replace").splitlines():
        if line.strip():
            return ": " + line.strip()[:300]
    return " (nothing on stderr)"


def _kind(doc: Any) -> Any:
    return doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
