"""`clusters[].kubernetes` (and discovery's `management`): how to reach a cluster's Kubernetes API server."""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from observe.config.http_client import TLSConfig
from observe.config.types import ConfigModel, Duration, HttpUrl

__all__ = ["KubernetesConfig"]


class KubernetesConfig(ConfigModel):
    """How to reach the cluster's Kubernetes API server, whose service proxy carries every `service:` source
    (observe/kube/): a kubeconfig file and context, or `api_server` with a bearer token and TLS settings."""

    kubeconfig: Path | None = None
    """A kubeconfig file: its context's cluster (server, CA) and user (token, tokenFile, client certificate,
    exec credential plugin) are used. Read when the collector starts."""
    context: str | None = None
    """The kubeconfig context to use (default: its `current-context`)."""
    api_server: HttpUrl | None = None
    """The API server's URL, instead of a kubeconfig; a path prefix is kept (Rancher's
    `/k8s/clusters/<id>`, Karmada's `.../clusters/<name>/proxy`)."""
    bearer_token_file: Path | None = None
    """With `api_server`: a file holding the bearer token, re-read when it changes."""
    bearer_token_env: str | None = None
    """With `api_server`: an environment variable holding the bearer token."""
    tls: TLSConfig = TLSConfig()
    """With `api_server`: TLS towards the API server."""
    # 20s: the API server's own calls (endpoints) are quick; a proxied request has its source's timeout,
    # since the API server's --request-timeout does not bound proxied (long-running) requests.
    timeout: Duration = 20.0
    """Per request to the API server itself (endpoints of a `pin_pod` service), and per run of an exec
    credential plugin. A proxied request has its source's own `timeout`."""

    @model_validator(mode="after")
    def _one_way(self) -> KubernetesConfig:
        if (self.kubeconfig is None) == (self.api_server is None):
            raise ValueError("give exactly one of kubeconfig or api_server")
        if self.kubeconfig is not None:
            given = [k for k in ("bearer_token_file", "bearer_token_env") if getattr(self, k) is not None]
            given += ["tls"] if self.tls != TLSConfig() else []
            if given:
                raise ValueError(
                    f"{', '.join(given)}: with kubeconfig the credentials and TLS settings come from the "
                    "kubeconfig's context; these go with api_server"
                )
        if self.context is not None and self.kubeconfig is None:
            raise ValueError("context needs kubeconfig")
        if self.bearer_token_file is not None and self.bearer_token_env is not None:
            raise ValueError("give at most one of bearer_token_file or bearer_token_env")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        return self
