"""RemoteWriteSink against an in-test fake receiver: an aiohttp server on 127.0.0.1 recording requests."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from pydantic import ValidationError

from observe import __version__
from observe.config import RemoteWriteConfig
from observe.errors import PermanentError, RetryableError
from observe.http import new_session
from observe.model import is_stale_nan
from observe.protocol import remote_write as rw
from observe.sinks import Sink
from observe.sinks.remote_write import RemoteWriteSink
from tests import remote_write_pb as pb
from tests.servers import free_port, require_binary

UP = (("__name__", "up"), ("cluster", "prod-eu-1"), ("job", "node"))
NOW_MS = 1_700_000_000_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class FakeReceiver:
    """Records every request; answers with `handler` (204 by default)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    handler: Handler | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)  # frees handlers that hang on purpose

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded(request.path, request.headers, await request.read()))
        if self.handler is not None:
            return await self.handler(request)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    fake = FakeReceiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    yield fake
    fake.release.set()
    await runner.cleanup()


SinkFactory = Callable[..., RemoteWriteSink]


@pytest.fixture
async def make_sink() -> AsyncIterator[SinkFactory]:
    """`make_sink(url, **cfg)`: a sink on a session from `new_session(cfg)`, as the service builds it."""
    sessions: list[aiohttp.ClientSession] = []

    def make(url: str, **kw: Any) -> RemoteWriteSink:
        cfg = RemoteWriteConfig(url=url, **kw)
        sessions.append(new_session(cfg))
        return RemoteWriteSink(cfg, sessions[-1])

    yield make
    for s in sessions:
        await s.close()


def _payload() -> bytes:
    lb = rw.encode_labels(UP)
    body = rw.encode_write_request(
        [rw.encode_series(lb, 1.0, NOW_MS), rw.encode_stale_series(lb, NOW_MS + 15_000)]
    )
    return rw.compress(body)


def _answer(status: int, body: str | bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=data, headers=headers)

    return handler


# -- what goes on the wire --------------------------------------------------------------------------


async def test_headers_and_body(receiver: FakeReceiver, make_sink: SinkFactory) -> None:
    sink = make_sink(receiver.url + "/api/v1/write")
    payload = _payload()
    await sink.send(payload)
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req.path == "/api/v1/write"
    assert req.headers["Content-Encoding"] == "snappy"
    assert req.headers["Content-Type"] == "application/x-protobuf"
    assert req.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert req.headers["User-Agent"] == f"observe/{__version__}"
    assert "Authorization" not in req.headers
    assert "X-Scope-OrgID" not in req.headers and "THANOS-TENANT" not in req.headers
    assert req.body == payload
    raw = rw.decompress(req.body)
    for decoded in (rw.decode_write_request(raw), pb.parse(raw)):
        assert [labels for labels, _ in decoded] == [UP, UP]
        assert decoded[0][1] == [(1.0, NOW_MS)]
        [(stale, stale_ts)] = decoded[1][1]
        assert is_stale_nan(stale) and stale_ts == NOW_MS + 15_000


@pytest.mark.parametrize(
    ("path", "kw", "header"),
    [
        ("/api/v1/receive", {}, "THANOS-TENANT"),  # Thanos Receive, kind guessed from the path
        ("/api/v1/push", {}, "X-Scope-OrgID"),  # Mimir / Cortex
        ("/write", {"kind": "thanos"}, "THANOS-TENANT"),
        ("/write", {"kind": "mimir"}, "X-Scope-OrgID"),
        ("/api/v1/receive", {"tenant_header": "X-Tenant"}, "X-Tenant"),
    ],
)
async def test_tenant_header(
    receiver: FakeReceiver, make_sink: SinkFactory, path: str, kw: dict[str, Any], header: str
) -> None:
    await make_sink(receiver.url + path, tenant="fleet", **kw).send(_payload())
    headers = receiver.requests[0].headers
    assert headers.getall(header) == ["fleet"]
    others = {"THANOS-TENANT", "X-Scope-OrgID", "X-Tenant"} - {header}
    assert not any(h in headers for h in others)


async def test_custom_headers_are_sent(receiver: FakeReceiver, make_sink: SinkFactory) -> None:
    await make_sink(receiver.url + "/api/v1/write", headers={"X-Env": "prod"}).send(_payload())
    headers = receiver.requests[0].headers
    assert headers.getall("X-Env") == ["prod"]
    assert headers.getall("Content-Encoding") == ["snappy"]
    assert headers.getall("User-Agent") == [f"observe/{__version__}"]


@pytest.mark.parametrize("name", ["content-encoding", "Content-Type", "X-Prometheus-Remote-Write-Version",
                                  "User-Agent", "Authorization"])  # fmt: skip
