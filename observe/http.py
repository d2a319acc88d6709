"""The one place `observe` builds HTTP clients and translates aiohttp's exceptions.

aiohttp client reference: https://docs.aiohttp.org/en/stable/client_reference.html

Every source and sink talks HTTP through `new_session` and `fetch` (or `request`, under `fetch`, for a
caller that reads the body as it streams in), so TLS, auth, proxies, size caps, timeouts and error
translation are decided once:

    TransportError (ObserveError)   no usable HTTP response; `reason` is a FAIL_* constant:
        timeout        no complete answer within `timeout` (connect + headers + body)
        unreachable    connection refused or reset, DNS failure, server closed without answering
        tls            handshake or certificate verification failed
        too_large      the body passed `max_bytes` (Content-Length checked up front, then while streaming)
        bad_response   the body was cut short (ClientPayloadError) or the reply was not valid HTTP
        auth           the bearer token or password file cannot be read

Credentials that are not a file or an environment variable (a kubeconfig user: an inline token, a client
certificate, an exec credential plugin; observe/kube/credentials.py) come in through the `Credentials`
protocol: `fetch` asks it for a `RequestAuth` on every request, and after a 401 lets it drop what it
cached and tries once more, within the same deadline.

An HTTP error status is *not* a TransportError: `fetch` returns it, and the caller decides what a 401
or a 503 means for its protocol (`parse_retry_after` and `body_snippet` read such a reply the same way
for every caller). No message carries a secret: secret values are scrubbed from every
message built here, and URLs are shown without userinfo or query.
"""

from __future__ import annotations

import base64
import email.utils
import errno
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from observe import __version__
from observe.batched_reads import batched_chunks
from observe.config import HTTPClientOptions, TLSConfig
from observe.errors import ConfigError, ObserveError
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_TIMEOUT,
    FAIL_TLS,
    FAIL_TOO_LARGE,
    FAIL_UNREACHABLE,
)
from observe.units import format_duration, format_size

T = TypeVar("T")

__all__ = [
    "Credentials",
    "RequestAuth",
    "Response",
    "TransportError",
    "auth_headers",
    "body_snippet",
    "build_ssl_context",
    "capped_chunks",
    "fetch",
    "new_session",
    "parse_retry_after",
    "redact",
    "request",
    "safe_url",
    "transport_error",
]

_REDACTED = "<redacted>"
# TLS alerts a server sends about the client certificate we presented, or did not (RFC 8446 section 6.2).
# Go before 1.21 (Prometheus 2.42 among the servers built with it) answers a missing certificate with
# bad_certificate, not certificate_required.
_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "UNSUPPORTED_CERTIFICATE",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
)
# OpenSSL's verify codes (x509_vfy.h) for a chain that does not lead to a trusted CA, and for a name that
# is not in the certificate.
_UNTRUSTED_ISSUER = frozenset({2, 18, 19, 20, 21})  # ..._GET_ISSUER_CERT, ..._SELF_SIGNED, ..._LEAF_SIGNATURE
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
# Read in chunks of up to 256 KiB: a 15 MiB federate body is ~60 of them, checked against the cap each.
_READ_CHUNK = 256 * 1024


