"""A Service named in the config (`monitoring/prometheus-k8s:web`) and the API server proxy paths to it.

Kubernetes API reference, "proxy" subresources:
https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/#manually-constructing-apiserver-proxy-urls

    /api/v1/namespaces/<ns>/services/[<scheme>:]<name>[:<port>]/proxy/<path>
    /api/v1/namespaces/<ns>/pods/[<scheme>:]<name>[:<port>]/proxy/<path>

RBAC checks the whole `[<scheme>:]<name>[:<port>]` segment as the resource name: a request to
`services/http:prometheus-k8s:web/proxy/...` needs `resourceNames: ["http:prometheus-k8s:web"]` on
`services/proxy` (`prometheus-k8s` alone gets 403). So observe always writes the segment in one canonical
form (scheme and port spelled out when given) and the RBAC generator names exactly that segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["ServiceRef"]

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label: namespaces, services
_PORT: Final = re.compile(r"^([a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?|[0-9]{1,5})$")  # a port name (IANA_SVC_NAME) or number

Scheme = Literal["http", "https"]


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """`namespace/name[:port]`, reached with `scheme` (the backend's, not the API server's)."""

    namespace: str
    name: str
    port: str | None = None
    scheme: Scheme = "http"

    @classmethod
    def parse(cls, text: str, *, scheme: Scheme = "http") -> ServiceRef:
        """`monitoring/prometheus-k8s:web` or `monitoring/prometheus-k8s:9090` or `monitoring/prometheus-k8s`;
        a ValueError saying what is wrong otherwise."""
        namespace, sep, rest = text.partition("/")
        if not sep or not namespace or not rest:
            raise ValueError(f"a service is 'namespace/name[:port]', got {text!r}")
        name, _, port = rest.partition(":")
        if not _DNS_LABEL.match(namespace):
            raise ValueError(f"{text!r}: namespace {namespace!r} is not a DNS label (lower case, digits, '-')")
        if not _DNS_LABEL.match(name):
            raise ValueError(f"{text!r}: service name {name!r} is not a DNS label (lower case, digits, '-')")
        if port and not _PORT.match(port):
            raise ValueError(f"{text!r}: port {port!r} is neither a port name nor a number")
        if port.isdigit() and not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: port {port} is out of range")
        return cls(namespace, name, port or None, scheme)

    def segment(self, name: str | None = None) -> str:
        """The proxy path segment, and the RBAC resource name: `http:prometheus-k8s:web`. `name` replaces the
        service's (a pod's name, for the pod proxy)."""
        return f"{self.scheme}:{name or self.name}" + (f":{self.port}" if self.port else "")

    def service_proxy_path(self) -> str:
        """`/api/v1/namespaces/<ns>/services/<segment>/proxy` (no trailing slash: the API path follows)."""
        return f"/api/v1/namespaces/{self.namespace}/services/{self.segment()}/proxy"

    def pod_proxy_path(self, pod: str, port: str | None = None) -> str:
        """The pod proxy path to `pod` (a ready endpoint of the service), on `port` (the pod's port number
        or name behind the service's port)."""
        segment = f"{self.scheme}:{pod}" + (f":{port}" if port else "")
        return f"/api/v1/namespaces/{self.namespace}/pods/{segment}/proxy"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" + (f":{self.port}" if self.port else "")