def test_config_rejects_headers_that_would_override_the_protocol(name: str) -> None:
    # Prometheus' remote_write.headers refuses the same: sending two Content-Encodings breaks every request
    with pytest.raises(ValidationError, match=f"header '{name}' is set by observe and cannot be overridden"):
        RemoteWriteConfig(url="http://127.0.0.1:1/api/v1/write", headers={name: "x"})


async def test_bearer_token_file_is_reread_when_rotated(
    receiver: FakeReceiver, make_sink: SinkFactory, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    sink = make_sink(receiver.url + "/api/v1/write", bearer_token_file=token)
    await sink.send(_payload())
    token.write_text("second-token\n")
    await sink.send(_payload())
    assert [r.headers["Authorization"] for r in receiver.requests] == ["Bearer first", "Bearer second-token"]


async def test_basic_auth_from_env(
    receiver: FakeReceiver, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_PASSWORD", "pa:ss")
    sink = make_sink(
        receiver.url + "/api/v1/write",
        basic_auth={"username": "fleet", "password_env": "RW_PASSWORD"},
    )
    await sink.send(_payload())
    assert (
        receiver.requests[0].headers["Authorization"] == "Basic " + base64.b64encode(b"fleet:pa:ss").decode()
    )


async def test_missing_token_file_is_retryable_and_names_no_secret(
    receiver: FakeReceiver, make_sink: SinkFactory, tmp_path: Path
) -> None:
    sink = make_sink(receiver.url + "/api/v1/write", bearer_token_file=tmp_path / "absent")
    with pytest.raises(RetryableError) as info:
        await sink.send(_payload())
    assert info.value.reason == "auth"
    assert "absent" in str(info.value)
    assert receiver.requests == []


# -- classification of replies ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 202, 204])
async def test_2xx_is_success(receiver: FakeReceiver, make_sink: SinkFactory, status: int) -> None:
    receiver.handler = _answer(status, "ok" if status != 204 else b"")
    await make_sink(receiver.url + "/api/v1/write").send(_payload())
    assert len(receiver.requests) == 1


async def test_429_with_delta_seconds(receiver: FakeReceiver, make_sink: SinkFactory) -> None:
    receiver.handler = _answer(429, "slow down", {"Retry-After": "7"})
    with pytest.raises(RetryableError) as info:
        await make_sink(receiver.url + "/api/v1/write").send(_payload())
    err = info.value
    assert (err.reason, err.status, err.retry_after) == ("throttled", 429, 7.0)
    assert f"remote write to {receiver.url}/api/v1/write: HTTP 429" in str(err)
    assert "slow down" in str(err)


async def test_429_with_http_date(receiver: FakeReceiver, make_sink: SinkFactory) -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    receiver.handler = _answer(429, b"", {"Retry-After": when})
    with pytest.raises(RetryableError) as info:
        await make_sink(receiver.url + "/api/v1/write").send(_payload())
    assert info.value.retry_after is not None
    assert 110 <= info.value.retry_after <= 121


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (502, None), (503, "3"), (504, None)])
async def test_5xx_is_retryable(
    receiver: FakeReceiver, make_sink: SinkFactory, status: int, retry_after: str | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else None
    receiver.handler = _answer(status, "ingester unavailable", headers)
    with pytest.raises(RetryableError) as info:
        await make_sink(receiver.url + "/api/v1/write").send(_payload())
    err = info.value
    assert (err.reason, err.status) == ("http_5xx", status)
    assert err.retry_after == (float(retry_after) if retry_after else None)
    assert f"HTTP {status}: ingester unavailable" in str(err)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "http_4xx"),
        (409, "http_4xx"),
        (404, "http_4xx"),
        (413, "too_large"),
        (401, "auth"),
        (403, "auth"),
    ],
)
async def test_4xx_is_permanent_with_receivers_message(
    receiver: FakeReceiver, make_sink: SinkFactory, status: int, reason: str
) -> None:
    receiver.handler = _answer(status, "out of order sample\n", {"Retry-After": "5"})
    with pytest.raises(PermanentError) as info:
        await make_sink(receiver.url + "/api/v1/receive").send(_payload())
    err = info.value
    assert not isinstance(err, RetryableError)
    assert (err.reason, err.status) == (reason, status)
    assert str(err).startswith(f"remote write to {receiver.url}/api/v1/receive: HTTP {status}")
    assert str(err).endswith(": out of order sample")


async def test_error_body_is_truncated_and_decoded_leniently(
    receiver: FakeReceiver, make_sink: SinkFactory
) -> None:
    receiver.handler = _answer(400, b"\xff\xfebad " + "é".encode() * 5000)
    with pytest.raises(PermanentError) as info:
        await make_sink(receiver.url + "/api/v1/write").send(_payload())
    message = str(info.value).split("HTTP 400: ", 1)[1]
    assert message.startswith("\ufffd\ufffdbad é")
    assert len(message) == 512


