"""A Kubernetes API server for tests: the parts observe uses, following the documented API, in front of real
servers. No Kubernetes API server can be installed here; this one is what the tests stand on, and its own
behaviour is tested in tests/unit/test_kube_api_fake.py.

Documented behaviour it follows:
- Proxy (https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/):
  `/api/v1/namespaces/<ns>/services/[<scheme>:]<name>[:<port>]/proxy/<path>` picks a *random* ready endpoint
  per request; `/api/v1/namespaces/<ns>/pods/[<scheme>:]<pod>[:<port>]/proxy/<path>` goes to that pod. Method,
  path and query arrive unchanged; the caller's `Authorization` is not forwarded; the reply's status,
  Content-Type and body come back as they are, streamed (a remote-read reply stays
  `application/x-streamed-protobuf`).
- Errors are `Status` objects (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/):
  401 Unauthorized, 403 Forbidden (message `services "http:prometheus-k8s:web" is forbidden: User "u" cannot
  create resource "services/proxy" in API group "" in the namespace "monitoring"`), 404 NotFound, 503 for a
  proxy without endpoints or whose backend refuses the connection.
- RBAC (https://kubernetes.io/docs/reference/access-authn-authz/rbac/): a bearer token maps to a user with
  rules (verbs, resource, resourceNames, namespace); proxy requests need `get` (GET) or `create` (POST) on
  `services/proxy` / `pods/proxy`, the resource name being the whole `<scheme>:<name>:<port>` segment.
  A client certificate's CN may name a user too (when the server speaks TLS with a client CA).
- `GET .../endpoints/<name>`, `GET .../services/<name>`.
- Secrets, list and watch (https://kubernetes.io/docs/reference/using-api/api-concepts/): `labelSelector`
  (equality, `!=`, existence, `in`, `notin`), `resourceVersion` on lists and watches, `allowWatchBookmarks`
  (BOOKMARK events), `timeoutSeconds`, and a watch from a compacted resourceVersion answered with an
  `ERROR` event holding a 410 `Expired` Status (what the API server sends once a watch has started).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from tests.e2e.http_fixtures import ThreadedApp

_HOP = frozenset(
    {"authorization", "host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-authorization", "proxy-connection", "content-length"}
)  # fmt: skip
_PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/(services|pods)/([^/]+)/proxy(/.*)?$")
_OBJECT = re.compile(r"^/api/v1/namespaces/([^/]+)/(endpoints|services|secrets)/([^/]+)$")
_SECRETS = re.compile(r"^/api/v1(?:/namespaces/([^/]+))?/secrets$")


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: `verbs` on `resource` (`services/proxy`, `endpoints`, `secrets`...), optionally only
    these `names` and only in `namespace`."""

    verbs: tuple[str, ...]
    resource: str
    names: tuple[str, ...] = ()
    namespace: str | None = None

    def allows(self, verb: str, resource: str, name: str | None, namespace: str | None) -> bool:
        if verb not in self.verbs and "*" not in self.verbs:
            return False
        if resource != self.resource:
            return False
        if self.namespace is not None and namespace != self.namespace:
            return False
        return not self.names or (name is not None and name in self.names)


@dataclass
class User:
    name: str
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Pod:
    """A pod: its name, readiness, and what listens on each container port (a real server's base URL)."""

    name: str
    ports: dict[int, str]
    ready: bool = True


@dataclass
class ServicePort:
    name: str
    port: int
    target_port: int


@dataclass
class Service:
    namespace: str
    name: str
    ports: list[ServicePort]
    pods: list[Pod]


@dataclass
class _Event:
    rv: int
    type: str
    obj: dict[str, Any]


