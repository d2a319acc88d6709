"""The credentials every request to one cluster's API server carries (`observe.http.Credentials`).

Built from the cluster's `kubernetes:` section: a kubeconfig context (observe/kube/kubeconfig.py), or
`api_server` with `bearer_token_file`/`bearer_token_env` and `tls`. TLS material held as data (a
kubeconfig's `certificate-authority-data`, `client-certificate-data`, an exec plugin's
`clientCertificateData`) goes into an `ssl.SSLContext` here: a client certificate is written to a
private temporary file only for `load_cert_chain` (the `ssl` module reads certificates from files only)
and removed at once.
"""

from __future__ import annotations

import contextlib
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from observe.config import KubernetesConfig
from observe.errors import ConfigError
from observe.http import RequestAuth, build_ssl_context
from observe.kube.exec_credential import ExecCredentialCache
from observe.kube.kubeconfig import KubeconfigTarget, load_kubeconfig
from observe.secrets import Secret

__all__ = ["KubeCredentials", "api_server_url_and_credentials"]


@dataclass(eq=False)
class KubeCredentials:
    """A token (inline, a file, an env var), a client certificate, or an exec plugin; and TLS to trust."""

    origin: str  # what these are, for messages: "kubeconfig /x, context 'a', user 'u', tokenFile /t"
    token: str | None = field(default=None, repr=False)
    token_secret: Secret | None = None
    exec_cache: ExecCredentialCache | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert: tuple[bytes, bytes] | None = field(default=None, repr=False)  # (cert PEM, key PEM)
    cert_files: tuple[Path, Path] | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None
    _static_ssl: ssl.SSLContext | None = field(default=None, repr=False)
    # (cert PEM, key PEM, context) of the exec plugin's last client certificate: rebuilt when it changes
    _exec_ssl: tuple[bytes, bytes, ssl.SSLContext] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._static_ssl = self._context(self.cert)

    async def request_auth(self) -> RequestAuth:
        headers: dict[str, str] = {}
        context = self._static_ssl
        if self.exec_cache is not None:
            cred = await self.exec_cache.get()
            if cred.token:
                headers["Authorization"] = f"Bearer {cred.token}"
            if cred.cert_pem is not None and cred.key_pem is not None:
                if self._exec_ssl is None or self._exec_ssl[:2] != (cred.cert_pem, cred.key_pem):
                    self._exec_ssl = (
                        cred.cert_pem,
                        cred.key_pem,
                        self._context((cred.cert_pem, cred.key_pem)),
                    )
                context = self._exec_ssl[2]
        elif self.token_secret is not None:
            headers["Authorization"] = f"Bearer {self.token_secret.value()}"  # re-read when the file changes
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return RequestAuth(headers=headers, ssl=context, server_name=self.server_name)

    def expire(self) -> bool:
        # Only a plugin can come back with something else; a token file is re-read on every use anyway.
        if self.exec_cache is None:
            return False
        self.exec_cache.expire()
        return True

    def secrets(self) -> list[str]:
        values = [self.token] if self.token else []
        if self.token_secret is not None:
            with contextlib.suppress(ConfigError):  # unreadable: cannot leak
                values.append(self.token_secret.value())
        if self.exec_cache is not None:
            values.extend(self.exec_cache.current_secrets())
        return values + [f"Bearer {v}" for v in values]

    def describe(self) -> str:
        return self.origin

    def _context(self, cert: tuple[bytes, bytes] | None) -> ssl.SSLContext:
        where = self.origin
        try:
            if self.insecure_skip_verify:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(
                    cafile=str(self.ca_file) if self.ca_file is not None else None,
                    cadata=self.ca_data.decode("ascii", "replace") if self.ca_data else None,
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: cannot load the certificate authority: {_reason(exc)}") from exc
        try:
            if self.cert_files is not None and cert is None:
                ctx.load_cert_chain(str(self.cert_files[0]), str(self.cert_files[1]))
            elif cert is not None:
                with tempfile.TemporaryDirectory(prefix="observe-kube-") as tmp:  # mode 0700
                    pem = Path(tmp) / "client.pem"
                    pem.touch(mode=0o600)
                    pem.write_bytes(cert[0].rstrip(b"\n") + b"\n" + cert[1])
                    ctx.load_cert_chain(str(pem))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: cannot load the client certificate: {_reason(exc)}") from exc
        return ctx


def api_server_url_and_credentials(k: KubernetesConfig, *, cluster: str) -> tuple[str, KubeCredentials]:
    """The API server's base URL (a path prefix kept) and the credentials of `k`; ConfigError when the
    kubeconfig cannot be used."""
    if k.kubeconfig is not None:
        target = load_kubeconfig(k.kubeconfig, k.context)
        return target.server, _from_kubeconfig(target, k.timeout)
    assert k.api_server is not None
    token = (
        Secret(path=k.bearer_token_file, env=k.bearer_token_env)
        if k.bearer_token_file is not None or k.bearer_token_env is not None
        else None
    )
    origin = f"cluster {cluster!r} kubernetes.api_server" + (
        f" ({token.origin})" if token is not None else ""
    )
    tls = k.tls
    build_ssl_context(tls)  # the same checks and messages as every HTTP client's tls section
    return k.api_server, KubeCredentials(
        origin=origin,
        token_secret=token,
        ca_file=tls.ca_file,
        cert_files=(tls.cert_file, tls.key_file)
        if tls.cert_file is not None and tls.key_file is not None
        else None,
        insecure_skip_verify=tls.insecure_skip_verify,
        server_name=tls.server_name,
    )


def _from_kubeconfig(t: KubeconfigTarget, timeout: float) -> KubeCredentials:
    user = t.user
    cert = (
        (user.cert_data, user.key_data) if user.cert_data is not None and user.key_data is not None else None
    )
    files = (
        (user.cert_file, user.key_file) if user.cert_file is not None and user.key_file is not None else None
    )
    return KubeCredentials(
        origin=f"kubeconfig {t.path}, context {t.context!r}, {user.describe()}",
        token=user.token if user.token_file is None else None,
        token_secret=Secret(path=user.token_file) if user.token_file is not None else None,
        exec_cache=ExecCredentialCache(user.exec_plugin, timeout) if user.exec_plugin is not None else None,
        ca_data=t.ca_data,
        ca_file=t.ca_file if t.ca_data is None else None,  # client-go: the data wins
        cert=cert,
        cert_files=files,
        insecure_skip_verify=t.insecure_skip_verify,
        server_name=t.server_name,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("\n", 1)[0][:200]
