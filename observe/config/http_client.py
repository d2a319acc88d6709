"""How to reach one HTTP server: URL, timeout, auth and TLS, shared by every source and sink (one model,
not a copy per protocol). Secrets are never inline: `bearer_token_file` / `bearer_token_env`,
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
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BasicAuth(ConfigModel):
    username: str
    password_file: Path | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give exactly one of password_file or password_env")
        return self

    def password(self) -> Secret:
        return Secret(path=self.password_file, env=self.password_env)


class HTTPClientConfig(ConfigModel):
    """One HTTP server and how to authenticate to it."""

    url: HttpUrl
    timeout: Duration = DEFAULT_TIMEOUT
    bearer_token_file: Path | None = None
    bearer_token_env: str | None = None
    basic_auth: BasicAuth | None = None
    tls: TLSConfig = TLSConfig()
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_auth(self) -> HTTPClientConfig:
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