class FakeKubeAPI:
    """The fake, served on 127.0.0.1 (plain HTTP, or TLS with `ssl_context`). Thread-safe setters."""

    def __init__(
        self, *, ssl_context: Any = None, client_cert_users: dict[str, User] | None = None, prefix: str = ""
    ) -> None:
        self.prefix = prefix.rstrip("/")  # served under a path prefix, as Rancher's /k8s/clusters/<id>
        self.tokens: dict[str, User] = {}
        self.authenticate: Callable[[str], User | None] | None = None  # overrides `tokens` when set
        self.client_cert_users = client_cert_users or {}  # certificate CN -> user (with a TLS client CA)
        self.services: dict[tuple[str, str], Service] = {}
        self.requests: list[tuple[str, str, str | None, int]] = []  # (method, path, user, status)
        self.forwarded_headers: list[dict[str, str]] = []  # what each proxied request carried to its backend
        self.bookmark_interval = 1.0
        self._lock = threading.Lock()  # guards everything above and the secrets' state below
        self._rv = 100
        self._secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self._events: list[_Event] = []
        self._compacted = 0  # watches from an rv below this get 410 Expired
        self._changed: asyncio.Condition | None = None
        self._closing = False  # stop(): open watches end
        self._watches = 0  # open watches (guarded by _lock)
        self._ssl = ssl_context
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = ThreadedApp(app)
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> FakeKubeAPI:
        if self._ssl is not None:
            self._server.url = self._server.url.replace("http://", "https://")
            self._patch_tls()
        self._server.start()
        return self

    def _patch_tls(self) -> None:
        server, ctx = self._server, self._ssl

        def main() -> None:
            asyncio.set_event_loop(server._loop)
            server._runner = web.AppRunner(server.app, access_log=None, shutdown_timeout=1.0)
            server._loop.run_until_complete(server._runner.setup())
            site = web.TCPSite(server._runner, "127.0.0.1", server.port, ssl_context=ctx)
            server._loop.run_until_complete(site.start())
            server._started.set()
            server._loop.run_forever()

        server._thread = threading.Thread(target=main, daemon=True)

    @property
    def url(self) -> str:
        """The API server's URL, its prefix included (what a kubeconfig's `server` says)."""
        return self._server.url + self.prefix

    def stop(self) -> None:
        self._closing = True
        self._notify()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # bounded: every watch wakes within 0.5s
            with self._lock:
                if self._watches == 0:
                    break
            time.sleep(0.05)
        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._server._loop).result(10)
        self._server.stop()

    # -- the cluster's state ----------------------------------------------------------------------------------
    def add_service(self, service: Service) -> None:
        with self._lock:
            self.services[(service.namespace, service.name)] = service

    def grant(self, token: str, user: str, *rules: Rule) -> None:
        with self._lock:
            self.tokens[token] = User(user, list(rules))

    def put_secret(
        self, namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None
    ) -> int:
        """Create or update a Secret (`data` values already base64); its new resourceVersion."""
        with self._lock:
            self._rv += 1
            kind = "MODIFIED" if (namespace, name) in self._secrets else "ADDED"
            obj = {
                "kind": "Secret", "apiVersion": "v1", "type": "Opaque", "data": dict(data),
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {}),
                             "resourceVersion": str(self._rv)},
            }  # fmt: skip
            self._secrets[(namespace, name)] = obj
            self._events.append(_Event(self._rv, kind, obj))
            rv = self._rv
        self._notify()
        return rv

    def delete_secret(self, namespace: str, name: str) -> int:
        with self._lock:
            obj = self._secrets.pop((namespace, name))
            self._rv += 1
            gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
            self._events.append(_Event(self._rv, "DELETED", gone))
            rv = self._rv
        self._notify()
        return rv

    def compact(self) -> int:
        """Forget the event history (etcd compaction): a watch from an older resourceVersion gets 410."""
        with self._lock:
            self._compacted = self._rv
            self._events.clear()
            return self._rv

    def _notify(self) -> None:
        loop = self._server._loop
        if self._changed is not None and loop.is_running():

            async def wake() -> None:
                assert self._changed is not None
                async with self._changed:
                    self._changed.notify_all()

            asyncio.run_coroutine_threadsafe(wake(), loop)

    # -- requests -----------------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user = self._user(request)
        path = request.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return status(404, "NotFound", "the server could not find the requested resource")
            path = path[len(self.prefix) :]
        resp = await self._route(request, user, path)
        with self._lock:
            self.requests.append((request.method, path, user.name if user else None, resp.status))
        return resp

    def _user(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer ") :]
            with self._lock:
                found = self.authenticate(token) if self.authenticate is not None else self.tokens.get(token)
            return found
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        if cert:
            cn = dict(x[0] for x in cert.get("subject", ()))["commonName"]
            return self.client_cert_users.get(cn)
        return None

    async def _route(self, request: web.Request, user: User | None, path: str) -> web.StreamResponse:
        if user is None:
            return status(401, "Unauthorized", "Unauthorized")
        verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(request.method, request.method.lower())  # fmt: skip
        if m := _PROXY.match(path):
            namespace, kind, segment, tail = m.group(1), m.group(2), m.group(3), m.group(4) or "/"
            if not self._allowed(user, verb, f"{kind}/proxy", segment, namespace):
                return forbidden(user, verb, f"{kind}/proxy", kind, segment, namespace)
            if kind == "services":
                return await self._service_proxy(request, namespace, segment, tail)
            return await self._pod_proxy(request, namespace, segment, tail)
        if m := _SECRETS.match(path):
            namespace = m.group(1)
            watch = request.query.get("watch") in ("true", "1")
            v = "watch" if watch else "list"
            if not self._allowed(user, v, "secrets", None, namespace):
                return forbidden(user, v, "secrets", "secrets", None, namespace)
            return await (self._watch(request, namespace) if watch else self._list(request, namespace))
        if m := _OBJECT.match(path):
            namespace, resource, name = m.group(1), m.group(2), m.group(3)
            if not self._allowed(user, verb, resource, name, namespace):
                return forbidden(user, verb, resource, resource, name, namespace)
            return self._get(namespace, resource, name)
        return status(404, "NotFound", "the server could not find the requested resource")

    def _allowed(self, user: User, verb: str, resource: str, name: str | None, namespace: str | None) -> bool:
        return any(r.allows(verb, resource, name, namespace) for r in user.rules)

    # -- proxy ----------------------------------------------------------------------------------------------------
    async def _service_proxy(
        self, request: web.Request, namespace: str, segment: str, tail: str
    ) -> web.StreamResponse:
        _scheme, name, port = split_segment(segment)
        with self._lock:
            svc = self.services.get((namespace, name))
        if svc is None:
            return status(404, "NotFound", f'services "{name}" not found')
        sp = _service_port(svc, port)
        if sp is None:
            return status(503, "ServiceUnavailable", f'no endpoints available for service "{segment}"')
        ready = [p for p in svc.pods if p.ready and sp.target_port in p.ports]
        if not ready:
            return status(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        pod = random.choice(ready)  # as the API server does: any ready endpoint, per request
        return await self._forward(request, pod.ports[sp.target_port], tail)

    async def _pod_proxy(
        self, request: web.Request, namespace: str, segment: str, tail: str
    ) -> web.StreamResponse:
        _scheme, name, port = split_segment(segment)
        with self._lock:
            pods = [
                p
                for s in self.services.values()
                if s.namespace == namespace
                for p in s.pods
                if p.name == name
            ]
        if not pods:
            return status(404, "NotFound", f'pods "{name}" not found')
        pod = pods[0]
        number = int(port) if port and port.isdigit() else (next(iter(pod.ports)) if pod.ports else 0)
        backend = pod.ports.get(number)
        if backend is None:
            return status(
                503, "ServiceUnavailable", f"error trying to reach service: dial tcp: pod {name} port {port}"
            )
        return await self._forward(request, backend, tail)

    async def _forward(self, request: web.Request, backend: str, tail: str) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        with self._lock:
            self.forwarded_headers.append(dict(headers))
        body = await request.read()
        # Path and query exactly as sent (still percent-encoded), not as aiohttp decoded them.
        raw = request.raw_path
        raw_tail = raw[raw.index("/proxy", raw.index("/api/v1/")) + len("/proxy") :]
        if not raw_tail.startswith("/"):
            raw_tail = "/" + raw_tail
        target = URL(backend.rstrip("/") + raw_tail, encoded=True)
        del tail  # the decoded form: routing only
        try:
            async with self._session.request(
                request.method, target, headers=headers, data=body or None
            ) as up:
                out = web.StreamResponse(status=up.status)
                for k, v in up.headers.items():
                    if k.lower() not in _HOP:
                        out.headers[k] = v
                await out.prepare(request)
                async for chunk in up.content.iter_chunked(64 * 1024):
                    await out.write(chunk)
                await out.write_eof()
                return out
        except aiohttp.ClientConnectionError as exc:
            return status(
                503, "ServiceUnavailable", f"error trying to reach service: dial tcp {backend}: {exc}"
            )

    # -- objects --------------------------------------------------------------------------------------------------
    def _get(self, namespace: str, resource: str, name: str) -> web.Response:
        with self._lock:
            if resource == "secrets":
                obj = self._secrets.get((namespace, name))
                return (
                    web.json_response(obj) if obj else status(404, "NotFound", f'secrets "{name}" not found')
                )
            svc = self.services.get((namespace, name))
        if svc is None:
            return status(404, "NotFound", f'{resource} "{name}" not found')
        if resource == "services":
            return web.json_response({
                "kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": namespace},
                "spec": {"ports": [{"name": p.name, "port": p.port, "targetPort": p.target_port, "protocol": "TCP"}
                                   for p in svc.ports]},
            })  # fmt: skip
        return web.json_response(endpoints_object(svc))

    async def _list(self, request: web.Request, namespace: str | None) -> web.Response:
        selector = parse_selector(request.query.get("labelSelector", ""))
        with self._lock:
            items = [o for (ns, _), o in sorted(self._secrets.items())
                     if (namespace is None or ns == namespace) and selector(o["metadata"]["labels"])]  # fmt: skip
            rv = self._rv
        return web.json_response(
            {
                "kind": "SecretList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, namespace: str | None) -> web.StreamResponse:
        with self._lock:
            self._watches += 1
        try:
            return await self._watch_events(request, namespace)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return web.StreamResponse()  # the client went away: nothing to answer
        finally:
            with self._lock:
                self._watches -= 1

    async def _watch_events(self, request: web.Request, namespace: str | None) -> web.StreamResponse:
        selector = parse_selector(request.query.get("labelSelector", ""))
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(request.query.get("timeoutSeconds", "30"))
        since = request.query.get("resourceVersion", "")
        if self._changed is None:
            self._changed = asyncio.Condition()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        with self._lock:
            start = int(since) if since.isdigit() and since != "0" else self._rv
            expired = start < self._compacted
        if expired:
            gone = {
                "type": "ERROR",
                "object": status_doc(
                    410, "Expired", f"too old resource version: {start} ({self._compacted})"
                ),
            }
            await resp.write(json.dumps(gone).encode() + b"\n")
            await resp.write_eof()
            return resp
        if not since or since == "0":  # no resourceVersion: synthetic ADDED for what exists, then changes
            with self._lock:
                current = [o for (ns, _), o in sorted(self._secrets.items())
                           if (namespace is None or ns == namespace) and selector(o["metadata"]["labels"])]  # fmt: skip
            for obj in current:
                await resp.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        seen = start
        next_bookmark = time.monotonic() + self.bookmark_interval
        while time.monotonic() < deadline and not self._closing:
            with self._lock:
                events = [e for e in self._events if e.rv > seen]
                latest = self._rv
            for e in events:
                seen = e.rv
                meta = e.obj["metadata"]
                if (namespace is None or meta["namespace"] == namespace) and selector(meta["labels"]):
                    await resp.write(json.dumps({"type": e.type, "object": e.obj}).encode() + b"\n")
            if bookmarks and time.monotonic() >= next_bookmark:
                mark = {
                    "kind": "Secret",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(max(seen, latest))},
                }
                await resp.write(json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n")
                next_bookmark = time.monotonic() + self.bookmark_interval
            wait = max(0.01, min(deadline, next_bookmark) - time.monotonic())
            async with self._changed:
                with contextlib.suppress(TimeoutError):  # a change, or time to look at the clock again
                    await asyncio.wait_for(self._changed.wait(), min(wait, 0.5))
        await resp.write_eof()
        return resp


# -- helpers ----------------------------------------------------------------------------------------------------


def status_doc(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


def status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_doc(code, reason, message), status=code)


def forbidden(
    user: User, verb: str, resource: str, kind: str, name: str | None, namespace: str | None
) -> web.Response:
    subject = f'{kind} "{name}"' if name else kind
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = f'{subject} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" in API group ""{where}'
    return status(403, "Forbidden", message)


def split_segment(segment: str) -> tuple[str | None, str, str | None]:
    """`[scheme:]name[:port]` -> (scheme, name, port), as the API server reads a proxy segment."""
    parts = segment.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2] or None
    if len(parts) == 2:
        if parts[0] in ("http", "https"):
            return parts[0], parts[1], None
        return None, parts[0], parts[1]
    return None, segment, None


def _service_port(svc: Service, port: str | None) -> ServicePort | None:
    if port is None:
        return svc.ports[0] if len(svc.ports) == 1 else None
    for p in svc.ports:
        if p.name == port or str(p.port) == port:
            return p
    return None


def endpoints_object(svc: Service) -> dict[str, Any]:
    """The v1 Endpoints of `svc`: ready pods in `addresses`, the others in `notReadyAddresses`."""

    def address(i: int, pod: Pod) -> dict[str, Any]:
        return {
            "ip": f"10.0.0.{i + 1}",
            "targetRef": {"kind": "Pod", "name": pod.name, "namespace": svc.namespace},
        }

    return {
        "kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": svc.name, "namespace": svc.namespace},
        "subsets": [{
            "addresses": [address(i, p) for i, p in enumerate(svc.pods) if p.ready],
            "notReadyAddresses": [address(i, p) for i, p in enumerate(svc.pods) if not p.ready],
            "ports": [{"name": sp.name, "port": sp.target_port, "protocol": "TCP"} for sp in svc.ports],
        }],
    }  # fmt: skip


_REQ = re.compile(
    r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$"
)


def parse_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """A label selector (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`) as a predicate on a label map."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for req in _split_requirements(text):
        m = _REQ.match(req)
        if m is None:
            raise ValueError(f"bad label selector requirement {req!r}")
        neg, key, op, value, setop, values = m.groups()
        if op in ("=", "=="):
            checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif op == "!=":
            checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif setop:
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            if setop == "in":
                checks.append(lambda lb, k=key, a=allowed: lb.get(k) in a)
            else:
                checks.append(lambda lb, k=key, a=allowed: lb.get(k) not in a)
        elif neg:
            checks.append(lambda lb, k=key: k not in lb)
        else:
            checks.append(lambda lb, k=key: k in lb)
    return lambda labels: all(c(labels) for c in checks)


def _split_requirements(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [r for r in out if r.strip()]
