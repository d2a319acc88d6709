"""Every `reason` label value observe exports, as constants: a reason is never a free-form string.

`DROP_*` label `observe_dropped_samples_total{reason}` (data lost on purpose, each counted);
`FAIL_*` label `observe_pull_failures_total{reason}` and `observe_send_failures_total{reason}` (a pull or a
send that failed, to be retried or reported). Sources, sinks, the queue and the HTTP layer raise with
these; only `observe.telemetry` counts them.
"""

from __future__ import annotations

from typing import Final

# Drop reasons (label `reason` of observe_dropped_*_total). Constants, not literals scattered around.
DROP_QUEUE_FULL: Final = "queue_full"  # the queue hit queue.max_bytes; its oldest segment went
DROP_TOO_OLD: Final = "too_old"  # older than queue.max_age: the receiver would reject it anyway
DROP_PERMANENT_ERROR: Final = (
    "permanent_error"  # the receiver answered 4xx (not 429): it will never accept it
)
DROP_QUEUE_ERROR: Final = "queue_error"  # the queue could not store it (disk full with nothing older to drop, I/O)
DROP_CORRUPT: Final = "corrupt"  # a queue record failed its checksum (torn write after a crash)
DROP_OUT_OF_ORDER: Final = "out_of_order"  # a sample not newer than the last one sent for its series
DROP_LINE_TOO_LONG: Final = "line_too_long"  # a log line over logs.max_line_bytes: Loki would reject it
DROP_LABEL_LIMITS: Final = "label_limits"  # a log stream over Loki's label limits (count, name/value length)
DROP_RELABEL: Final = "relabel"  # log entries of streams dropped on purpose by relabel_configs (not logged)

# Failure reasons of a pull or a send (label `reason`).
FAIL_UNREACHABLE: Final = "unreachable"
FAIL_TIMEOUT: Final = "timeout"
FAIL_HTTP_4XX: Final = "http_4xx"
FAIL_HTTP_5XX: Final = "http_5xx"
FAIL_THROTTLED: Final = "throttled"  # 429
FAIL_AUTH: Final = "auth"  # 401/403
FAIL_TOO_LARGE: Final = "too_large"
FAIL_BAD_RESPONSE: Final = "bad_response"  # HTML, non-exposition, non-JSON, truncated body
FAIL_TLS: Final = "tls"
FAIL_INTERNAL: Final = "internal"  # a sink raised something other than a SinkError: a bug, retried
FAIL_BAD_SELECTOR: Final = "bad_selector"  # Loki refused a log selector (400): a config error
FAIL_IO: Final = "io"  # the local store could not write (disk full, permissions): retried, the queue keeps it
FAIL_BAD_PAYLOAD: Final = "bad_payload"  # a queue record the local store cannot decode: dropped
