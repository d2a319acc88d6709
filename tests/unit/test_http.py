"""observe.http against real servers on 127.0.0.1: TLS with certificates made by the openssl CLI,
size caps, timeouts, and the translation of every failure into a TransportError with its reason."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from observe.config import BasicAuth, HTTPClientConfig, TLSConfig
from observe.errors import ConfigError
from observe.http import (
    TransportError,
    auth_headers,
    body_snippet,
    build_ssl_context,
    fetch,
    new_session,
    parse_retry_after,
    redact,
    safe_url,
)
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_TIMEOUT,
    FAIL_TLS,
    FAIL_TOO_LARGE,
    FAIL_UNREACHABLE,
)
from tests.fakes import raw_http_server
from tests.servers import free_port

TOKEN = "s3cr3t-t0ken-value"

Serve = Callable[..., Awaitable[str]]


# -- servers ----------------------------------------------------------------------------------------


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1 (optionally over TLS); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> str:
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"{'https' if ssl_context else 'http'}://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def _app(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def _reply(**response: Any) -> web.Application:
    """An app answering every request with `web.Response(**response)`."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(**response)

    return _app(handler)


def _cfg(url: str, **kw: Any) -> HTTPClientConfig:
    return HTTPClientConfig(url=url, **kw)


async def _get(url: str, cfg: HTTPClientConfig, *, max_bytes: int = 1 << 20, **kw: Any) -> Any:
    async with new_session(cfg) as session:
        return await fetch(session, "GET", url, cfg=cfg, max_bytes=max_bytes, **kw)


# -- TLS material, made with the openssl CLI --------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=observe test {name}",
        cwd=d,
    )  # fmt: skip


def _make_leaf(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-set_serial", "2",
        "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "other")
    _make_leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return PKI(
        d / "ca.crt", d / "other.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key"
    )


def _server_ssl(pki: PKI, *, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca)
    return ctx


async def _whoami(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    subject = dict(x[0] for x in peer["subject"]) if peer else {}
    return web.Response(text=f"client={subject.get('commonName', '-')}\n")


async def test_tls_verified_with_the_configured_ca(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    resp = await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca)))
    assert (resp.status, resp.body) == (200, b"client=-\n")


async def test_tls_fails_without_the_ca(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url))  # system CAs only
    assert info.value.reason == FAIL_TLS
    assert "certificate verification failed" in str(info.value)
    assert "tls.ca_file is not set, so only the system CAs are trusted" in str(info.value)
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_tls_fails_with_another_ca(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.other_ca)))
    assert info.value.reason == FAIL_TLS
    assert f"tls.ca_file {pki.other_ca} does not hold the CA that signed the server's certificate" in str(
        info.value
    )


async def test_tls_server_name_is_the_name_verified(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    ok = await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca, server_name="localhost")))
    assert ok.status == 200
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca, server_name="prometheus.example.com")))
    assert info.value.reason == FAIL_TLS
    assert "tls.server_name 'prometheus.example.com' is not a name in the server's certificate" in str(
        info.value
    )


async def test_tls_insecure_skip_verify(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    resp = await _get(url, _cfg(url, tls=TLSConfig(insecure_skip_verify=True)))
    assert resp.status == 200


async def test_tls_client_certificate_accepted(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki, require_client_cert=True))
    tls = TLSConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    resp = await _get(url, _cfg(url, tls=tls))
    assert (resp.status, resp.body) == (200, b"client=client\n")


async def test_tls_client_certificate_required_and_missing_python_server(serve: Serve, pki: PKI) -> None:
    # Python's asyncio TLS server hangs up after a failed client-certificate check without an alert:
    # all the client can see is a closed connection, so the message carries the hint.
    url = await serve(_app(_whoami), _server_ssl(pki, require_client_cert=True))
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca)))
    assert info.value.reason == FAIL_UNREACHABLE
    assert "closed the connection without answering" in str(info.value)
    assert "if it requires a client certificate, set tls.cert_file and tls.key_file" in str(info.value)


