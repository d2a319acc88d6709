"""Pull one cluster's Prometheus through its federation endpoint.

API: `GET <url>/federate?match[]=<selector>&match[]=...`, https://prometheus.io/docs/prometheus/latest/federation/
The answer is the newest sample of every matching series in the text exposition format 0.0.4
(parsed by `observe.protocol.exposition`), with timestamps and with the source's external labels.

A pull either returns the whole body as text or raises `SourceError` whose `reason` is a FAIL_*
constant of observe.reasons and whose message names the cluster and says what to check:

    auth          401/403                     bad_response  HTML or JSON page, unexpected Content-Type,
    throttled     429                                       truncated body, invalid UTF-8, bad HTTP, 1xx/3xx
    http_4xx/5xx  other error status          too_large     over `max_response_bytes`, or a 413
    timeout, unreachable, tls                 (from observe.http)

(the status rows are observe/replies.py's table, shared with every source and sink).

Through a Kubernetes API server (`prometheus.service`), the URL is the service (or pod) proxy's and the
credentials are the cluster's `kubernetes:` ones (`via`); a refusal by the API server itself (a `Status`
body: RBAC, no such service, no endpoint) is explained by observe/kube/api_server.py.

Truncation matters most: the format ends every line with `\\n`, so a non-empty body whose last byte
is not `\\n` was cut short (a proxy timeout, a restart mid-body). Accepting it would make the missing
series look vanished and mark them stale at the receiver.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from observe.config import ClusterConfig, PrometheusSourceConfig
from observe.errors import SourceError
from observe.http import Response, TransportError, fetch, redact, safe_url
from observe.protocol.exposition import parse_text
from observe.reasons import FAIL_AUTH, FAIL_BAD_RESPONSE, FAIL_THROTTLED, FAIL_TOO_LARGE
from observe.replies import classify

if TYPE_CHECKING:  # observe.kube is imported only for a cluster that uses it
    from observe.kube.api_server import APIServer

__all__ = ["ACCEPT", "FederateProbe", "PrometheusFederateSource", "federate_source"]

ACCEPT = "text/plain;version=0.0.4"
"""Ask for the text format: Prometheus would otherwise be free to negotiate protobuf."""
_SNIPPET_CHARS = 200  # of an error body, in messages: enough for a proxy's one-line reason
_HTTP_TO_HTTPS = b"Client sent an HTTP request to an HTTPS server"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class FederateProbe:
    """One pull parsed whole, for `observe check` (observe/probe.py turns it into a row of its table)."""

    cluster: str
    url: str  # the federate URL, without userinfo or query
    reachable: bool  # an HTTP answer came back (whatever its status or body)
    auth_ok: bool | None  # False: 401/403; True: a 2xx; None: unknown (no answer, or another error)
    series: int  # samples parsed from the answer
    bad_lines: int  # lines that did not parse
    duration: float  # seconds, the pull and the parse
    error: str | None = None  # why the pull failed, or the first bad line: "line 4: <what is wrong>"
    reason: str | None = None  # a FAIL_* constant when the pull failed

    @property
    def ok(self) -> bool:
        return self.error is None and self.bad_lines == 0


class PrometheusFederateSource:
    """One cluster's Prometheus, pulled through /federate with the cluster's HTTP settings."""

    name = "prometheus"

    def __init__(
        self,
        cluster: str,
        cfg: PrometheusSourceConfig,
        session: aiohttp.ClientSession,
        *,
        url: str | None = None,
        via: APIServer | None = None,
    ) -> None:
        """`url` (default `cfg.url`) is the Prometheus' base URL; `via` the API server it is proxied by."""
        self.cluster = cluster
        self._cfg = cfg
        self._session = session
        self._via = via
        self._credentials = via.credentials if via is not None else None
        self.set_base_url(url or cfg.url or "")
        self._params = [("match[]", selector) for selector in cfg.match]  # one param per selector

    def set_base_url(self, url: str) -> None:
        if not url:
            raise ValueError("a Prometheus source needs a URL")
        base = URL(url)
        # A path prefix (Prometheus behind a proxy at /prometheus, the API server's proxy) is kept.
        self.url = base.with_path(base.path.rstrip("/") + "/federate")

    async def pull(self) -> str:
        """The federation body as text; raises SourceError (see the module docstring)."""
        return (await self.pull_body()).decode("utf-8")

    async def pull_body(self) -> bytearray:
        """The federation body as checked UTF-8 bytes, for the pull loop: a decoded copy of a 100k-series
        body is another ~31 MiB (as much again as the bytes) per cluster at the peak."""
        try:
            resp = await fetch(
                self._session,
                "GET",
                self.url,
                cfg=self._cfg,
                max_bytes=self._cfg.max_response_bytes,
                headers={"Accept": ACCEPT},
                params=self._params,
                credentials=self._credentials,
            )
        except TransportError as exc:
            raise SourceError(f"cluster {self.cluster!r}: {exc}", reason=exc.reason) from exc
        return self._checked(resp)

    async def probe(self) -> FederateProbe:
        """Pull once and parse it all, for `observe check`; never raises SourceError."""
        start = time.monotonic()
        shown = safe_url(self.url)
        try:
            text = await self.pull()
        except SourceError as exc:
            # A TransportError means no usable answer, except a body cut short or over the cap.
            no_answer = isinstance(exc.__cause__, TransportError)
            reachable = not no_answer or exc.reason in (FAIL_BAD_RESPONSE, FAIL_TOO_LARGE)
            return FederateProbe(
                cluster=self.cluster,
                url=shown,
                reachable=reachable,
                auth_ok=False if exc.reason == FAIL_AUTH else None,
                series=0,
                bad_lines=0,
                duration=time.monotonic() - start,
                error=str(exc),
                reason=exc.reason,
            )
        samples, errors = await asyncio.to_thread(parse_text, text)  # ~1 s of CPU for 100k series
        return FederateProbe(
            cluster=self.cluster,
            url=shown,
            reachable=True,
            auth_ok=True,
            series=len(samples),
            bad_lines=len(errors),
            duration=time.monotonic() - start,
            error=f"line {errors[0][0]}: {errors[0][1]}" if errors else None,
        )

    # -- the answer, checked ----------------------------------------------------------------------
    def _fail(self, what: str, reason: str) -> SourceError:
        message = f"cluster {self.cluster!r}: GET {safe_url(self.url)}: {what}"
        return SourceError(redact(message, self._cfg, self._credentials), reason=reason)

    def _checked(self, resp: Response) -> bytearray:
        status = resp.status
        if not 200 <= status < 300:
            reply = classify(status)  # the decision and reason are observe.replies'; the words are ours
            kube = self._via.refusal("GET", self.url, status, resp.body) if self._via is not None else None
            if kube is not None:
                what = kube
            elif reply.reason == FAIL_AUTH:
                what = f"the server refused our credentials; {self._auth_hint()}"
            elif reply.reason == FAIL_THROTTLED:
                after = resp.headers.get("Retry-After")
                what = "the server is throttling us" + (f" (Retry-After: {after[:40]})" if after else "")
            elif reply.reason == FAIL_BAD_RESPONSE:
                what = "unexpected status, want 200"  # 1xx/3xx: not a Prometheus answering
            else:
                # Go's net/http answers plain HTTP on a TLS port with this 400, before any handler runs.
                tls = _HTTP_TO_HTTPS in resp.body[:99]
                what = self._describe(resp) + (" (the server speaks TLS: use an https:// URL)" if tls else "")
            raise self._fail(f"{_status(status)}: {what}", reply.reason)
        body = resp.body
        ctype = resp.content_type
        first = body[:1024].lstrip()[:1]
        if ctype in ("text/html", "application/xhtml+xml") or first == b"<":
            raise self._fail(
                f"got an HTML page{_title(body)}, is the URL a Prometheus? (want the text exposition format)",
                FAIL_BAD_RESPONSE,
            )
        if ctype == "application/json" or first in (b"{", b"["):
            raise self._fail(
                f"got a JSON document, not the text exposition format: {self._describe(resp)} "
                "(is the URL the Prometheus server root, without /api/v1?)",
                FAIL_BAD_RESPONSE,
            )
        if ctype not in ("", "text/plain"):
            raise self._fail(f"unexpected Content-Type {ctype!r}, want text/plain", FAIL_BAD_RESPONSE)
        if body and body[-1:] != b"\n":
            raise self._fail(
                f"the response is truncated: {len(body)} bytes, the last line has no newline",
                FAIL_BAD_RESPONSE,
            )
        bad = _first_invalid_utf8(body)
        if bad is not None:
            line = body.count(b"\n", 0, bad) + 1
            raise self._fail(f"the response is not valid UTF-8 (byte {bad}, line {line})", FAIL_BAD_RESPONSE)
        return body if isinstance(body, bytearray) else bytearray(body)

    def _describe(self, resp: Response) -> str:
        """A short, secret-free account of an error body for a message."""
        body = resp.body
        if not body.strip():
            return "empty body"
        if resp.content_type == "text/html" or body[:1024].lstrip()[:1] == b"<":
            return f"an HTML page{_title(body)}"
        # Redact before cutting, so a secret straddling the cut cannot leave a prefix behind.
        text = redact(body[:4096].decode("utf-8", errors="replace"), self._cfg, self._credentials)
        text = " ".join(text.split())
        if len(text) > _SNIPPET_CHARS:
            text = text[:_SNIPPET_CHARS] + "..."
        return repr(text)

    def _auth_hint(self) -> str:
        cfg = self._cfg
        if self._via is not None:
            return f"check the cluster's kubernetes credentials ({self._via.credentials.origin})"
        if cfg.bearer_token_file is not None:
            return f"check bearer_token_file ({cfg.bearer_token_file})"
        if cfg.bearer_token_env is not None:
            return f"check bearer_token_env (${cfg.bearer_token_env})"
        if cfg.basic_auth is not None:
            origin = cfg.basic_auth.password().origin  # where the password comes from, never its value
            return f"check basic_auth (username {cfg.basic_auth.username!r} and its password, {origin})"
        return "no credentials are configured: set bearer_token_file or basic_auth"


