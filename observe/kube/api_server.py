"""One cluster's Kubernetes API server as the sources use it: proxy URLs, credentials, refusals explained.

API: https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/ (the service and
pod proxy), https://kubernetes.io/docs/reference/using-api/api-concepts/ (`Status` error bodies).

    <api_server>/api/v1/namespaces/<ns>/services/<scheme>:<name>:<port>/proxy/<path>   service proxy
    <api_server>/api/v1/namespaces/<ns>/pods/<scheme>:<pod>:<port>/proxy/<path>         pod proxy (pin_pod)
    <api_server>/api/v1/namespaces/<ns>/endpoints/<name>                              the ready pods

A path prefix of `api_server` (Rancher's `/k8s/clusters/<id>`, Karmada's
`/apis/cluster.karmada.io/v1alpha1/clusters/<name>/proxy`) is kept in front of every path.

Proxied requests are long-running to the API server: its --request-timeout does not bound them, so each
keeps its source's own `timeout` and `max_response_bytes` (`observe.http.fetch`). The API server answers
a refusal with a `Status` document (`{"kind":"Status","reason":"Forbidden","message":...,"code":403}`);
`refusal()` turns one into a message that names the RBAC rule the request needs: `get` (GET) or `create`
(POST: remote-read) on `services/proxy` or `pods/proxy` for `resourceNames: [<the whole segment>]`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp
from yarl import URL

from observe.config import ClusterConfig, HTTPClientConfig, HTTPClientOptions
from observe.errors import ConfigError, SourceError
from observe.http import TransportError, body_snippet, fetch, redact, safe_url
from observe.kube.credentials import KubeCredentials, api_server_url_and_credentials
from observe.kube.service_ref import ServiceRef
from observe.reasons import FAIL_BAD_RESPONSE, FAIL_UNREACHABLE
from observe.replies import classify

__all__ = ["ENDPOINTS_TTL", "APIServer", "PinnedPods", "PodEndpoint", "ready_endpoints"]

T = TypeVar("T")
_SHARED: dict[tuple[str, object, int], APIServer] = {}  # (cluster, its kubernetes section, loop id)

_PROXY_PATH: Final = re.compile(r"/api/v1/namespaces/([^/]+)/(services|pods)/([^/]+)/proxy(/|$)")
_VERBS: Final = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "DELETE": "delete"}
_MAX_API_BYTES: Final = 8 * 2**20  # an Endpoints object of a few thousand addresses is well under 1 MiB
# Ready endpoints are looked up again after this long, or at once when every pinned pod failed.
ENDPOINTS_TTL: Final = 60.0


class APIServer:
    """One cluster's API server: where it is, how to authenticate, and what its refusals mean."""

    def __init__(self, cluster: str, base_url: str, credentials: KubeCredentials, *, timeout: float) -> None:
        self.cluster = cluster
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.timeout = timeout

    @classmethod
    def for_cluster(cls, cluster: ClusterConfig) -> APIServer:
        """From `cluster.kubernetes`; ConfigError (naming the kubeconfig and context) if it cannot be used."""
        k = cluster.kubernetes
        if k is None:
            raise ConfigError(f"cluster {cluster.name!r}: a service source needs clusters[].kubernetes")
        try:
            base, creds = api_server_url_and_credentials(k, cluster=cluster.name)
        except ConfigError as exc:
            raise ConfigError(f"cluster {cluster.name!r}: kubernetes: {exc}") from exc
        return cls(cluster.name, base, creds, timeout=k.timeout)

    @classmethod
    def shared(cls, cluster: ClusterConfig) -> APIServer:
        """`for_cluster`, one per cluster and event loop: the metrics and logs pipelines of a cluster share
        its credentials, so an exec plugin runs once per expiry, not once per pipeline."""
        assert cluster.kubernetes is not None
        try:
            loop: object = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        key = (cluster.name, cluster.kubernetes, id(loop))
        api = _SHARED.get(key)
        if api is None:
            api = _SHARED[key] = cls.for_cluster(cluster)
        return api

    def service_url(self, ref: ServiceRef) -> str:
        """The base URL of the service proxy to `ref`: a source appends its API path to it."""
        return self.base_url + ref.service_proxy_path()

    def pod_url(self, ref: ServiceRef, pod: str, port: str | None) -> str:
        return self.base_url + ref.pod_proxy_path(pod, port)

    # -- the API server's own answers ---------------------------------------------------------------------
    def refusal(self, method: str, url: str | URL, status: int, body: bytes | bytearray) -> str | None:
        """A message for an error the API server itself gave (a `Status` body), naming what to grant or
        fix; None when the body is not a Status (the backend answered: the source explains that)."""
        doc = _status_doc(body)
        if doc is None:
            return None
        message = redact(
            str(doc.get("message") or doc.get("reason") or "no message"), _NO_AUTH, self.credentials
        )
        path = URL(url).path if isinstance(url, str) else url.path
        if status == 401:
            return f"the API server did not accept our credentials: {message} ({self.credentials.origin})"
        m = _PROXY_PATH.search(path)
        if m is None:
            return f"the API server refused: {message} ({self.credentials.origin})"
        namespace, kind, segment = m.group(1), m.group(2), m.group(3)
        verb = _VERBS.get(method.upper(), method.lower())
        if status == 403:
            return (
                f"the API server refused: {message} (the credentials need RBAC `{verb}` on `{kind}/proxy` with "
                f"resourceNames [{segment!r}] in namespace {namespace!r}: the resource name is the whole "
                f"segment; {self.credentials.origin})"
            )
        if status == 404:
            return (
                f"the API server has no such {kind[:-1]}: {message} (check the service's namespace/name:port)"
            )
        if status in (502, 503):
            return f"the API server could not reach the backend: {message}"
        return f"the API server answered {status}: {message}"

    async def get_json(self, session: aiohttp.ClientSession, path: str) -> Any:
        """GET an API object (`/api/v1/...`) within `kubernetes.timeout`; SourceError on any failure."""
        url = self.base_url + path
        cfg = HTTPClientConfig(url=url, timeout=self.timeout)
        try:
            resp = await fetch(
                session, "GET", url, cfg=cfg, max_bytes=_MAX_API_BYTES,
                headers={"Accept": "application/json"}, credentials=self.credentials,
            )  # fmt: skip
        except TransportError as exc:
            raise SourceError(f"cluster {self.cluster!r}: {exc}", reason=exc.reason) from exc
        if resp.status != 200:
            why = self.refusal("GET", url, resp.status, resp.body) or repr(body_snippet(resp.body, 200))
            raise SourceError(
                f"cluster {self.cluster!r}: GET {safe_url(url)}: HTTP {resp.status}: {why}",
                reason=classify(resp.status).reason,
            )
        try:
            return json.loads(resp.body)
        except ValueError:
            raise SourceError(
                f"cluster {self.cluster!r}: GET {safe_url(url)}: not JSON", reason=FAIL_BAD_RESPONSE
            ) from None


