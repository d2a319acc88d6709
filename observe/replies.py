"""What a non-2xx HTTP status means, decided once for every source and sink.

The rule is Prometheus' (`storage/remote/client.go`: 5xx and 429 are recoverable, every other status
is not) and OpenTelemetry's (`exporterhelper`: errors carry their retry decision). One table, read top
to bottom, first match wins:

    status     decision    reason        why
    429        retry       throttled     the server sheds load: back off, at least as long as Retry-After asks
    500-599    retry       http_5xx      the server (or a proxy in front) failed, not the request
    401, 403   permanent   auth          the credentials are refused: resending the same request cannot help
    413        permanent   too_large     over the server's body limit: this request will never fit
    400-499    permanent   http_4xx      the server refused the request itself (bad data, out of order, 404)
    other      permanent   bad_response  1xx/3xx after redirects: what answered is not the server we speak to

Loki push reads 401/403 differently (`LOKI_PUSH`, one row in front of the table): a refused tenant or
token is fixed by a person, and dropping would lose every entry until then, so it retries, slowly.

Callers build their own messages (each names its protocol and what to check) and act on the decision:
a sink raises `error(...)`, a source raises `SourceError(..., reason=reply.reason)` and lets its next
cycle retry whatever the decision says.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Final

from observe.errors import PermanentError, RetryableError
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_HTTP_4XX,
    FAIL_HTTP_5XX,
    FAIL_THROTTLED,
    FAIL_TOO_LARGE,
)

__all__ = ["LOKI_PUSH", "REPLIES", "Reply", "classify"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One row: the statuses it covers, whether the same request may succeed later, and why."""

    statuses: Container[int]
    retryable: bool
    reason: str  # a FAIL_* constant of observe.reasons
    why: str  # one line, for people reading the table (and its test)

    def error(
        self, message: str, *, status: int, retry_after: float | None = None
    ) -> RetryableError | PermanentError:
        """The sink error for this row; a permanent one ignores `retry_after` (nothing will be retried)."""
        if self.retryable:
            return RetryableError(message, reason=self.reason, status=status, retry_after=retry_after)
        return PermanentError(message, reason=self.reason, status=status)


REPLIES: Final[tuple[Reply, ...]] = (
    Reply(
        frozenset({429}), True, FAIL_THROTTLED,
        "the server sheds load: back off, at least as long as Retry-After asks",
    ),
    Reply(range(500, 600), True, FAIL_HTTP_5XX, "the server (or a proxy in front) failed, not the request"),
    Reply(
        frozenset({401, 403}), False, FAIL_AUTH,
        "the credentials are refused: resending the same request cannot help",
    ),
    Reply(frozenset({413}), False, FAIL_TOO_LARGE, "over the server's body limit: this request will never fit"),
    Reply(
        range(400, 500), False, FAIL_HTTP_4XX,
        "the server refused the request itself (bad data, out of order, not found)",
    ),
)  # fmt: skip
_OTHER: Final = Reply(
    range(0), False, FAIL_BAD_RESPONSE, "1xx/3xx after redirects: what answered is not the server we speak to"
)

LOKI_PUSH: Final[tuple[Reply, ...]] = (
    Reply(
        frozenset({401, 403}), True, FAIL_AUTH,
        "Loki refuses the tenant or token, not the data: retry slowly rather than drop every entry until fixed",
    ),
    *REPLIES,
)  # fmt: skip


def classify(status: int, table: Sequence[Reply] = REPLIES) -> Reply:
    """The first row of `table` covering `status` (not a 2xx: that is the caller's success)."""
    for reply in table:
        if status in reply.statuses:
            return reply
    return _OTHER
