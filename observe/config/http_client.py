"""How to reach one HTTP server: URL, timeout, auth and TLS, shared by every source and sink (one model,
not a copy per protocol; `HTTPClientOptions` is all of it but the URL). Secrets are never inline: `bearer_token_file` / `bearer_token_env`,
`basic_auth.password_file` / `password_env`, `tls.*_file`; see `observe/secrets.py`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from observe.config.types import ConfigModel, Duration, HttpUrl
from observe.secrets import Secret

DEFAULT_TIMEOUT = 20.0
"""Seconds; a source whose timeout is left unset gets min(this, interval), as Prometheus caps scrape_timeout."""


class TLSConfig(ConfigModel):
    """TLS towards a server. Verification is on unless `insecure_skip_verify` says otherwise."""

    ca_file: Path | None = None
    """PEM file of the CAs that sign the server's certificate (default: the system's)."""
    cert_file: Path | None = None
    """PEM client certificate, for servers that require mutual TLS; needs `key_file`."""
    key_file: Path | None = None
    """PEM private key of `cert_file`."""
    server_name: str | None = None
    """The name to verify the server's certificate against (and to send as SNI), when it differs from the
    URL's host."""
    insecure_skip_verify: bool = False
    """Do not verify the server's certificate. For tests only: anyone on the path can read and change the
    traffic."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BasicAuth(ConfigModel):
    username: str
    """The HTTP basic auth user."""
    password_file: Path | None = None
    """A file holding the password, re-read when it changes; give this or `password_env`."""
    password_env: str | None = None
    """An environment variable holding the password; give this or `password_file`."""

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file or password_env")
        return self

    def password(self) -> Secret:
        return Secret(path=self.password_file, env=self.password_env)


class HTTPClientOptions(ConfigModel):
    """How to authenticate to one HTTP server, without saying where it is: the base of `HTTPClientConfig`
    (which adds `url`) and of the cluster sources, which may be reached through a Kubernetes API server
    (`service:`) instead of a URL."""

    timeout: Duration = DEFAULT_TIMEOUT
    """Per request, connect to last byte. For a cluster source left unset it is capped at `interval`, as
    Prometheus caps `scrape_timeout`; one you set must be shorter than `interval`."""
    bearer_token_file: Path | None = None
    """A file holding a bearer token, re-read when it changes (Kubernetes rotates service account tokens)."""
    bearer_token_env: str | None = None
    """An environment variable holding a bearer token."""
    basic_auth: BasicAuth | None = None
    """HTTP basic auth instead of a bearer token."""
    tls: TLSConfig = TLSConfig()
    """TLS towards the server; verification is on by default."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra request headers."""

    @model_validator(mode="after")
    def _one_auth(self) -> HTTPClientOptions:
        if self.bearer_token_file is not None and self.bearer_token_env is not None:
            raise ValueError("give at most one of bearer_token_file or bearer_token_env")
        has_bearer = self.bearer_token_file is not None or self.bearer_token_env is not None
        if has_bearer and self.basic_auth is not None:
            raise ValueError("give either a bearer token or basic_auth, not both")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        return self

    def bearer_token(self) -> Secret | None:
        if self.bearer_token_file is None and self.bearer_token_env is None:
            return None
        return Secret(path=self.bearer_token_file, env=self.bearer_token_env)

    def has_own_auth(self) -> bool:
        """A bearer token, basic auth or any TLS setting is given (a `service:` source takes none: the API
        server's credentials are the cluster's `kubernetes:` section's, and the backend never sees them)."""
        return (
            self.bearer_token_file is not None
            or self.bearer_token_env is not None
            or self.basic_auth is not None
            or self.tls != TLSConfig()
        )


class HTTPClientConfig(HTTPClientOptions):
    """One HTTP server and how to authenticate to it."""

    url: HttpUrl
    """The server's base URL (http or https); a path prefix is kept."""
