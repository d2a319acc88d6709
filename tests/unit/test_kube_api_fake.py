"""The fake Kubernetes API server itself (tests/kube_api_fake.py): what the other tests stand on must hold."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.http_fixtures import ThreadedApp
from tests.kube_api_fake import FakeKubeAPI, Pod, Rule, Service, ServicePort, parse_selector

NS = "monitoring"
SEG = "http:prometheus-k8s:web"


def _echo(name: str) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        doc = {"backend": name, "method": request.method, "path": request.path, "query": request.rel_url.raw_query_string,
               "authorization": request.headers.get("Authorization"), "body": body.decode()}  # fmt: skip
        return web.Response(body=json.dumps(doc).encode(), content_type="application/x-streamed-protobuf",
                            charset=None, headers={"X-Backend": name})  # fmt: skip

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.fixture
def fake() -> Iterator[FakeKubeAPI]:
    backends = [ThreadedApp(_echo(n)).start() for n in ("p0", "p1")]
    api = FakeKubeAPI().start()
    api.add_service(Service(NS, "prometheus-k8s", [ServicePort("web", 9090, 9090)],
                            [Pod("p0", {9090: backends[0].url}), Pod("p1", {9090: backends[1].url}),
                             Pod("p2", {9090: backends[1].url}, ready=False)]))  # fmt: skip
    api.grant("full", "full-user", Rule(("get", "create"), "services/proxy", (SEG,), NS),
              Rule(("get", "create"), "pods/proxy", (), NS), Rule(("get",), "endpoints", (), NS),
              Rule(("list", "watch"), "secrets", (), "argocd"))  # fmt: skip
    api.grant("getonly", "get-user", Rule(("get",), "services/proxy", (SEG,), NS))
    api.grant("other", "other-user", Rule(("get", "create"), "services/proxy", ("prometheus-k8s",), NS))
    yield api
    api.stop()
    for b in backends:
        b.stop()


def call(api: FakeKubeAPI, path: str, token: str | None, *, data: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(api.url + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


PROXY = f"/api/v1/namespaces/{NS}/services/{SEG}/proxy"


def test_the_service_proxy_forwards_path_query_and_body_but_not_authorization(fake: FakeKubeAPI) -> None:
    code, headers, doc = call(fake, PROXY + "/api/v1/read?x=1&y=a%2Fb", "full", data=b"frame")
    assert code == 200
    assert headers["Content-Type"] == "application/x-streamed-protobuf"
    assert doc["path"] == "/api/v1/read" and doc["query"] == "x=1&y=a%2Fb" and doc["body"] == "frame"
    assert doc["method"] == "POST" and doc["authorization"] is None


def test_the_service_proxy_picks_a_ready_endpoint_at_random_and_the_pod_proxy_one_pod(fake: FakeKubeAPI) -> None:
    seen = {call(fake, PROXY + "/x", "full")[2]["backend"] for _ in range(40)}
    assert seen == {"p0", "p1"}  # p2 is not ready; 40 tries miss one of two with probability 2^-39
    pod = f"/api/v1/namespaces/{NS}/pods/http:p0:9090/proxy/x"
    assert {call(fake, pod, "full")[2]["backend"] for _ in range(10)} == {"p0"}


def test_rbac_is_per_verb_and_whole_segment_resource_name(fake: FakeKubeAPI) -> None:
    assert call(fake, PROXY + "/federate", "getonly")[0] == 200
    code, _, doc = call(fake, PROXY + "/api/v1/read", "getonly", data=b"x")  # POST needs create
    assert code == 403 and doc["kind"] == "Status" and doc["reason"] == "Forbidden" and doc["code"] == 403
    assert doc["message"] == (
        f'services "{SEG}" is forbidden: User "get-user" cannot create resource "services/proxy" in API group "" '
        f'in the namespace "{NS}"'
    )
    assert call(fake, PROXY + "/federate", "other")[0] == 403  # granted "prometheus-k8s", not the segment
    code, _, doc = call(fake, PROXY + "/federate", "nobody")
    assert (code, doc["reason"], doc["status"]) == (401, "Unauthorized", "Failure")
    code, _, doc = call(fake, f"/api/v1/namespaces/{NS}/services/http:nope:web/proxy/", "full")
    assert code == 403  # RBAC is decided before existence, as the API server does
    fake.grant("any", "any", Rule(("get",), "services/proxy", (), NS))
    code, _, doc = call(fake, f"/api/v1/namespaces/{NS}/services/http:nope:web/proxy/", "any")
    assert (code, doc["reason"], doc["message"]) == (404, "NotFound", 'services "nope" not found')


def test_endpoints_list_ready_and_not_ready_pods(fake: FakeKubeAPI) -> None:
    code, _, doc = call(fake, f"/api/v1/namespaces/{NS}/endpoints/prometheus-k8s", "full")
    assert code == 200 and doc["kind"] == "Endpoints"
    subset = doc["subsets"][0]
    assert [a["targetRef"]["name"] for a in subset["addresses"]] == ["p0", "p1"]
    assert [a["targetRef"]["name"] for a in subset["notReadyAddresses"]] == ["p2"]
    assert subset["ports"] == [{"name": "web", "port": 9090, "protocol": "TCP"}]


def test_a_backend_that_refuses_the_connection_is_a_503_status(fake: FakeKubeAPI) -> None:
    fake.add_service(Service(NS, "down", [ServicePort("web", 80, 80)], [Pod("d0", {80: "http://127.0.0.1:9"})]))
    fake.grant("d", "d", Rule(("get",), "services/proxy", (), NS))
    code, _, doc = call(fake, f"/api/v1/namespaces/{NS}/services/http:down:web/proxy/", "d")
    assert code == 503 and doc["reason"] == "ServiceUnavailable" and "error trying to reach service" in doc["message"]


def test_secrets_list_with_label_selector_and_resource_version(fake: FakeKubeAPI) -> None:
    label = {"argocd.argoproj.io/secret-type": "cluster"}
    rv1 = fake.put_secret("argocd", "c1", {"name": "YQ=="}, label)
    fake.put_secret("argocd", "repo", {"url": "eA=="}, {"argocd.argoproj.io/secret-type": "repository"})
    path = "/api/v1/namespaces/argocd/secrets?labelSelector=argocd.argoproj.io%2Fsecret-type%3Dcluster"
    code, _, doc = call(fake, path, "full")
    assert code == 200 and doc["kind"] == "SecretList"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["c1"]
    assert int(doc["metadata"]["resourceVersion"]) > rv1
    assert call(fake, "/api/v1/namespaces/default/secrets", "full")[0] == 403  # granted in argocd only


def _watch(api: FakeKubeAPI, query: str, *, until: int, on_open: Any = None) -> list[dict[str, Any]]:
    req = urllib.request.Request(
        api.url + "/api/v1/namespaces/argocd/secrets?watch=true&timeoutSeconds=5&" + query,
        headers={"Authorization": "Bearer full"},
    )
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(req, timeout=10) as resp:
        if on_open is not None:
            threading.Timer(0.3, on_open).start()
        for line in resp:
            events.append(json.loads(line))
            if len(events) >= until:
                break
    return events


def test_watch_from_a_resource_version_with_bookmarks_and_a_selector(fake: FakeKubeAPI) -> None:
    fake.bookmark_interval = 0.5
    label = {"argocd.argoproj.io/secret-type": "cluster"}
    rv = fake.put_secret("argocd", "c1", {"name": "YQ=="}, label)

    def changes() -> None:
        fake.put_secret("argocd", "other", {}, {"kind": "x"})  # not selected
        fake.put_secret("argocd", "c2", {"name": "Yg=="}, label)
        fake.delete_secret("argocd", "c1")

    events = _watch(fake, f"labelSelector=argocd.argoproj.io%2Fsecret-type%3Dcluster&resourceVersion={rv}"
                    "&allowWatchBookmarks=true", until=3, on_open=changes)  # fmt: skip
    kinds = [(e["type"], e["object"]["metadata"].get("name")) for e in events if e["type"] != "BOOKMARK"]
    assert kinds[:2] == [("ADDED", "c2"), ("DELETED", "c1")]
    more = _watch(fake, f"resourceVersion={rv}&allowWatchBookmarks=true&labelSelector=nomatch", until=1)
    assert more[0]["type"] == "BOOKMARK" and int(more[0]["object"]["metadata"]["resourceVersion"]) > rv


def test_watch_from_a_compacted_resource_version_is_410_gone(fake: FakeKubeAPI) -> None:
    rv = fake.put_secret("argocd", "c1", {}, {})
    fake.put_secret("argocd", "c1", {"a": "Yg=="}, {})
    fake.compact()
    events = _watch(fake, f"resourceVersion={rv}", until=1)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


def test_watch_without_a_resource_version_starts_with_what_exists(fake: FakeKubeAPI) -> None:
    fake.put_secret("argocd", "c1", {}, {"a": "1"})
    events = _watch(fake, "labelSelector=a", until=1)
    assert (events[0]["type"], events[0]["object"]["metadata"]["name"]) == ("ADDED", "c1")


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ("a=b", {"a": "b"}, True), ("a==b", {"a": "c"}, False), ("a!=b", {}, True), ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False), ("a in (x, y),b", {"a": "y", "b": "1"}, True), ("a notin (x)", {"a": "x"}, False),
        ("", {"z": "1"}, True),
    ],
)  # fmt: skip
def test_label_selectors(selector: str, labels: dict[str, str], want: bool) -> None:
    assert parse_selector(selector)(labels) is want
