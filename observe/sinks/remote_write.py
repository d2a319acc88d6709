"""The remote-write sink: one HTTP POST of a snappy-compressed `WriteRequest` to a central receiver.

Spec: https://prometheus.io/docs/concepts/remote_write_spec/ (remote write 1.0). Receivers: Thanos Receive
`/api/v1/receive` (tenant header `THANOS-TENANT`), Prometheus `/api/v1/write`, Mimir/Cortex
`/api/v1/push` (`X-Scope-OrgID`), VictoriaMetrics `/api/v1/write`.

The sink only sends: the payload is already encoded and compressed (observe.protocol.remote_write), and
retry, backoff and queueing wrap every sink the same way in the delivery layer. `send` does exactly one
request and classifies the reply by raising `RetryableError` or `PermanentError`, as Prometheus'
`storage/remote/client.go` does: 5xx and 429 are recoverable, every other non-2xx is not.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from observe import __version__
from observe.config import RemoteWriteConfig
from observe.errors import PermanentError, RetryableError, SinkError
from observe.http import TransportError, fetch, parse_retry_after, safe_url
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_HTTP_4XX,
    FAIL_HTTP_5XX,
    FAIL_THROTTLED,
    FAIL_TOO_LARGE,
)

__all__ = ["RemoteWriteSink"]

# The receiver's error text goes into the error (and so the one log line per drop). 512 characters hold
# a receiver's message (Prometheus: "out of order sample"; VictoriaMetrics prefixes ~80 characters of
# request context) and bound what a proxy's HTML error page adds.
_ERROR_TEXT_CHARS = 512
# Receivers answer with an empty body or a line of text; 1 MiB bounds a misbehaving proxy's page.
_MAX_RESPONSE_BYTES = 2**20


class RemoteWriteSink:
    """Sends one compressed WriteRequest per `send` call.

    `session` should come from `observe.http.new_session(cfg)`: its connector carries the TLS settings.
    The session is the caller's to close.
    """

    name = "remote_write"

    def __init__(self, cfg: RemoteWriteConfig, session: aiohttp.ClientSession) -> None:
        self._cfg = cfg
        self._session = session
        self._safe_url = safe_url(cfg.url)
        # The config rejects these names in `cfg.headers` (see RemoteWriteConfig), as Prometheus does.
        headers: dict[str, str] = {}
        if cfg.tenant:
            headers[cfg.tenant_header_name()] = cfg.tenant
        headers["Content-Encoding"] = "snappy"
        headers["Content-Type"] = "application/x-protobuf"
        headers["X-Prometheus-Remote-Write-Version"] = "0.1.0"
        headers["User-Agent"] = f"observe/{__version__}"  # the spec requires one, whatever the session
        self._headers = headers

    async def send(self, payload: bytes) -> None:
        """POST `payload` (a snappy block of a WriteRequest) once; raise a SinkError unless it got a 2xx."""
        try:
            resp = await fetch(
                self._session,
                "POST",
                self._cfg.url,
                cfg=self._cfg,
                max_bytes=_MAX_RESPONSE_BYTES,
                headers=self._headers,
                data=payload,
            )
        except TransportError as exc:
            # timeout, refused/reset, TLS, unreadable token file: the receiver or the path to it may
            # recover (a restart, a rotated certificate or token), so retry; the reason says which
            raise RetryableError(f"remote write: {exc}", reason=exc.reason) from exc
        if 200 <= resp.status < 300:
            return
        raise self._classify(resp.status, resp.headers, resp.body)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    def _classify(self, status: int, headers: Mapping[str, str], body: bytes | bytearray) -> SinkError:
        where = f"remote write to {self._safe_url}: HTTP {status}"
        text = body.decode("utf-8", errors="replace").strip()[:_ERROR_TEXT_CHARS]
        detail = f": {text}" if text else ""
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if status == 429:
            # the receiver sheds load (Thanos/Mimir limits): back off at least as long as it asks
            return RetryableError(
                f"{where} (throttled){detail}", reason=FAIL_THROTTLED, status=status, retry_after=retry_after
            )
        if 500 <= status < 600:
            # the receiver failed, not the data: the same request may succeed later
            return RetryableError(
                f"{where}{detail}", reason=FAIL_HTTP_5XX, status=status, retry_after=retry_after
            )
        if status in (401, 403):
            # credentials are wrong for this receiver/tenant: resending the same request cannot help
            return PermanentError(f"{where} (unauthorized){detail}", reason=FAIL_AUTH, status=status)
        if status == 413:
            # the batch is over the receiver's size limit: lower max_samples_per_send
            return PermanentError(
                f"{where} (request too large){detail}", reason=FAIL_TOO_LARGE, status=status
            )
        if 400 <= status < 500:
            # 400/409: the receiver rejected the data itself (out of order, bad labels); it never will
            return PermanentError(f"{where}{detail}", reason=FAIL_HTTP_4XX, status=status)
        # 1xx/3xx left after aiohttp's redirect handling: something in the way is not a remote-write receiver
        return PermanentError(
            f"{where}: not a remote-write receiver reply{detail}", reason=FAIL_BAD_RESPONSE, status=status
        )