async def test_permanent_redirect_is_followed_with_the_body(
    receiver: FakeReceiver, make_sink: SinkFactory
) -> None:
    # 307/308 keep method and body (RFC 9110), as Prometheus' Go client does: a moved receiver still works
    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path == "/old":
            return web.Response(status=308, headers={"Location": "/api/v1/write"})
        return web.Response(status=204)

    receiver.handler = moved
    payload = _payload()
    await make_sink(receiver.url + "/old").send(payload)
    assert [(r.path, r.body) for r in receiver.requests] == [("/old", payload), ("/api/v1/write", payload)]


@pytest.mark.parametrize("status", [300, 304])
async def test_other_3xx_is_permanent(receiver: FakeReceiver, make_sink: SinkFactory, status: int) -> None:
    receiver.handler = _answer(status)
    with pytest.raises(PermanentError) as info:
        await make_sink(receiver.url + "/api/v1/write").send(_payload())
    assert (info.value.reason, info.value.status) == ("bad_response", status)
    assert "not a remote-write receiver reply" in str(info.value)


async def test_url_credentials_never_appear_in_errors(receiver: FakeReceiver, make_sink: SinkFactory) -> None:
    receiver.handler = _answer(500)
    url = receiver.url.replace("http://", "http://fleet:hunter2@") + "/api/v1/write"
    with pytest.raises(RetryableError) as info:
        await make_sink(url).send(_payload())
    assert "hunter2" not in str(info.value)
    assert f"remote write to {receiver.url}/api/v1/write: HTTP 500" in str(info.value)


# -- transport failures -----------------------------------------------------------------------------


async def test_timeout_is_retryable(receiver: FakeReceiver, make_sink: SinkFactory) -> None:
    async def hang(_: web.Request) -> web.StreamResponse:
        await receiver.release.wait()
        return web.Response(status=204)

    receiver.handler = hang
    started = time.monotonic()
    with pytest.raises(RetryableError) as info:
        await make_sink(receiver.url + "/api/v1/write", timeout=0.2).send(_payload())
    assert time.monotonic() - started < 2
    assert info.value.reason == "timeout"
    assert f"remote write: POST {receiver.url}/api/v1/write" in str(info.value)


async def test_connection_refused_is_unreachable(make_sink: SinkFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/write"
    with pytest.raises(RetryableError) as info:
        await make_sink(url).send(_payload())
    assert info.value.reason == "unreachable"
    assert info.value.status is None
    assert url in str(info.value)


async def test_connection_closed_mid_request_is_unreachable(make_sink: SinkFactory) -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(RetryableError) as info:
            await make_sink(f"http://127.0.0.1:{port}/api/v1/write").send(_payload())
        assert info.value.reason == "unreachable"
    finally:
        server.close()
        await server.wait_closed()


# -- helpers and contract ---------------------------------------------------------------------------


async def test_satisfies_sink_protocol() -> None:
    cfg = RemoteWriteConfig(url="http://127.0.0.1:1/api/v1/write")
    async with new_session(cfg) as session:
        sink: Sink = RemoteWriteSink(cfg, session)
        assert sink.name == "remote_write"
        await sink.close()
        assert not session.closed  # the session is the caller's


# -- TLS (a throwaway self-signed certificate made with the openssl CLI) -------------------------------


@dataclass
class TLSReceiver:
    fake: FakeReceiver
    cert: Path


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key) for DNS name receiver.test."""
    openssl = require_binary("openssl")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=receiver.test",
         "-addext", "subjectAltName=DNS:receiver.test"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def https_receiver(self_signed: tuple[Path, Path]) -> AsyncIterator[TLSReceiver]:
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    fake = FakeReceiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    fake.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    yield TLSReceiver(fake, cert)
    await runner.cleanup()


async def test_https_with_ca_file_and_server_name(
    https_receiver: TLSReceiver, make_sink: SinkFactory
) -> None:
    tls = {"ca_file": https_receiver.cert, "server_name": "receiver.test"}
    await make_sink(https_receiver.fake.url + "/api/v1/write", tls=tls).send(_payload())
    assert len(https_receiver.fake.requests) == 1


async def test_https_unknown_ca_is_a_tls_error(https_receiver: TLSReceiver, make_sink: SinkFactory) -> None:
    with pytest.raises(RetryableError) as info:
        await make_sink(https_receiver.fake.url + "/api/v1/write").send(_payload())
    assert info.value.reason == "tls"
    assert https_receiver.fake.requests == []


async def test_https_insecure_skip_verify(https_receiver: TLSReceiver, make_sink: SinkFactory) -> None:
    sink = make_sink(https_receiver.fake.url + "/api/v1/write", tls={"insecure_skip_verify": True})
    await sink.send(_payload())
    assert len(https_receiver.fake.requests) == 1