class TransportError(ObserveError):
    """No usable HTTP response. `reason` is a FAIL_* constant from observe.reasons."""

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class RequestAuth:
    """What one request authenticates with: headers (`Authorization`), and TLS towards the server when the
    credentials include a client certificate or their own CA (None: the session's)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    ssl: ssl.SSLContext | None = None
    server_name: str | None = None  # verify the server's certificate against this name (SNI too)


class Credentials(Protocol):
    """Credentials obtained per request, possibly by running something (an exec plugin) and cached."""

    async def request_auth(self) -> RequestAuth:
        """The current credentials; raises ConfigError (naming their origin, never a value) when there are
        none to be had."""
        ...

    def expire(self) -> bool:
        """The server answered 401: drop what is cached. True when asking again may give other credentials
        (an exec plugin runs again), so the request is worth one more try."""
        ...

    def secrets(self) -> list[str]:
        """The secret values currently in use, to scrub from messages."""
        ...

    def describe(self) -> str:
        """Where these credentials and their TLS settings come from, for messages (never a value)."""
        ...


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP response: the whole body has been read (decompressed) and is within the cap."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes | bytearray  # a bytearray from `fetch`: see why there

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters (`text/plain`); empty when absent."""
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext | bool:
    """The `ssl` argument for aiohttp: True (verify against the system CAs) or a configured context.

    `ca_file` replaces the system CAs, as Prometheus' `tls_config.ca_file` does. `server_name` is
    applied per request (`fetch` passes it as aiohttp's `server_hostname`): an SSLContext cannot hold it.
    Raises ConfigError when a file cannot be loaded.
    """
    if tls.ca_file is None and tls.cert_file is None and not tls.insecure_skip_verify:
        return True
    try:
        if tls.insecure_skip_verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"tls.ca_file: cannot load CA certificates from {tls.ca_file}: {_os_reason(exc)}"
        ) from exc
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"tls.cert_file/key_file: cannot load the client certificate {tls.cert_file} "
                f"with key {tls.key_file}: {_os_reason(exc)}"
            ) from exc
    return ctx


def auth_headers(cfg: HTTPClientOptions) -> dict[str, str]:
    """`Authorization` from the bearer token or basic auth, read now (a rotated token file is picked up).

    Raises ConfigError when the secret cannot be read (its message names only the secret's origin).
    """
    token = cfg.bearer_token()
    if token is not None:
        return {"Authorization": f"Bearer {token.value()}"}
    if cfg.basic_auth is not None:
        password = cfg.basic_auth.password().value()
        # UTF-8, as Go's SetBasicAuth sends it (RFC 7617 charset="UTF-8"); aiohttp's BasicAuth is deprecated.
        pair = f"{cfg.basic_auth.username}:{password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {}


def redact(text: str, cfg: HTTPClientOptions, credentials: Credentials | None = None) -> str:
    """`text` with the current secret values of `cfg` and `credentials` (and their Authorization forms)
    replaced."""
    secrets: list[str] = list(credentials.secrets()) if credentials is not None else []
    try:
        secrets.extend(auth_headers(cfg).values())
        token = cfg.bearer_token()
        if token is not None:
            secrets.append(token.value())
        if cfg.basic_auth is not None:
            secrets.append(cfg.basic_auth.password().value())
    except ConfigError:
        pass  # an unreadable secret cannot leak
    for secret in sorted(secrets, key=len, reverse=True):  # the long forms first: "Bearer x" before "x"
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def safe_url(url: str | URL) -> str:
    """`url` fit for a message: no userinfo, no query (either may hold a credential)."""
    u = URL(url) if isinstance(url, str) else url
    return str(u.with_user(None).with_query(None).with_fragment(None))