@pytest.mark.parametrize("with_cert", [False, True])
async def test_tls_reset_after_the_handshake_points_at_the_client_certificate(
    pki: PKI, with_cert: bool
) -> None:
    # What a Go server (Prometheus) refusing a client certificate under TLS 1.3 often looks like: the
    # handshake is over for the client, then a TCP reset instead of the alert. Here: SO_LINGER 0, abort.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=_server_ssl(pki))
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    tls = TLSConfig(ca_file=pki.ca)
    if with_cert:
        tls = TLSConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    try:
        with pytest.raises(TransportError) as info:
            await _get(url, _cfg(url, tls=tls))
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.reason == FAIL_UNREACHABLE
    assert "the server reset the connection (" in str(info.value)
    if with_cert:
        assert f"a server that refuses our client certificate {pki.client_cert} may end the connection" in str(
            info.value
        )
    else:
        assert "if it requires a client certificate, set tls.cert_file and tls.key_file" in str(info.value)


@pytest.fixture
def openssl_server(pki: PKI) -> Iterator[str]:
    """`openssl s_server -www` requiring a client certificate: like Go and nginx, it sends the TLS 1.3
    certificate_required alert, and unknown_ca for a certificate from a CA it does not trust
    (-verify_return_error). Stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-www", "-Verify", "1", "-verify_return_error", "-accept", f"127.0.0.1:{port}",
         "-cert", str(pki.server_cert), "-key", str(pki.server_key), "-CAfile", str(pki.ca)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("openssl s_server did not start") from None
                time.sleep(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


async def test_tls_client_certificate_required_openssl_server(openssl_server: str, pki: PKI) -> None:
    url = openssl_server
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca)))
    assert info.value.reason == FAIL_TLS, str(info.value)
    assert "TLSV13_ALERT_CERTIFICATE_REQUIRED" in str(info.value)
    assert "set tls.cert_file and tls.key_file" in str(info.value)

    tls = TLSConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    resp = await _get(url, _cfg(url, tls=tls))
    assert resp.status == 200
    assert b"CN=client" in resp.body or b"CN = client" in resp.body  # s_server -www shows the peer


async def test_tls_client_certificate_from_another_ca_openssl_server(
    openssl_server: str, pki: PKI, tmp_path: Path
) -> None:
    _make_ca(tmp_path, "rogue")
    _make_leaf(tmp_path, "intruder", "rogue", "extendedKeyUsage=clientAuth\n")
    tls = TLSConfig(ca_file=pki.ca, cert_file=tmp_path / "intruder.crt", key_file=tmp_path / "intruder.key")
    with pytest.raises(TransportError) as info:
        await _get(openssl_server, _cfg(openssl_server, tls=tls))
    assert info.value.reason == FAIL_TLS, str(info.value)
    assert "UNKNOWN_CA" in str(info.value)
    assert f"the server refused our client certificate {tmp_path / 'intruder.crt'}" in str(info.value)


async def test_https_url_to_a_plain_http_server_says_so(serve: Serve) -> None:
    url = (await serve(_reply(text="hi"))).replace("http://", "https://")
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url))
    assert info.value.reason == FAIL_TLS
    assert "the server did not answer in TLS (if it serves plain HTTP, use an http:// URL)" in str(info.value)


@pytest.mark.parametrize(
    ("tls", "says"),
    [
        (TLSConfig(), "it wants a client certificate (set tls.cert_file and tls.key_file)"),
        (
            TLSConfig(cert_file=Path("/pki/c.crt"), key_file=Path("/pki/c.key")),
            "the server refused our client certificate /pki/c.crt",
        ),
    ],
)
def test_tls_reason_for_a_bad_certificate_alert(tls: TLSConfig, says: str) -> None:
    # Go servers before 1.21 (Prometheus 2.42) send bad_certificate for a missing client certificate
    # too; the e2e test against a real Prometheus shows it, this pins the wording without one.
    from observe.http import _tls_reason

    alert = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    alert.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    assert _tls_reason(alert, tls).startswith("SSLV3_ALERT_BAD_CERTIFICATE: ")
    assert says in _tls_reason(alert, tls)


def test_build_ssl_context() -> None:
    assert build_ssl_context(TLSConfig()) is True  # aiohttp's verifying default
    ctx = build_ssl_context(TLSConfig(insecure_skip_verify=True))
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_NONE
    assert not ctx.check_hostname


def test_build_ssl_context_names_the_file_it_cannot_load(tmp_path: Path, pki: PKI) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(ConfigError, match=r"tls\.ca_file: cannot load CA certificates from .*nope\.crt"):
        build_ssl_context(TLSConfig(ca_file=missing))
    with pytest.raises(ConfigError, match=r"tls\.cert_file/key_file: cannot load the client certificate"):
        build_ssl_context(TLSConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.server_key))


# -- auth -------------------------------------------------------------------------------------------


def test_auth_headers_bearer_rereads_a_rotated_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    cfg = _cfg("http://127.0.0.1:1", bearer_token_file=token)
    assert auth_headers(cfg) == {"Authorization": "Bearer first"}
    token.write_text("second-token\n")
    assert auth_headers(cfg) == {"Authorization": "Bearer second-token"}


def test_auth_headers_basic_and_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVE_TEST_PW", "pa:ss")
    cfg = _cfg("http://127.0.0.1:1", basic_auth=BasicAuth(username="alice", password_env="OBSERVE_TEST_PW"))
    expected = "Basic " + base64.b64encode(b"alice:pa:ss").decode()
    assert auth_headers(cfg) == {"Authorization": expected}
    assert auth_headers(_cfg("http://127.0.0.1:1")) == {}


async def test_fetch_sends_auth_config_and_call_headers(serve: Serve, tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="ok\n")

    url = await serve(_app(handler))
    token = tmp_path / "token"
    token.write_text(TOKEN)
    cfg = _cfg(url, bearer_token_file=token, headers={"X-Static": "1"})
    await _get(url, cfg, headers={"Accept": "text/plain"})
    h = seen[0]
    assert h["Authorization"] == f"Bearer {TOKEN}"
    assert (h["X-Static"], h["Accept"], h["Accept-Encoding"]) == ("1", "text/plain", "gzip")
    assert h["User-Agent"].startswith("observe/")


async def test_configured_credentials_win_over_userinfo_in_the_url(serve: Serve, tmp_path: Path) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text="ok\n")

    url = await serve(_app(handler))
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with_userinfo = url.replace("http://", "http://someone:pw@")
    await _get(with_userinfo, _cfg(with_userinfo, bearer_token_file=token))
    assert seen == [f"Bearer {TOKEN}"]


async def test_unreadable_token_file_is_an_auth_failure(tmp_path: Path) -> None:
    cfg = _cfg("http://127.0.0.1:1", bearer_token_file=tmp_path / "missing-token")
    with pytest.raises(TransportError) as info:
        await _get(cfg.url, cfg)
    assert info.value.reason == FAIL_AUTH
    assert "missing-token" in str(info.value)


def test_redact_and_safe_url(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    cfg = _cfg("http://127.0.0.1:1", bearer_token_file=token)
    assert redact(f"echo: Authorization: Bearer {TOKEN}; raw {TOKEN}", cfg) == (
        "echo: Authorization: <redacted>; raw <redacted>"
    )
    assert safe_url("https://user:pw@host:9090/p/federate?match[]=x&token=y") == "https://host:9090/p/federate"


# -- size cap ---------------------------------------------------------------------------------------


async def test_body_over_the_cap_by_content_length(serve: Serve) -> None:
    url = await serve(_reply(body=b"x" * 5000))
    with pytest.raises(TransportError, match="Content-Length 5000 is over the 1000 bytes limit") as info:
        await _get(url, _cfg(url), max_bytes=1000)
    assert info.value.reason == FAIL_TOO_LARGE


async def test_body_over_the_cap_while_streaming(serve: Serve) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(50):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    url = await serve(_app(chunked))
    with pytest.raises(TransportError, match="passed the 10000 bytes limit") as info:
        await _get(url, _cfg(url), max_bytes=10_000)
    assert info.value.reason == FAIL_TOO_LARGE


async def test_gzip_bomb_is_capped_after_decompression(serve: Serve) -> None:
    bomb = gzip.compress(b"\n" * 5_000_000)  # ~5 KB on the wire, 5 MB inflated

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    url = await serve(_app(handler))
    with pytest.raises(TransportError, match="after decompression") as info:
        await _get(url, _cfg(url), max_bytes=1_000_000)
    assert info.value.reason == FAIL_TOO_LARGE


async def test_body_at_the_cap_is_accepted(serve: Serve) -> None:
    url = await serve(_reply(body=b"z" * 1000))
    resp = await _get(url, _cfg(url), max_bytes=1000)
    assert len(resp.body) == 1000


# -- transport failures -----------------------------------------------------------------------------


async def test_timeout_when_the_server_never_answers() -> None:
    server, url = await raw_http_server(None)
    try:
        cfg = _cfg(url, timeout="500ms")
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TransportError, match="no complete answer within the timeout of 500ms") as info:
            await _get(url, cfg)
        assert info.value.reason == FAIL_TIMEOUT
        assert loop.time() - start < 3
    finally:
        server.close()
        await server.wait_closed()


async def test_connection_refused_is_unreachable() -> None:
    server, url = await raw_http_server(b"")
    server.close()
    await server.wait_closed()  # the port is now closed
    with pytest.raises(TransportError, match=r"cannot connect to 127\.0\.0\.1:") as info:
        await _get(url, _cfg(url))
    assert info.value.reason == FAIL_UNREACHABLE


async def test_server_closing_without_answer_is_unreachable() -> None:
    server, url = await raw_http_server(b"")
    try:
        with pytest.raises(TransportError, match="closed the connection without answering") as info:
            await _get(url, _cfg(url))
        assert info.value.reason == FAIL_UNREACHABLE
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nup 1\n", "cut short or malformed"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nup 1\n\r\n", "cut short or malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nno", "malformed"),
        (b"NOT HTTP AT ALL\r\n\r\n", "bad HTTP response"),
    ],
    ids=["short-content-length", "unfinished-chunked", "bad-gzip", "not-http"],
)
async def test_broken_responses_are_bad_response(reply: bytes, message: str) -> None:
    server, url = await raw_http_server(reply)
    try:
        with pytest.raises(TransportError, match=message) as info:
            await _get(url, _cfg(url))
        assert info.value.reason == FAIL_BAD_RESPONSE
        assert info.value.__cause__ is not None
    finally:
        server.close()
        await server.wait_closed()


async def test_error_status_is_returned_not_raised(serve: Serve) -> None:
    url = await serve(_reply(status=503, text="busy"))
    resp = await _get(url, _cfg(url))
    assert (resp.status, resp.body, resp.content_type) == (503, b"busy", "text/plain")


async def test_environment_proxies_are_ignored(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = await serve(_reply(text="direct\n"))
    resp = await _get(url, _cfg(url))
    assert resp.body == b"direct\n"


async def test_no_secret_in_any_failure_message(serve: Serve, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    messages: list[str] = []
    for reply in (None, b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx", b"garbage\r\n\r\n"):
        server, url = await raw_http_server(reply)
        try:
            with pytest.raises(TransportError) as info:
                secret_url = f"http://user:{TOKEN}@{url.removeprefix('http://')}/x?token={TOKEN}"
                await _get(secret_url, _cfg(url, bearer_token_file=token, timeout="300ms"))
            messages.append(str(info.value))
        finally:
            server.close()
            await server.wait_closed()
    assert len(messages) == 4
    for message in messages:
        assert TOKEN not in message


# -- reading an error reply -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-3", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # RFC 9110 IMF-fixdate
        ("Wednesday, 21-Oct-15 07:28:10 GMT", 10.0),  # obsolete RFC 850 form
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no wait
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_body_snippet_is_one_bounded_line_of_lenient_utf8() -> None:
    assert body_snippet(b"  out of order\n\tsample  \n", 512) == "out of order sample"
    assert body_snippet(b"\xff\xfebad " + "é".encode() * 5000, 512) == "\ufffd\ufffdbad " + "é" * 506
    assert body_snippet(b"", 512) == ""
