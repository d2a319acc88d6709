"""The few types that flow through the data path.

Hot-path values are plain tuples, not dataclasses: a federation pull of 100k series makes 100k of them
per cycle, and tuple creation is ~3x cheaper than a frozen dataclass in CPython 3.11.
"""

from __future__ import annotations

import struct
from typing import Final, Literal

Labels = tuple[tuple[str, str], ...]
"""A label set sorted by name, `__name__` included: (("__name__", "up"), ("cluster", "a"), ...)."""

STALE_NAN_BITS: Final = 0x7FF0000000000002
"""Prometheus' staleness marker: a NaN with this exact bit pattern (model/value/value.go)."""
STALE_NAN_BYTES: Final = struct.pack("<Q", STALE_NAN_BITS)
"""The marker as it goes on the wire (protobuf doubles are little-endian)."""
STALE_NAN: Final[float] = struct.unpack("<d", STALE_NAN_BYTES)[0]
"""The marker as a Python float. Never do arithmetic on it (that may quieten the NaN); compare bits."""


def is_stale_nan(value: float) -> bool:
    """True only for the exact staleness-marker bits, not for any other NaN."""
    return struct.pack("<d", value) == STALE_NAN_BYTES


Signal = Literal["metrics", "logs"]
"""What a pipeline carries; the `signal` label of the queue and drop metrics, and a queue directory's name."""
METRICS: Final[Signal] = "metrics"
LOGS: Final[Signal] = "logs"
SIGNALS: Final[tuple[Signal, ...]] = (METRICS, LOGS)
