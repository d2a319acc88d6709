"""The one reply table (observe/replies.py): each status's decision and reason, in one table-driven test."""

from __future__ import annotations

import pytest

from observe.errors import PermanentError, RetryableError
from observe.reasons import (
    FAIL_AUTH,
    FAIL_BAD_RESPONSE,
    FAIL_HTTP_4XX,
    FAIL_HTTP_5XX,
    FAIL_THROTTLED,
    FAIL_TOO_LARGE,
)
from observe.replies import LOKI_PUSH, REPLIES, classify

RETRY, PERMANENT = True, False

# status: (the shared table, Loki push's) as (retryable, reason)
CASES = {
    429: ((RETRY, FAIL_THROTTLED), (RETRY, FAIL_THROTTLED)),
    500: ((RETRY, FAIL_HTTP_5XX), (RETRY, FAIL_HTTP_5XX)),
    503: ((RETRY, FAIL_HTTP_5XX), (RETRY, FAIL_HTTP_5XX)),
    599: ((RETRY, FAIL_HTTP_5XX), (RETRY, FAIL_HTTP_5XX)),
    401: ((PERMANENT, FAIL_AUTH), (RETRY, FAIL_AUTH)),  # Loki's one difference
    403: ((PERMANENT, FAIL_AUTH), (RETRY, FAIL_AUTH)),
    413: ((PERMANENT, FAIL_TOO_LARGE), (PERMANENT, FAIL_TOO_LARGE)),
    400: ((PERMANENT, FAIL_HTTP_4XX), (PERMANENT, FAIL_HTTP_4XX)),
    404: ((PERMANENT, FAIL_HTTP_4XX), (PERMANENT, FAIL_HTTP_4XX)),
    409: ((PERMANENT, FAIL_HTTP_4XX), (PERMANENT, FAIL_HTTP_4XX)),
    100: ((PERMANENT, FAIL_BAD_RESPONSE), (PERMANENT, FAIL_BAD_RESPONSE)),
    302: ((PERMANENT, FAIL_BAD_RESPONSE), (PERMANENT, FAIL_BAD_RESPONSE)),
    304: ((PERMANENT, FAIL_BAD_RESPONSE), (PERMANENT, FAIL_BAD_RESPONSE)),
    600: ((PERMANENT, FAIL_BAD_RESPONSE), (PERMANENT, FAIL_BAD_RESPONSE)),  # not HTTP
}


@pytest.mark.parametrize("status", sorted(CASES))
def test_each_status_has_one_decision_and_reason(status: int) -> None:
    shared, loki = CASES[status]
    for table, want in ((REPLIES, shared), (LOKI_PUSH, loki)):
        reply = classify(status, table)
        assert (reply.retryable, reply.reason) == want
        assert reply.why and "\n" not in reply.why
        error = reply.error("msg", status=status, retry_after=5.0)
        assert isinstance(error, RetryableError if reply.retryable else PermanentError)
        assert (error.reason, error.status) == (reply.reason, status)
        assert getattr(error, "retry_after", None) == (5.0 if reply.retryable else None)


def test_loki_push_is_the_shared_table_with_one_row_in_front() -> None:
    assert LOKI_PUSH[1:] == REPLIES
    assert classify(401) == REPLIES[2] and classify(401, LOKI_PUSH) == LOKI_PUSH[0]
