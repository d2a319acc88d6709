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

The pull loop does not wait for the whole body: `pull_into` hands it over ~1 MiB at a time as it arrives
(observe/pipeline/metrics.py parses each piece meanwhile), so a 100k-series body (~31 MB) is never held
whole. The checks are the same and so are the errors, some only known at the end (a truncated body, one
byte that is not UTF-8): the caller then drops what it made of the pieces. The request is
observe/http.py's `request`, the one under `fetch` (auth, TLS server name, one retry after a 401, the
deadline, the size cap, its error messages), with the body read as it streams in, in batches.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

import aiohttp
from yarl import URL

from observe.config import ClusterConfig, PrometheusSourceConfig
from observe.errors import SourceError
from observe.http import Response, TransportError, capped_chunks, redact, request, safe_url
from observe.protocol.exposition import parse_text
from observe.reasons import FAIL_AUTH, FAIL_BAD_RESPONSE, FAIL_THROTTLED, FAIL_TOO_LARGE
from observe.replies import classify

if TYPE_CHECKING:  # observe.kube is imported only for a cluster that uses it
    from observe.kube.api_server import APIServer

__all__ = ["ACCEPT", "BodySink", "FederateProbe", "PrometheusFederateSource", "federate_source"]

ACCEPT = "text/plain;version=0.0.4"
"""Ask for the text format: Prometheus would otherwise be free to negotiate protobuf."""
_SNIPPET_CHARS = 200  # of an error body, in messages: enough for a proxy's one-line reason
_HTTP_TO_HTTPS = b"Client sent an HTTP request to an HTTPS server"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_PIECE_BYTES = 1 << 20  # handed over at a time: one hand-off (a thread hop) per MiB, not per read
_HEAD_BYTES = 1024  # enough of the start to tell an HTML or JSON page from the text format


class BodySink(Protocol):
    """Where `pull_into` puts a body: `feed` each piece in order; `lines` is the newlines fed so far
    (for the line number of an error found in a later piece)."""

    async def feed(self, piece: bytes) -> None: ...

    def lines(self) -> int: ...