def federate_source(cluster: ClusterConfig, session: aiohttp.ClientSession) -> PrometheusFederateSource:
    """The cluster's Prometheus for federation: at its `url`, or through its API server's service proxy
    (or, with `pin_pod`, the pod proxy to one ready pod)."""
    prom = cluster.prometheus
    assert prom is not None
    ref = prom.service_ref()
    if ref is None:
        return PrometheusFederateSource(cluster.name, prom, session)
    from observe.kube.api_server import APIServer  # only for a cluster reached through its API server

    api = APIServer.shared(cluster)
    if prom.pin_pod:
        from observe.kube.pinned import PinnedFederateSource

        return PinnedFederateSource(cluster.name, prom, session, api=api, ref=ref)
    return PrometheusFederateSource(cluster.name, prom, session, url=api.service_url(ref), via=api)


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


_UTF8_SLICE = 1 << 20


def _first_invalid_utf8(body: bytes | bytearray) -> int | None:
    """Offset of the first byte that is not UTF-8, or None; never decodes more than 1 MiB at a time.

    ASCII, the usual body, is one C-level scan (~3 ms for 31 MB). Slices end after a newline, which is
    never inside a UTF-8 sequence, so a slice boundary cannot split a character.
    """
    if body.isascii():
        return None
    view = memoryview(body)
    pos, size = 0, len(body)
    while pos < size:
        end = body.find(b"\n", pos + _UTF8_SLICE)
        end = size if end < 0 else end + 1
        try:
            str(view[pos:end], "utf-8")
        except UnicodeDecodeError as exc:
            return pos + exc.start
        pos = end
    return None


def _title(body: bytes | bytearray) -> str:
    m = _TITLE.search(body[:8192])
    if m is None:
        return ""
    title = " ".join(m.group(1).decode("utf-8", errors="replace").split())[:80]
    return f" ({title!r})" if title else ""
