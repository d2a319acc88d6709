"""Human forms of durations and sizes: `30s`, `1h30m`, `500ms`; `64MiB`, `2GiB`, `10MB`, `1024`."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Prometheus-style duration (`1h30m`, `500ms`); a bare number is seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text!r}")
        return float(text)
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError(f"duration must not be negative: {text!r}")
        return value
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration (use forms like 30s, 5m, 1h30m, 500ms): {text!r}")
    return total


def parse_size(text: str | int) -> int:
    """Bytes in a size (`64MiB`, `2GiB`, `10MB`); a bare number is bytes."""
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text!r}")
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size (use forms like 512MiB, 2GiB, 10MB): {text!r}")
    return int(float(m.group(1)) * _SIZE_FACTOR[(m.group(2) or "b").lower()])


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for whole seconds (`90` -> `1m30s`); used in generated files."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or "0s"


def format_size(n: int) -> str:
    """A byte count in the largest binary unit that divides it (`1MiB`), with the exact bytes otherwise."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"
