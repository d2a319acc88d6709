"""Every error `observe` raises on purpose, in one tree.

    ObserveError
     ├── ConfigError            bad config: the CLI exits 2; `problems` lists every one, each with its YAML path
     ├── TransportError         no usable HTTP response (timeout, refused, TLS, over the size cap); defined
     │                          in observe/http.py, the one place aiohttp's exceptions are translated, and
     │                          turned into a SourceError or a RetryableError by the caller
     ├── SourceError            one cluster's pull failed (unreachable, 401, HTML, truncated, too big, timeout)
     │                          -> that cluster's cycle fails, the others go on
     ├── SinkError              a send to the centre failed; carries its own retry decision
     │    ├── RetryableError    5xx, 429, transport errors: retry with backoff, `retry_after` is a floor
     │    └── PermanentError    other 4xx (400, 409, 413...): count, log once, drop the batch
     └── QueueError             the on-disk queue is unusable (disk full, permissions)

Third-party exceptions (aiohttp, OSError) are translated into this tree at exactly one boundary per
component, always with `raise ... from exc`.
"""

from __future__ import annotations


class ObserveError(Exception):
    """Base of every error `observe` raises on purpose."""


class ConfigError(ObserveError):
    """The configuration is invalid; `problems` holds every problem found, each naming its YAML path."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SourceError(ObserveError):
    """A pull from one cluster failed. `reason` is a short stable token used as a metric label."""

    def __init__(self, message: str, *, reason: str = "error") -> None:
        self.reason = reason
        super().__init__(message)


class SinkError(ObserveError):
    """A send to a central receiver failed. `reason` is a short stable token used as a metric label."""

    def __init__(self, message: str, *, reason: str = "error", status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(message)


class RetryableError(SinkError):
    """The same request may succeed later (5xx, 429, transport). `retry_after` seconds is a floor, if given."""

    def __init__(
        self, message: str, *, reason: str = "error", status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, reason=reason, status=status)
        self.retry_after = retry_after


class PermanentError(SinkError):
    """The receiver will never accept this request (400, 409, other 4xx): drop it and count why."""


class QueueError(ObserveError):
    """The durable queue cannot be used (disk full, bad permissions, unreadable directory)."""