def body_snippet(body: bytes | bytearray, max_chars: int) -> str:
    """The start of a reply body for a message, on one line: whitespace runs collapsed, invalid UTF-8
    replaced, at most `max_chars` characters (decoding at most 4 bytes per character of a huge body)."""
    return " ".join(body[: max_chars * 4].decode("utf-8", "replace").split())[:max_chars]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    None when absent or unparsable; never negative. A floor for the delivery layer, which caps it.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)  # the RFC says integer; some proxies send "1.5"
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def new_session(cfg: HTTPClientOptions, *, limit: int = 4) -> aiohttp.ClientSession:
    """A session for one server described by `cfg`; call from a coroutine, close with `await s.close()`.

    `limit` caps concurrent connections. Proxies from the environment are ignored (trust_env=False):
    a collector that silently routes cluster traffic through $HTTPS_PROXY is a surprise. Cookies are
    not kept, so every request stands alone. Responses are decompressed (gzip only is asked for).
    """
    connector = aiohttp.TCPConnector(limit=limit, ssl=build_ssl_context(cfg.tls))
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"Accept-Encoding": "gzip", "User-Agent": f"observe/{__version__}"},
        timeout=aiohttp.ClientTimeout(total=cfg.timeout),
    )


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    cfg: HTTPClientOptions,
    max_bytes: int,
    headers: Mapping[str, str] | None = None,
    params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    data: bytes | None = None,
    credentials: Credentials | None = None,
    batch_reads: bool = False,
) -> Response:
    """One request with `cfg`'s auth, headers, TLS server name and timeout; the body capped at `max_bytes`.

    Returns any HTTP status; raises TransportError (see the module docstring) when there is no usable
    response. Header precedence: `cfg.headers`, then auth, then `headers`. With `credentials` the auth is
    theirs, not `cfg`'s; a 401 is tried once more when they say new ones may help, and both tries share
    `cfg.timeout`: a deadline is per request, whatever happens inside it. `batch_reads` reads the body
    in batches (observe/batched_reads.py), for a server that writes it in many small pieces.
    """
    return await request(
        session, method, url, cfg=cfg, read=_read_whole(max_bytes, batch_reads), headers=headers,
        params=params, data=data, credentials=credentials,
    )  # fmt: skip


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    cfg: HTTPClientOptions,
    read: Callable[[aiohttp.ClientResponse, str], Awaitable[T]],
    headers: Mapping[str, str] | None = None,
    params: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    data: bytes | None = None,
    credentials: Credentials | None = None,
) -> T:
    """`fetch`'s request (auth, headers, TLS server name, one deadline, the 401 retry, the translation of
    aiohttp's exceptions) with the reply handed to `read(resp, where)`, for a caller that reads the body
    as it streams in (federation). An ObserveError raised by `read` passes through untouched."""
    target = URL(url) if isinstance(url, str) else url
    where = f"{method} {safe_url(target)}"
    deadline = time.monotonic() + cfg.timeout
    for attempt in range(2):  # at most one retry, after a 401 with credentials that may change
        try:
            auth = (
                await credentials.request_auth()
                if credentials is not None
                else RequestAuth(auth_headers(cfg))
            )
        except ConfigError as exc:
            raise TransportError(redact(f"{where}: {exc}", cfg, credentials), reason=FAIL_AUTH) from exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError(
                f"{where}: no complete answer within the timeout of {format_duration(cfg.timeout)} "
                "(obtaining credentials took it all)",
                reason=FAIL_TIMEOUT,
            )
        status, value = await _request_once(
            session, method, target, where, cfg=cfg, auth=auth, read=read, headers=headers, params=params,
            data=data, seconds=remaining, credentials=credentials,
        )  # fmt: skip
        if status != 401 or credentials is None or attempt or not credentials.expire():
            return value
    raise AssertionError("unreachable")  # the loop returns or raises


async def _request_once(
    session: aiohttp.ClientSession,
    method: str,
    target: URL,
    where: str,
    *,
    cfg: HTTPClientOptions,
    auth: RequestAuth,
    read: Callable[[aiohttp.ClientResponse, str], Awaitable[T]],
    headers: Mapping[str, str] | None,
    params: Sequence[tuple[str, str]] | Mapping[str, str] | None,
    data: bytes | None,
    seconds: float,  # what is left of the request's deadline
    credentials: Credentials | None,
) -> tuple[int, T]:
    if auth.headers and target.user is not None:
        target = target.with_user(None)  # the configured credentials win (aiohttp refuses both)
    merged = {**cfg.headers, **auth.headers, **(headers or {})}
    extra: dict[str, Any] = {}
    server_name = auth.server_name or cfg.tls.server_name
    if server_name:
        extra["server_hostname"] = server_name
    if auth.ssl is not None and target.scheme == "https":
        extra["ssl"] = auth.ssl  # per request: a client certificate from an exec plugin changes
    try:
        async with session.request(
            method,
            target,
            headers=merged,
            params=params,
            data=data,
            timeout=aiohttp.ClientTimeout(total=seconds),
            **extra,
        ) as resp:
            return resp.status, await read(resp, where)
    except ObserveError:  # TransportError, or the caller's own verdict on the body
        raise
    except Exception as exc:  # translated below; anything else is re-raised untouched
        translated = transport_error(exc, where, cfg, https=target.scheme == "https", credentials=credentials)
        if translated is None:
            raise
        raise translated from exc


