"""The Loki push sink: one `POST /loki/api/v1/push` per queue record to the central Loki.

API: https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs
The body is already encoded (observe/protocol/loki_push.py): snappy-block protobuf `PushRequest` with
`Content-Type: application/x-protobuf` (as Promtail sends it, no Content-Encoding), or JSON with
`application/json`; the record's tag byte says which. The tenant goes in `X-Scope-OrgID`.

The sink only sends and classifies the reply; retry, backoff and drop accounting are the delivery
layer's (observe/sinks/delivery.py), the same for every sink. Loki answers 204 on success and plain
text on errors; that text goes into the error, so the one log line per distinct rejection shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import aiohttp

from observe.config import LokiPushConfig
from observe.errors import PermanentError, RetryableError
from observe.http import TransportError, body_snippet, fetch, parse_retry_after, safe_url
from observe.protocol.loki_push import payload_body
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_HTTP_4XX,
    FAIL_HTTP_5XX,
    FAIL_THROTTLED,
    FAIL_TOO_LARGE,
)

__all__ = ["AUTH_RETRY_FLOOR", "LokiPushSink"]

# Loki's 400 lists every rejected entry, one line each: 5,000 "too far behind" lines are ~1 MiB.
_MAX_REPLY_BYTES: Final = 8 * 2**20
_ERROR_CHARS: Final = 512
# A refused credential is fixed by a person or a token rotation, not by hammering: retry slowly.
AUTH_RETRY_FLOOR: Final = 30.0


class LokiPushSink:
    """Sends one queue record per `send`. The aiohttp session is the caller's to close.

    `on_throttled` is called on every 429 (the service counts them per cluster).
    """

    name = "loki_push"

    def __init__(
        self,
        cfg: LokiPushConfig,
        session: aiohttp.ClientSession,
        *,
        on_throttled: Callable[[], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._session = session
        self._url = cfg.url
        self._where = f"loki push to {safe_url(cfg.url)}"
        self._tenant = {"X-Scope-OrgID": cfg.tenant} if cfg.tenant else {}
        self._on_throttled = on_throttled

    async def send(self, payload: bytes) -> None:
        """POST one record; raise RetryableError or PermanentError unless Loki answered 2xx."""
        try:
            body, content_type = payload_body(payload)
        except ValueError as exc:
            # a record this sink did not write (a queue from another version): it can never be sent
            raise PermanentError(f"{self._where}: {exc}", reason=FAIL_BAD_RESPONSE) from exc
        headers = {**self._tenant, "Content-Type": content_type}
        try:
            resp = await fetch(
                self._session,
                "POST",
                self._url,
                cfg=self._cfg,
                max_bytes=_MAX_REPLY_BYTES,
                headers=headers,
                data=body,
            )
        except TransportError as exc:
            # refused, reset, timed out, TLS: Loki may be restarting or overloaded; the record is intact
            raise RetryableError(f"{self._where}: {exc}", reason=exc.reason) from exc
        if 200 <= resp.status < 300:
            return
        raise self._classify(resp.status, resp.headers, resp.body)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    def _classify(
        self, status: int, headers: Mapping[str, str], body: bytes | bytearray
    ) -> RetryableError | PermanentError:
        text = body_snippet(body, _ERROR_CHARS)
        where = f"{self._where}: HTTP {status}" + (f": {text}" if text else "")
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if status == 429:
            # ingestion rate limit: Loki sheds load; back off at least as long as it asks
            if self._on_throttled is not None:
                self._on_throttled()
            return RetryableError(where, reason=FAIL_THROTTLED, status=status, retry_after=retry_after)
        if status >= 500:
            # Loki (or its gateway) failed, not the data: the same body may be accepted later
            return RetryableError(where, reason=FAIL_HTTP_5XX, status=status, retry_after=retry_after)
        if status in (401, 403):
            # The credentials or tenant are refused, not the data: dropping would lose every entry until
            # someone fixes a token. The backlog stays bounded: the pipeline stops pulling at half a queue
            # and the cluster's own Loki keeps the rest.
            return RetryableError(
                where, reason=FAIL_AUTH, status=status, retry_after=max(retry_after or 0.0, AUTH_RETRY_FLOOR)
            )
        if status == 413:
            # over the server's body limit: lower logs.push_batch_bytes
            return PermanentError(where, reason=FAIL_TOO_LARGE, status=status)
        if 400 <= status < 500:
            # the entries themselves are refused (too old, too far behind, line too long, bad labels);
            # Loki has stored the valid entries of the request already
            return PermanentError(where, reason=FAIL_HTTP_4XX, status=status)
        # 1xx/3xx: a redirect or a proxy in the way; a POST must not be silently re-sent elsewhere
        return PermanentError(f"{where} (not a Loki push reply)", reason=FAIL_BAD_RESPONSE, status=status)
