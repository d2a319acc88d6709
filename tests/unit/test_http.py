"""observe.http against real servers on 127.0.0.1: TLS with certificates made by the openssl CLI,
size caps, timeouts, and the translation of every failure into a TransportError with its reason."""

from __future__ import annotations

import asyncio
import base64
import gzip
import shutil
import socket
import ssl
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
    build_ssl_context,
    fetch,
    new_session,
    redact,
    safe_url,
)
from observe.telemetry import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_TIMEOUT,
    FAIL_TLS,
    FAIL_TOO_LARGE,
    FAIL_UNREACHABLE,
)
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


async def _raw_server(reply: bytes | None) -> tuple[asyncio.Server, str]:
    """A TCP server that reads one request and writes `reply` verbatim (None: never answers), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if reply is None:
                await reader.read()  # until the client gives up and closes
            else:
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


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
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_tls_fails_with_another_ca(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.other_ca)))
    assert info.value.reason == FAIL_TLS


async def test_tls_server_name_is_the_name_verified(serve: Serve, pki: PKI) -> None:
    url = await serve(_app(_whoami), _server_ssl(pki))
    ok = await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca, server_name="localhost")))
    assert ok.status == 200
    with pytest.raises(TransportError) as info:
        await _get(url, _cfg(url, tls=TLSConfig(ca_file=pki.ca, server_name="prometheus.example.com")))
    assert info.value.reason == FAIL_TLS
    assert "prometheus.example.com" in str(info.value) or "Hostname mismatch" in str(info.value)


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


@pytest.fixture
def openssl_server(pki: PKI) -> Iterator[str]:
    """`openssl s_server -www` requiring a client certificate: like Go and nginx, it sends the TLS 1.3
    certificate_required alert. Stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-www", "-Verify", "1", "-accept", f"127.0.0.1:{port}",
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
    server, url = await _raw_server(None)
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
    server, url = await _raw_server(b"")
    server.close()
    await server.wait_closed()  # the port is now closed
    with pytest.raises(TransportError, match=r"cannot connect to 127\.0\.0\.1:") as info:
        await _get(url, _cfg(url))
    assert info.value.reason == FAIL_UNREACHABLE


async def test_server_closing_without_answer_is_unreachable() -> None:
    server, url = await _raw_server(b"")
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
    server, url = await _raw_server(reply)
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
        server, url = await _raw_server(reply)
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
