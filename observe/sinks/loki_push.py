"""The Loki push sink: one `POST /loki/api/v1/push` per queue record to the central Loki.

API: https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs
The body is already encoded (observe/protocol/loki_push.py): snappy-block protobuf `PushRequest` with
`Content-Type: application/x-protobuf` (as Promtail sends it, no Content-Encoding), or JSON with
`application/json`; the record's tag byte says which. The tenant goes in `X-Scope-OrgID`.

The sink only sends and classifies the reply (observe/replies.py, with Loki's one difference: a refused
tenant or token is retried slowly, not dropped); retry, backoff and drop accounting are the delivery
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
from observe.reasons import FAIL_AUTH, FAIL_BAD_RESPONSE, FAIL_THROTTLED
from observe.replies import LOKI_PUSH, classify

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
        """The error for a non-2xx reply, by observe.replies' table with Loki's own 401/403 row."""
        reply = classify(status, LOKI_PUSH)
        text = body_snippet(body, _ERROR_CHARS)
        where = f"{self._where}: HTTP {status}" + (f": {text}" if text else "")
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if reply.reason == FAIL_THROTTLED and self._on_throttled is not None:
            self._on_throttled()  # ingestion rate limit: counted per cluster by the service
        elif reply.reason == FAIL_AUTH:
            # A person or a token rotation fixes a refused credential: no faster than AUTH_RETRY_FLOOR.
            # The backlog stays bounded: the pipeline stops pulling at half a queue and the cluster's own
            # Loki keeps the rest.
            retry_after = max(retry_after or 0.0, AUTH_RETRY_FLOOR)
        elif reply.reason == FAIL_BAD_RESPONSE:
            # a redirect or a proxy in the way; a POST must not be silently re-sent elsewhere
            where += " (not a Loki push reply)"
        # (400: Loki has stored the request's valid entries already; 413: lower logs.push_batch_bytes)
        return reply.error(where, status=status, retry_after=retry_after)
