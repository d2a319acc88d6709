"""Sinks only send. Queueing, retry and backoff wrap every sink the same way (see `delivery.py`).

A sink's `send` does one request and classifies the reply by raising `RetryableError` (5xx, 429,
transport) or `PermanentError` (other 4xx); returning normally means the receiver acknowledged it.
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    """The one seam to a central receiver."""

    name: str
    """Short stable name used as the `sink` metric label: `remote_write`, `loki_push`, `local_store`."""

    async def send(self, payload: bytes) -> None:
        """Deliver one queue record's payload, already encoded for this sink. Raise a SinkError on failure."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
