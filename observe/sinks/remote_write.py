"""The remote-write sink: one HTTP POST of a snappy-compressed `WriteRequest` to a central receiver.

Spec: https://prometheus.io/docs/concepts/remote_write_spec/ (remote write 1.0). Receivers: Thanos Receive
`/api/v1/receive` (tenant header `THANOS-TENANT`), Prometheus `/api/v1/write`, Mimir/Cortex
`/api/v1/push` (`X-Scope-OrgID`), VictoriaMetrics `/api/v1/write`.

The sink only sends: the payload is already encoded and compressed (observe.protocol.remote_write), and
retry, backoff and queueing wrap every sink the same way in the delivery layer. `send` does exactly one
request and classifies the reply by raising `RetryableError` or `PermanentError` by the one table in
observe/replies.py, as Prometheus' `storage/remote/client.go` does: 5xx and 429 are recoverable, every
other non-2xx is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import aiohttp

from observe import __version__
from observe.config import RemoteWriteConfig
from observe.errors import RetryableError, SinkError
from observe.http import TransportError, fetch, parse_retry_after, safe_url
from observe.reasons import FAIL_AUTH, FAIL_BAD_RESPONSE, FAIL_THROTTLED, FAIL_TOO_LARGE
from observe.replies import classify

__all__ = ["RemoteWriteSink"]

# The receiver's error text goes into the error (and so the one log line per drop). 512 characters hold
# a receiver's message (Prometheus: "out of order sample"; VictoriaMetrics prefixes ~80 characters of
# request context) and bound what a proxy's HTML error page adds.
_ERROR_TEXT_CHARS = 512
# Receivers answer with an empty body or a line of text; 1 MiB bounds a misbehaving proxy's page.
_MAX_RESPONSE_BYTES = 2**20
# What the message adds after "HTTP <status>" for a reason (5xx and other 4xx: the receiver's text says it).
_SAYS: Final = {
    FAIL_THROTTLED: " (throttled)",  # Thanos/Mimir limits: the delivery layer backs off
    FAIL_AUTH: " (unauthorized)",  # wrong credentials for this receiver or tenant
    FAIL_TOO_LARGE: " (request too large)",  # lower max_samples_per_send
    FAIL_BAD_RESPONSE: ": not a remote-write receiver reply",  # a 1xx/3xx: something else is in the way
}


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
        """The error for a non-2xx reply: the decision and reason from observe.replies, the message here."""
        reply = classify(status)
        where = f"remote write to {self._safe_url}: HTTP {status}{_SAYS.get(reply.reason, '')}"
        text = body.decode("utf-8", errors="replace").strip()[:_ERROR_TEXT_CHARS]
        detail = f": {text}" if text else ""
        return reply.error(
            where + detail, status=status, retry_after=parse_retry_after(headers.get("Retry-After"))
        )
