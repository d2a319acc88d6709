"""Where a cluster's remote-read stands: the end (ms, inclusive) of the last window durably queued.

One small JSON file per cluster, `<data_dir>/read_cursors/<cluster>.json`, replaced with
observe.atomic_file (a crash leaves the old or the new cursor). The next window starts right after it.

One cursor per cluster, not per selector: every `match` selector is one query of the same ReadRequest,
over the same window. Cursors per selector would let two overlapping selectors (`{job="a"}` and
`{__name__="up"}`) send a series they share once from each position, and the second send would reach the
receiver out of order. The selectors are recorded beside the cursor for people; changing them keeps the
position (the new selectors start where the old ones stopped, rather than re-reading `start_from`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

from observe.atomic_file import replace_bytes
from observe.errors import QueueError

__all__ = ["ReadCursor"]

_VERSION: Final = 1
log = logging.getLogger("observe.sources.read_cursor")


class ReadCursor:
    """`load()` and `save(end_ms)` one cluster's remote-read position."""

    def __init__(self, directory: Path, cluster: str, *, sync: bool = True) -> None:
        self.path = Path(directory) / f"{cluster}.json"
        self._sync = sync

    def load(self) -> int | None:
        """The saved position, or None for a first start (or an unreadable file, said once)."""
        try:
            doc = json.loads(self.path.read_bytes())
            end_ms = doc["end_ms"]
            if doc.get("version") != _VERSION or type(end_ms) is not int:
                raise ValueError(f"version {doc.get('version')!r}, end_ms {end_ms!r}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A cursor we cannot read is a first start (start_from back), never a crash: said, not hidden.
            log.error("remote-read cursor unreadable; starting afresh", extra={"path": str(self.path), "error": str(exc)})
            return None
        return end_ms

    def save(self, end_ms: int, *, selectors: list[str]) -> None:
        """Durably record that everything up to `end_ms` is in the queue; raises QueueError."""
        doc = {"version": _VERSION, "end_ms": end_ms, "selectors": selectors}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_bytes(self.path, json.dumps(doc, sort_keys=True).encode(), sync=self._sync)
        except OSError as exc:
            raise QueueError(f"remote-read cursor {self.path}: cannot write: {exc.strerror or exc}") from exc