def _read_whole(
    max_bytes: int, batch_reads: bool
) -> Callable[[aiohttp.ClientResponse, str], Awaitable[Response]]:
    async def read(resp: aiohttp.ClientResponse, where: str) -> Response:
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        length = resp.content_length
        # One buffer, handed over as is: a chunk list joined at the end would hold the body twice at
        # the peak (~30 MiB more for a 100k-series federation body), and bytes(buf) too. When the
        # length is known it is allocated once and filled in place: growing it by `+=` re-copied it
        # as it grew, ~10% of a federation cycle's CPU (py-spy on `python -m bench.federate_vs_vmagent`).
        body = (
            bytearray(length) if length is not None and not encoded and length <= max_bytes else bytearray()
        )
        size = 0
        async for chunk in capped_chunks(resp, where, max_bytes, batch_reads=batch_reads):
            end = size + len(chunk)
            if end <= len(body):
                body[size:end] = chunk
            else:
                body[size:] = chunk  # past the announced length, or no length: grow
            size = end
        if size < len(body):
            del body[size:]  # fewer bytes than announced (aiohttp raises first; kept for safety)
        return Response(resp.status, resp.headers, body)

    return read


async def capped_chunks(
    resp: aiohttp.ClientResponse, where: str, max_bytes: int, *, batch_reads: bool = False
) -> AsyncIterator[bytes]:
    """`resp`'s body as it arrives, under `max_bytes`: a Content-Length over it is refused up front, then
    the bytes read are counted (after decompression: a compressed length says little)."""
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    length = resp.content_length
    if length is not None and length > max_bytes and not encoded:
        resp.close()
        raise TransportError(
            f"{where}: Content-Length {length} is over the {format_size(max_bytes)} limit (max_response_bytes)",
            reason=FAIL_TOO_LARGE,
        )
    size = 0
    chunks = batched_chunks(resp, _READ_CHUNK) if batch_reads else resp.content.iter_chunked(_READ_CHUNK)
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            resp.close()
            raise TransportError(
                f"{where}: the response passed the {format_size(max_bytes)} limit (max_response_bytes)"
                + (" after decompression" if encoded else ""),
                reason=FAIL_TOO_LARGE,
            )
        yield chunk


