"""PrometheusFederateSource against an in-test fake of Prometheus' /federate (aiohttp on 127.0.0.1),
answering each bad case a real cluster can produce; the real Prometheus is in tests/integration."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from observe.config import BasicAuth, PrometheusSourceConfig
from observe.errors import SourceError
from observe.http import new_session
from observe.probe import federate_row
from observe.protocol.exposition import parse_text
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_HTTP_4XX,
    FAIL_HTTP_5XX,
    FAIL_THROTTLED,
    FAIL_TIMEOUT,
    FAIL_TOO_LARGE,
    FAIL_UNREACHABLE,
)
from observe.sources.prometheus_federate import ACCEPT, PrometheusFederateSource
from tests.fakes import raw_http_server

BODY = (
    "# TYPE up untyped\n"
    'up{cluster="src-a",instance="10.0.0.1:9100",job="node"} 1 1700000000000\n'
    'node_load1{cluster="src-a",instance="10.0.0.1:9100",job="node"} 0.25 1700000000000\n'
)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
TOKEN = "tok-0123456789abcdef"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakePrometheus:
    """Serves `handler` at `<prefix>/federate` and records every request it got."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.handler: Handler = self._ok
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _ok(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=BODY.encode(), headers={"Content-Type": TEXT_FORMAT})

    async def start(self, prefix: str = "") -> str:
        async def dispatch(request: web.Request) -> web.StreamResponse:
            self.requests.append(request)
            return await self.handler(request)

        app = web.Application()
        app.router.add_get(f"{prefix}/federate", dispatch)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}{prefix}"
        return self.url


@pytest.fixture
async def prom() -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus()
    await fake.start()
    yield fake
    assert fake.runner is not None
    await fake.runner.cleanup()


async def _pull(url: str, **kw: Any) -> str:
    cfg = PrometheusSourceConfig(url=url, **kw)
    async with new_session(cfg) as session:
        return await PrometheusFederateSource("prod-eu-1", cfg, session).pull()


async def _pull_error(url: str, **kw: Any) -> SourceError:
    with pytest.raises(SourceError) as info:
        await _pull(url, **kw)
    assert str(info.value).startswith("cluster 'prod-eu-1': GET "), "every message names the cluster"
    return info.value