class _Collect:
    """A sink that keeps the whole body (`pull_body`)."""

    def __init__(self) -> None:
        self.body = bytearray()

    async def feed(self, piece: bytes) -> None:
        self.body += piece

    def lines(self) -> int:
        return self.body.count(b"\n")


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

    @property
    def timeout(self) -> float:
        """Seconds a pull may take, the body included."""
        return self._cfg.timeout

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
        """The federation body as checked UTF-8 bytes (a decoded copy of a 100k-series body would be
        another ~31 MiB); raises SourceError."""
        sink = _Collect()
        await self.pull_into(sink)
        return sink.body

    async def pull_into(self, sink: BodySink) -> int:
        """Pull once, handing the body to `sink` as it arrives (pieces of ~1 MiB cut anywhere) with every
        check of `pull_body`; returns its size. Raises SourceError as `pull_body` does, possibly after
        pieces went to `sink`: a body found truncated or not UTF-8 at the end, a cut connection, a
        timeout (which counts the time `sink` takes too)."""
        try:
            return await self._request(sink)
        except TransportError as exc:
            raise SourceError(f"cluster {self.cluster!r}: {exc}", reason=exc.reason) from exc

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

    # -- the request ------------------------------------------------------------------------------
    async def _request(self, sink: BodySink) -> int:
        """`fetch`'s request (observe/http.py), reading a 2xx body into `sink` as it streams in."""
        answer = await request(
            self._session, "GET", self.url, cfg=self._cfg, read=functools.partial(self._read, sink=sink),
            headers={"Accept": ACCEPT}, params=self._params, credentials=self._credentials,
        )  # fmt: skip
        if isinstance(answer, int):
            return answer
        raise self._refusal(answer)

    async def _read(self, resp: aiohttp.ClientResponse, where: str, *, sink: BodySink) -> int | Response:
        """The body's size once it all went to `sink`, or the whole answer when not a 2xx."""
        # Prometheus writes it 4 KiB at a time: read in batches
        chunks = capped_chunks(resp, where, self._cfg.max_response_bytes, batch_reads=True)
        if not 200 <= resp.status < 300:
            return Response(resp.status, resp.headers, b"".join([c async for c in chunks]))
        return await self._stream(resp, chunks, sink)

    async def _stream(
        self, resp: aiohttp.ClientResponse, chunks: AsyncIterator[bytes], sink: BodySink
    ) -> int:
        """A 2xx body into `sink` as it arrives. Refused: a page, a JSON document or another Content-Type
        (told from the start), then, once it all came, a body cut short (its last byte not a newline) and
        one with a byte that is not UTF-8 (from that piece on nothing more goes to `sink`)."""
        head: list[bytes] = []
        size = 0
        async for chunk in chunks:
            head.append(chunk)
            size += len(chunk)
            if size >= _HEAD_BYTES:
                break
        piece = b"".join(head)
        if _not_the_text_format(Response(resp.status, resp.headers, b"").content_type, piece):
            # Read whole, as a refusal is described from its body (a page's title, a JSON error).
            raise self._refusal(
                Response(resp.status, resp.headers, piece + b"".join([c async for c in chunks]))
            )
        utf8 = _Utf8Check()
        bad: tuple[int, int] | None = None  # (byte, line) of the first byte that is not UTF-8
        total, last = 0, b""
        pending: list[bytes] = [piece] if piece else []
        buffered = len(piece)
        done = False
        while not done:
            async for chunk in chunks:
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= _PIECE_BYTES:
                    break
            else:
                done = True
            if not pending:
                continue
            piece = b"".join(pending)
            pending.clear()
            buffered = 0
            total += len(piece)
            last = piece[-1:]
            if bad is not None:
                continue  # read on: a truncated body is what to report then
            pos = utf8.check(piece)
            if pos is None:
                await sink.feed(piece)
                continue
            rel = pos - (total - len(piece))  # negative: in a character the previous piece began
            bad = (pos, sink.lines() + piece.count(b"\n", 0, max(rel, 0)) + 1)
        if total and last != b"\n":
            raise self._fail(
                f"the response is truncated: {total} bytes, the last line has no newline", FAIL_BAD_RESPONSE
            )
        if bad is not None:
            raise self._fail(
                f"the response is not valid UTF-8 (byte {bad[0]}, line {bad[1]})", FAIL_BAD_RESPONSE
            )
        return total

    # -- the answer, checked ----------------------------------------------------------------------
    def _fail(self, what: str, reason: str) -> SourceError:
        message = f"cluster {self.cluster!r}: GET {safe_url(self.url)}: {what}"
        return SourceError(redact(message, self._cfg, self._credentials), reason=reason)

    def _refusal(self, resp: Response) -> SourceError:
        """Why a whole answer that is not the text format was refused: not a 2xx, or (when `_stream` saw
        its start) a page, a JSON document or another Content-Type."""
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
            return self._fail(f"{_status(status)}: {what}", reply.reason)
        body = resp.body
        ctype = resp.content_type
        first = body[:_HEAD_BYTES].lstrip()[:1]
        if ctype in ("text/html", "application/xhtml+xml") or first == b"<":
            return self._fail(
                f"got an HTML page{_title(body)}, is the URL a Prometheus? (want the text exposition format)",
                FAIL_BAD_RESPONSE,
            )
        if ctype == "application/json" or first in (b"{", b"["):
            return self._fail(
                f"got a JSON document, not the text exposition format: {self._describe(resp)} "
                "(is the URL the Prometheus server root, without /api/v1?)",
                FAIL_BAD_RESPONSE,
            )
        return self._fail(f"unexpected Content-Type {ctype!r}, want text/plain", FAIL_BAD_RESPONSE)

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


def _not_the_text_format(ctype: str, head: bytes) -> bool:
    """What `_refusal` refuses of a 2xx body, told from its start: a page or a JSON document by their first
    character, or a Content-Type other than text/plain (HTML and JSON among them)."""
    return head[:_HEAD_BYTES].lstrip()[:1] in (b"<", b"{", b"[") or ctype not in ("", "text/plain")


class _Utf8Check:
    """Finds the first byte that is not UTF-8 in a body read in pieces, which may cut a character.

    An ASCII piece, the usual one, is one C-level scan; any other is decoded (and the text dropped).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._offset = 0  # bytes of the body before the next piece

    def check(self, piece: bytes) -> int | None:
        """The offset in the whole body of the first invalid byte up to the end of `piece`, or None."""
        held = len(self._decoder.getstate()[0])  # the start of a character the last piece cut
        if not held and piece.isascii():
            self._offset += len(piece)
            return None
        try:
            self._decoder.decode(piece)
        except UnicodeDecodeError as exc:
            return self._offset - held + exc.start  # exc.start counts from the held bytes
        self._offset += len(piece)
        return None


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _title(body: bytes | bytearray) -> str:
    m = _TITLE.search(body[:8192])
    if m is None:
        return ""
    title = " ".join(m.group(1).decode("utf-8", errors="replace").split())[:80]
    return f" ({title!r})" if title else ""