_NO_AUTH: Final = HTTPClientOptions()


def _status_doc(body: bytes | bytearray) -> dict[str, Any] | None:
    if bytes(body[:1024]).lstrip()[:1] != b"{":
        return None
    try:
        doc = json.loads(body[: 64 * 1024])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "Status" else None


# -- pin_pod ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class PodEndpoint:
    """A ready endpoint of a Service: the pod's name and the port number behind the service's port."""

    pod: str
    port: int


@dataclass(eq=False)
class PinnedPods:
    """The ready pods behind one Service, in name order, and the one requests are pinned to.

    The service proxy picks an endpoint per request, so an HA pair's two replicas alternate and the
    centre sees both (or, with `replica_label` dropped, two histories interleaved). Pinned, every request
    goes to one pod (the first ready one by name, a stable choice) through the pod proxy and stays there
    while it answers; when it fails, the next ready pod is tried at once, and that one is kept.
    """

    api: APIServer
    ref: ServiceRef
    session: aiohttp.ClientSession
    clock: Callable[[], float] = time.monotonic
    current: PodEndpoint | None = None
    _pods: list[PodEndpoint] = field(default_factory=list)
    _fetched_at: float | None = None
    _service_port_name: str | None = None  # the service port's name, once looked up (a numeric port)

    def base_url(self, ep: PodEndpoint) -> str:
        return self.api.pod_url(self.ref, ep.pod, str(ep.port))

    async def attempt(
        self, op: Callable[[str], Awaitable[T]], *, passthrough: tuple[type[Exception], ...] = ()
    ) -> T:
        """`op(base_url)` on the pinned pod, then on each other ready pod in order until one succeeds; the
        one that did is kept. `passthrough` errors (the source's own verdicts) are raised at once."""
        pods = await self._ready()
        order = sorted(pods, key=lambda ep: (ep != self.current, ep))
        errors: list[SourceError] = []
        for ep in order:
            try:
                result = await op(self.base_url(ep))
            except passthrough:
                raise
            except SourceError as exc:
                errors.append(exc)
                continue
            self.current = ep
            return result
        self._fetched_at = None  # look again next time: the pods may have moved
        if len(errors) == 1:
            raise errors[0]
        raise SourceError(
            f"cluster {self.api.cluster!r}: every ready pod of service {self.ref} failed: "
            + "; ".join(str(e) for e in errors),
            reason=errors[-1].reason,
        )

    async def _ready(self) -> list[PodEndpoint]:
        now = self.clock()
        if self._fetched_at is None or now - self._fetched_at > ENDPOINTS_TTL or not self._pods:
            self._pods = await self._lookup()
            self._fetched_at = now
        if not self._pods:
            raise SourceError(
                f"cluster {self.api.cluster!r}: service {self.ref} has no ready endpoints",
                reason=FAIL_UNREACHABLE,
            )
        return self._pods

    async def _lookup(self) -> list[PodEndpoint]:
        ns, name = self.ref.namespace, self.ref.name
        port_name = await self._port_name()
        doc = await self.api.get_json(self.session, f"/api/v1/namespaces/{ns}/endpoints/{name}")
        try:
            return ready_endpoints(doc, port_name)
        except ValueError as exc:
            raise SourceError(
                f"cluster {self.api.cluster!r}: endpoints of {self.ref}: {exc}", reason=FAIL_BAD_RESPONSE
            ) from exc

    async def _port_name(self) -> str | None:
        """The Endpoints port to use: named as the service's port. A numeric `port` is the Service's port
        number, not the pod's, so the Service is read once to learn that port's name."""
        port = self.ref.port
        if port is None or not port.isdigit():
            return port
        if self._service_port_name is None:
            svc = await self.api.get_json(
                self.session, f"/api/v1/namespaces/{self.ref.namespace}/services/{self.ref.name}"
            )
            ports = (svc.get("spec") or {}).get("ports") or [] if isinstance(svc, dict) else []
            for p in ports:
                if isinstance(p, dict) and str(p.get("port")) == port:
                    self._service_port_name = str(p.get("name") or "")
                    break
            else:
                raise SourceError(
                    f"cluster {self.api.cluster!r}: service {self.ref} has no port {port}",
                    reason=FAIL_BAD_RESPONSE,
                )
        return self._service_port_name


def ready_endpoints(doc: Any, port_name: str | None) -> list[PodEndpoint]:
    """The ready pod endpoints of a v1 Endpoints object for the port named `port_name` (None: the only
    port), sorted by pod name. Addresses without a Pod targetRef cannot go through the pod proxy."""
    if not isinstance(doc, dict) or doc.get("kind", "Endpoints") != "Endpoints":
        raise ValueError("not an Endpoints object")
    out: set[PodEndpoint] = set()
    for subset in doc.get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if isinstance(p, dict)]
        if port_name is None:
            if len(ports) != 1:
                raise ValueError(f"the service has {len(ports)} ports: name one (namespace/name:port)")
            chosen = ports[0]
        else:
            found = [p for p in ports if (p.get("name") or "") == port_name]
            if not found:
                continue
            chosen = found[0]
        for address in subset.get("addresses") or []:  # notReadyAddresses are not ready: not used
            ref = address.get("targetRef") or {}
            if ref.get("kind") == "Pod" and ref.get("name"):
                out.add(PodEndpoint(str(ref["name"]), int(chosen["port"])))
    return sorted(out)
