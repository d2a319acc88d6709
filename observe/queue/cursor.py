"""The queue's acknowledged position: the lowest seq not yet acked, in one small file replaced atomically.

Replaced with observe.atomic_file (temporary file, fsync, rename, fsync of the directory), so a crash
leaves either the old or the new cursor, never half of one. It lags the in-memory position by design (see
`durable.CURSOR_PERSIST_INTERVAL`): delivery is at-least-once, and a lagging cursor only re-sends.

Functions here raise plain `OSError`; `durable.py` translates them into `QueueError` at one place.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

from observe.atomic_file import replace_bytes

CURSOR_FILE: Final = "cursor"
_VERSION: Final = 1

log = logging.getLogger("observe.queue")


def read_cursor(directory: Path) -> int:
    """The persisted lowest unacked seq, or 0 (replay everything) when absent or unreadable."""
    path = directory / CURSOR_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    try:
        data = json.loads(text)
        value = data["next_unacked"]
        if data.get("version") != _VERSION or not isinstance(value, int) or value < 0:
            raise ValueError(f"unexpected content {text[:100]!r}")
    except (ValueError, KeyError, TypeError) as exc:
        # rename is atomic, so this is damage from outside: re-sending everything is the safe direction.
        log.warning(
            "queue cursor unreadable, replaying the whole queue", extra={"path": str(path), "error": str(exc)}
        )
        return 0
    return value


def write_cursor(directory: Path, next_unacked: int, *, sync: bool) -> None:
    """Replace the cursor file (observe.atomic_file); `sync=False` for the queue's `fsync: never`."""
    data = json.dumps({"version": _VERSION, "next_unacked": next_unacked}).encode()
    replace_bytes(directory / CURSOR_FILE, data, sync=sync)