def _answer(**response: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(**response)

    return handler


# -- the happy path ---------------------------------------------------------------------------------


async def test_pull_returns_the_body_and_sends_accept_and_selectors(prom: FakePrometheus) -> None:
    selectors = ['{__name__=~"node_.+"}', 'up{job="a b",x!="&=?#%+"}']
    text = await _pull(prom.url, match=selectors)
    assert text == BODY
    req = prom.requests[0]
    assert req.query.getall("match[]") == selectors  # one param per selector, `+` and `&` intact
    assert req.headers["Accept"] == ACCEPT
    assert "gzip" in req.headers["Accept-Encoding"]
    assert "Authorization" not in req.headers
    assert parse_text(text)[1] == []


async def test_default_selector_matches_every_series(prom: FakePrometheus) -> None:
    await _pull(prom.url)
    assert prom.requests[0].query.getall("match[]") == ['{__name__=~".+"}']


async def test_path_prefixed_url() -> None:
    fake = FakePrometheus()
    url = await fake.start(prefix="/prometheus")
    try:
        assert await _pull(url) == BODY
        assert await _pull(url + "/") == BODY
        assert fake.requests[0].path == "/prometheus/federate"
    finally:
        assert fake.runner is not None
        await fake.runner.cleanup()


async def test_gzip_encoded_body_is_decompressed(prom: FakePrometheus) -> None:
    async def gzipped(request: web.Request) -> web.StreamResponse:
        assert "gzip" in request.headers.get("Accept-Encoding", "")
        headers = {"Content-Type": TEXT_FORMAT, "Content-Encoding": "gzip"}
        return web.Response(body=gzip.compress(BODY.encode()), headers=headers)

    prom.handler = gzipped
    assert await _pull(prom.url) == BODY


async def test_empty_body_is_an_empty_pull(prom: FakePrometheus) -> None:
    prom.handler = _answer(body=b"", headers={"Content-Type": TEXT_FORMAT})
    assert await _pull(prom.url) == ""


# -- auth -------------------------------------------------------------------------------------------


async def test_bearer_token_file_rotated_between_pulls(prom: FakePrometheus, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    cfg = PrometheusSourceConfig(url=prom.url, bearer_token_file=token)
    async with new_session(cfg) as session:
        source = PrometheusFederateSource("prod-eu-1", cfg, session)
        await source.pull()
        token.write_text("second-token-after-rotation\n")  # a projected token, rotated by the kubelet
        await source.pull()
    assert [r.headers["Authorization"] for r in prom.requests] == [
        "Bearer first-token",
        "Bearer second-token-after-rotation",
    ]


async def test_basic_auth(prom: FakePrometheus, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("hunter2")

    async def check(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Basic YWxpY2U6aHVudGVyMg==":  # alice:hunter2
            return web.Response(status=401, text="Unauthorized")
        return web.Response(body=BODY.encode(), headers={"Content-Type": TEXT_FORMAT})

    prom.handler = check
    assert await _pull(prom.url, basic_auth=BasicAuth(username="alice", password_file=password)) == BODY
    password.write_text("wrong")
    err = await _pull_error(prom.url, basic_auth=BasicAuth(username="alice", password_file=password))
    assert err.reason == FAIL_AUTH
    assert f"check basic_auth (username 'alice' and its password, file {password})" in str(err)
    assert "wrong" not in str(err)


@pytest.mark.parametrize("status", [401, 403])
async def test_unauthorized(prom: FakePrometheus, tmp_path: Path, status: int) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    prom.handler = _answer(status=status, text=f"bad token {TOKEN}")
    err = await _pull_error(prom.url, bearer_token_file=token)
    assert err.reason == FAIL_AUTH
    assert f"{status} " in str(err)
    assert f"check bearer_token_file ({token})" in str(err)
    assert TOKEN not in str(err)


async def test_unauthorized_without_credentials_says_so(prom: FakePrometheus) -> None:
    prom.handler = _answer(status=401)
    err = await _pull_error(prom.url)
    assert "no credentials are configured: set bearer_token_file or basic_auth" in str(err)


# -- bad answers ------------------------------------------------------------------------------------


async def test_html_page(prom: FakePrometheus) -> None:
    page = "<!doctype html><html><head><title>Sign in - Corp SSO</title></head><body>...</body></html>\n"
    prom.handler = _answer(text=page, content_type="text/html")
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_BAD_RESPONSE
    assert "got an HTML page ('Sign in - Corp SSO'), is the URL a Prometheus?" in str(err)


async def test_html_body_under_a_text_content_type(prom: FakePrometheus) -> None:
    prom.handler = _answer(text="\n  <html><body>hello</body></html>\n", content_type="text/plain")
    err = await _pull_error(prom.url)
    assert (err.reason, "got an HTML page" in str(err)) == (FAIL_BAD_RESPONSE, True)


async def test_500_with_an_html_page(prom: FakePrometheus) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
    prom.handler = _answer(status=500, text=page, content_type="text/html")
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_HTTP_5XX
    assert str(err).endswith("500 Internal Server Error: an HTML page ('502 Bad Gateway')")


async def test_503_body_is_cut_to_200_chars_and_redacted(prom: FakePrometheus, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    body = f"overloaded; your request had Authorization: Bearer {TOKEN}\n" + "x" * 1000
    prom.handler = _answer(status=503, text=body)
    err = await _pull_error(prom.url, bearer_token_file=token)
    assert err.reason == FAIL_HTTP_5XX
    assert "503 Service Unavailable: 'overloaded; your request had Authorization: <redacted> xxx" in str(err)
    assert TOKEN not in str(err)
    assert str(err).endswith("...'")
    snippet = str(err).split("Unavailable: ", 1)[1]
    assert len(snippet) <= 200 + len("''...")


async def test_404(prom: FakePrometheus) -> None:
    prom.handler = _answer(status=404, text="404 page not found\n")
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_HTTP_4XX
    assert str(err).endswith("404 Not Found: '404 page not found'")


async def test_plain_http_to_a_tls_port_says_use_https(prom: FakePrometheus) -> None:
    # Go's net/http (so Prometheus with a web config) answers a plain request on its TLS port so.
    prom.handler = _answer(status=400, text="Client sent an HTTP request to an HTTPS server.\n")
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_HTTP_4XX
    assert str(err).endswith("(the server speaks TLS: use an https:// URL)")


async def test_429_is_throttled(prom: FakePrometheus) -> None:
    prom.handler = _answer(status=429, text="slow down", headers={"Retry-After": "30"})
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_THROTTLED
    assert "429 Too Many Requests: the server is throttling us (Retry-After: 30)" in str(err)


async def test_json_document(prom: FakePrometheus) -> None:
    prom.handler = _answer(text='{"status":"error","errorType":"bad_data","error":"parse error"}\n',
                           content_type="application/json")  # fmt: skip
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_BAD_RESPONSE
    assert "got a JSON document, not the text exposition format" in str(err)
    assert "bad_data" in str(err)


async def test_unexpected_content_type(prom: FakePrometheus) -> None:
    prom.handler = _answer(body=b"\x08\x01", content_type="application/vnd.google.protobuf")
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_BAD_RESPONSE
    assert "unexpected Content-Type 'application/vnd.google.protobuf', want text/plain" in str(err)


async def test_invalid_utf8(prom: FakePrometheus) -> None:
    prom.handler = _answer(body=b'up{a="ok"} 1\nup{a="\xff\xfe"} 1\n', headers={"Content-Type": TEXT_FORMAT})
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_BAD_RESPONSE
    assert "not valid UTF-8 (byte 19, line 2)" in str(err)


async def test_body_over_the_cap_with_content_length(prom: FakePrometheus) -> None:
    prom.handler = _answer(body=b"up 1\n" * 1000, headers={"Content-Type": TEXT_FORMAT})
    err = await _pull_error(prom.url, max_response_bytes="4KiB")
    assert err.reason == FAIL_TOO_LARGE
    assert "Content-Length 5000 is over the 4KiB limit" in str(err)


async def test_body_over_the_cap_without_content_length(prom: FakePrometheus) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": TEXT_FORMAT})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(100):
            await resp.write(f"series_{i} 1\n".encode() * 20)
        await resp.write_eof()
        return resp

    prom.handler = chunked
    err = await _pull_error(prom.url, max_response_bytes=4096)
    assert err.reason == FAIL_TOO_LARGE
    assert "passed the 4KiB limit" in str(err)


async def test_truncated_chunked_body_without_final_newline(prom: FakePrometheus) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": TEXT_FORMAT})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'up{job="a"} 1 1700000000000\nnode_load1{job="a"} 0.2')  # cut mid-line
        await resp.write_eof()
        return resp

    prom.handler = cut
    err = await _pull_error(prom.url)
    assert err.reason == FAIL_BAD_RESPONSE
    assert "the response is truncated: 51 bytes, the last line has no newline" in str(err)


async def test_truncated_body_shorter_than_content_length() -> None:
    server, url = await raw_http_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 1000\r\n\r\nup 1\nup"
    )
    try:
        err = await _pull_error(url)
        assert err.reason == FAIL_BAD_RESPONSE
        assert "the response body was cut short or malformed" in str(err)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out() -> None:
    server, url = await raw_http_server(None)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        err = await _pull_error(url, timeout="500ms")
        assert loop.time() - start < 3
        assert err.reason == FAIL_TIMEOUT
        assert "no complete answer within the timeout of 500ms" in str(err)
    finally:
        server.close()
        await server.wait_closed()


async def test_unreachable() -> None:
    server, url = await raw_http_server(b"")
    server.close()
    await server.wait_closed()
    err = await _pull_error(url)
    assert err.reason == FAIL_UNREACHABLE
    assert "cannot connect to 127.0.0.1:" in str(err)
    assert isinstance(err.__cause__, Exception)


# -- probe ------------------------------------------------------------------------------------------


async def test_probe_counts_series(prom: FakePrometheus) -> None:
    cfg = PrometheusSourceConfig(url=prom.url)
    async with new_session(cfg) as session:
        result = await PrometheusFederateSource("prod-eu-1", cfg, session).probe()
    assert (result.ok, result.reachable, result.auth_ok) == (True, True, True)
    assert (result.series, result.bad_lines) == (2, 0)
    assert result.url == f"{prom.url}/federate"
    assert result.error is None
    assert result.duration > 0


async def test_probe_reports_bad_lines(prom: FakePrometheus) -> None:
    prom.handler = _answer(body=BODY.encode() + b"broken{ 1\n", headers={"Content-Type": TEXT_FORMAT})
    cfg = PrometheusSourceConfig(url=prom.url)
    async with new_session(cfg) as session:
        result = await PrometheusFederateSource("prod-eu-1", cfg, session).probe()
    assert (result.ok, result.series, result.bad_lines) == (False, 2, 1)
    assert result.error is not None and result.error.startswith("line 4: ")


async def test_probe_refused_credentials(prom: FakePrometheus) -> None:
    prom.handler = _answer(status=403)
    cfg = PrometheusSourceConfig(url=prom.url)
    async with new_session(cfg) as session:
        result = await PrometheusFederateSource("prod-eu-1", cfg, session).probe()
    assert (result.ok, result.reachable, result.auth_ok, result.reason) == (False, True, False, FAIL_AUTH)


async def test_probe_unreachable() -> None:
    server, url = await raw_http_server(b"")
    server.close()
    await server.wait_closed()
    cfg = PrometheusSourceConfig(url=url)
    async with new_session(cfg) as session:
        result = await PrometheusFederateSource("prod-eu-1", cfg, session).probe()
    assert (result.ok, result.reachable, result.auth_ok) == (False, False, None)
    assert result.reason == FAIL_UNREACHABLE


async def test_the_check_row_of_a_probe_says_how_many_bad_lines_and_fails(prom: FakePrometheus) -> None:
    cfg = PrometheusSourceConfig(url=prom.url)
    async with new_session(cfg) as session:
        source = PrometheusFederateSource("prod-eu-1", cfg, session)
        good = federate_row("prod-eu-1", await source.probe())
        prom.handler = _answer(body=BODY.encode() + b"broken{ 1\n", headers={"Content-Type": TEXT_FORMAT})
        bad = federate_row("prod-eu-1", await source.probe())
        prom.handler = _answer(status=403)
        refused = federate_row("prod-eu-1", await source.probe())
    assert (good.ok, good.detail, good.url) == (True, "2 series match", f"{prom.url}/federate")
    assert not bad.ok and bad.detail.startswith("2 series match, 1 bad line (first: line 4: ")
    assert not refused.ok and "403 Forbidden: the server refused our credentials" in refused.detail


# -- a body read as it arrives ----------------------------------------------------------------------


class Pieces:
    """A sink that records the pieces it is fed."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def feed(self, piece: bytes) -> None:
        self.pieces.append(piece)

    def lines(self) -> int:
        return sum(piece.count(b"\n") for piece in self.pieces)


async def _pull_into(url: str, sink: Pieces, **kw: Any) -> int:
    cfg = PrometheusSourceConfig(url=url, **kw)
    async with new_session(cfg) as session:
        return await PrometheusFederateSource("prod-eu-1", cfg, session).pull_into(sink)


def _big_body(lines: int) -> bytes:
    return b"".join(
        b'm{i="%d",s="\xc3\xa9t\xc3\xa9"} 1 1700000000000\n' % i for i in range(lines)
    )  # é: 2 bytes


async def test_a_big_body_arrives_in_pieces_that_make_it_whole(prom: FakePrometheus) -> None:
    body = _big_body(100_000)  # ~4.5 MiB, non-ASCII: the UTF-8 check meets characters cut by a piece
    prom.handler = _answer(body=body, headers={"Content-Type": TEXT_FORMAT})
    sink = Pieces()
    assert await _pull_into(prom.url, sink) == len(body)
    assert b"".join(sink.pieces) == body
    assert len(sink.pieces) > 3 and all(len(p) <= 2 << 20 for p in sink.pieces)


async def test_a_byte_that_is_not_utf8_far_into_the_body_is_found_and_nothing_after_it_is_fed(
    prom: FakePrometheus,
) -> None:
    body = bytearray(_big_body(60_000))
    bad = len(body) - 100
    body[bad] = 0xFF
    prom.handler = _answer(body=bytes(body), headers={"Content-Type": TEXT_FORMAT})
    sink = Pieces()
    with pytest.raises(SourceError) as info:
        await _pull_into(prom.url, sink)
    line = body.count(b"\n", 0, bad) + 1
    assert info.value.reason == FAIL_BAD_RESPONSE
    assert f"not valid UTF-8 (byte {bad}, line {line})" in str(info.value)
    assert sum(map(len, sink.pieces)) < bad  # the bad piece and what follows were not handed over
    assert str(info.value) == str(await _pull_error(prom.url))  # pulled whole: the same words


async def test_a_body_cut_short_is_refused_after_its_pieces_were_fed(prom: FakePrometheus) -> None:
    body = _big_body(60_000)[:-7]

    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": TEXT_FORMAT})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    prom.handler = cut
    sink = Pieces()
    with pytest.raises(SourceError) as info:
        await _pull_into(prom.url, sink)
    assert f"the response is truncated: {len(body)} bytes" in str(info.value)
    assert sink.pieces  # the caller had been fed, and must drop what it made of them


async def test_a_page_is_refused_before_any_piece_is_fed(prom: FakePrometheus) -> None:
    page = b"<html><head><title>Proxy</title></head><body>" + b"x" * 3_000_000 + b"</body></html>\n"
    prom.handler = _answer(body=page, headers={"Content-Type": "text/plain"})
    sink = Pieces()
    with pytest.raises(SourceError) as info:
        await _pull_into(prom.url, sink)
    assert "got an HTML page ('Proxy')" in str(info.value) and sink.pieces == []


def test_the_utf8_check_takes_a_character_cut_between_pieces_and_places_a_bad_byte_in_the_body() -> None:
    from observe.sources.prometheus_federate import _Utf8Check

    check = _Utf8Check()
    assert [check.check(p) for p in (b"ab\n", b"t\xc3", b"\xa9\n", b"\xe2\x82", b"\xac\n")] == [None] * 5
    check = _Utf8Check()
    assert check.check(b"abc\xe2\x82") is None  # two bytes of a three-byte character...
    assert check.check(b"x\n") == 3  # ...that never came: the first of them is the bad byte
    assert _Utf8Check().check(b"ok\n\xff") == 3
