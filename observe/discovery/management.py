"""Listing objects in the management cluster (Argo CD and Cluster API secrets) through its API server."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from observe.config import HTTPClientConfig, KubernetesConfig
from observe.errors import ConfigError, SourceError
from observe.http import new_session
from observe.kube.api_server import APIServer
from observe.kube.credentials import api_server_url_and_credentials

__all__ = ["decode_data", "list_secrets"]


async def list_secrets(management: KubernetesConfig, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The Secrets of `namespace` matching the label `selector`; SourceError or ConfigError naming why."""
    try:
        base, creds = api_server_url_and_credentials(management, cluster="management")
    except ConfigError as exc:
        raise ConfigError(f"discovery management cluster: {exc}") from exc
    api = APIServer("management", base, creds, timeout=management.timeout)
    query = f"?{urlencode({'labelSelector': selector})}" if selector else ""
    async with new_session(HTTPClientConfig(url=base, timeout=management.timeout)) as session:
        doc = await api.get_json(session, f"/api/v1/namespaces/{namespace}/secrets{query}")
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise SourceError(f"management cluster: secrets of {namespace!r}: not a SecretList", reason="bad_response")
    return [item for item in items if isinstance(item, dict)]


def decode_data(secret: dict[str, Any], key: str) -> str | None:
    """`data[key]` of a Secret, base64-decoded as UTF-8 text; None if absent; ValueError if malformed."""
    data = secret.get("data")
    if not isinstance(data, dict) or key not in data:
        return None
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"data.{key} is not a string")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"data.{key} is not base64 of UTF-8 text: {exc}") from None


def object_name(secret: dict[str, Any]) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """(namespace, name, labels, annotations) of an object, empty where missing."""
    meta = secret.get("metadata") if isinstance(secret.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    return str(meta.get("namespace", "")), str(meta.get("name", "")), dict(labels or {}), dict(annotations or {})