def transport_error(
    exc: BaseException,
    where: str,
    cfg: HTTPClientOptions,
    *,
    https: bool,
    credentials: Credentials | None = None,
) -> TransportError | None:
    """The TransportError for a third-party exception, or None for one that is not ours to translate."""
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError, and aiohttp's Server/ConnectionTimeoutError
        return TransportError(
            f"{where}: no complete answer within the timeout of {format_duration(cfg.timeout)}",
            reason=FAIL_TIMEOUT,
        )
    tls_error = _tls_cause(exc)
    if tls_error is not None and credentials is not None:
        # The CA and client certificate are the credentials' (a kubeconfig's), not a `tls:` section's.
        cause = (
            tls_error.certificate_error
            if isinstance(tls_error, aiohttp.ClientConnectorCertificateError)
            else tls_error
        )
        what = (
            f"certificate verification failed: {cause.verify_message}"
            if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message
            else _first_line(cause)
        )
        return TransportError(
            redact(
                f"{where}: TLS failed: {what} (check the TLS settings of {credentials.describe()})",
                cfg,
                credentials,
            ),
            reason=FAIL_TLS,
        )
    if tls_error is not None:
        return TransportError(
            redact(f"{where}: TLS failed: {_tls_reason(tls_error, cfg.tls)}", cfg, credentials),
            reason=FAIL_TLS,
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(
            redact(
                f"{where}: the response body was cut short or malformed: {_first_line(exc)}", cfg, credentials
            ),
            reason=FAIL_BAD_RESPONSE,
        )
    if isinstance(exc, aiohttp.ClientResponseError):  # not valid HTTP, or too many redirects
        return TransportError(
            redact(f"{where}: bad HTTP response: {exc.message}", cfg, credentials), reason=FAIL_BAD_RESPONSE
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(
            f"{where}: cannot connect to {exc.host}:{exc.port}: {_os_reason(exc.os_error)}",
            reason=FAIL_UNREACHABLE,
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # Go and nginx send a certificate_required alert (reported as tls above); Python's asyncio TLS
        # servers just hang up after the handshake, which lands here.
        hint = _client_cert_hint(cfg.tls) if https else ""
        return TransportError(
            f"{where}: the server closed the connection without answering{hint}", reason=FAIL_UNREACHABLE
        )
    if https and isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET:
        # Under TLS 1.3 the client's handshake is over before the server checks its certificate; a Go
        # server (Prometheus) that refuses it closes with our request unread, and the kernel's reset
        # often overtakes its bad_certificate alert. Nothing tells that from another reset: say both.
        return TransportError(
            f"{where}: the server reset the connection{_client_cert_hint(cfg.tls)}", reason=FAIL_UNREACHABLE
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return TransportError(f"{where}: not a usable URL", reason=FAIL_UNREACHABLE)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransportError(
            redact(f"{where}: {_first_line(exc)}", cfg, credentials), reason=FAIL_UNREACHABLE
        )
    return None


def _tls_cause(exc: BaseException) -> BaseException | None:
    """The ssl error behind `exc`, if any: aiohttp wraps it in several ways depending on when it hit."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, ssl.SSLError | ssl.CertificateError | aiohttp.ClientSSLError):
            return cur
        os_error = getattr(cur, "os_error", None)
        if isinstance(os_error, ssl.SSLError | ssl.CertificateError):
            return os_error
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _tls_reason(exc: BaseException, tls: TLSConfig) -> str:
    """What went wrong in the handshake, and which `tls` setting to look at."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        exc = exc.certificate_error
    elif isinstance(exc, aiohttp.ClientSSLError) and isinstance(exc.os_error, ssl.SSLError):
        exc = exc.os_error
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verification failed: {exc.verify_message} ({_verify_hint(exc.verify_code, tls)})"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        if any(alert in exc.reason for alert in _CLIENT_CERT_ALERTS):
            if tls.cert_file is None:
                return (
                    f"{exc.reason}: the server refused the handshake, it wants a client certificate "
                    "(set tls.cert_file and tls.key_file)"
                )
            return (
                f"{exc.reason}: the server refused our client certificate {tls.cert_file} (is it signed by a "
                "CA the server trusts for clients, unexpired, and made for client auth?)"
            )
        if "WRONG_VERSION_NUMBER" in exc.reason:
            return f"{exc.reason}: the server did not answer in TLS (if it serves plain HTTP, use an http:// URL)"
        return exc.reason
    return _first_line(exc)


def _client_cert_hint(tls: TLSConfig) -> str:
    """For a TLS connection the server ended without a word: the client certificate is a likely cause."""
    if tls.cert_file is None:
        return " (if it requires a client certificate, set tls.cert_file and tls.key_file)"
    return (
        f" (a server that refuses our client certificate {tls.cert_file} may end the connection so: is it "
        "signed by a CA the server trusts for clients, unexpired, and made for client auth?)"
    )


def _verify_hint(code: int, tls: TLSConfig) -> str:
    """Which setting to check when the server's certificate does not verify (OpenSSL's `code`)."""
    if code in _UNTRUSTED_ISSUER:
        if tls.ca_file is None:
            return "tls.ca_file is not set, so only the system CAs are trusted: set it to the server's CA"
        return f"tls.ca_file {tls.ca_file} does not hold the CA that signed the server's certificate"
    if code in _NAME_MISMATCH:
        if tls.server_name:
            return f"tls.server_name {tls.server_name!r} is not a name in the server's certificate"
        return "the URL's host is not in the server's certificate: set tls.server_name to a name that is"
    return "check tls.ca_file and tls.server_name"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:  # (DNS errors have negative codes)
        return os.strerror(exc.errno)  # asyncio's strerror is "Connect call failed (...)": say why instead
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
    return text[:300]
