"""Where each (cluster, selector) stands in its Loki: durable cursors for `query_range` tailing.

A cursor is the next query's `start` (inclusive, ns) and the keys of the entries *at exactly that
nanosecond* already emitted, so the next page can skip them (see `observe/sources/loki.py` for the rule). The
keys are 128-bit BLAKE2b digests of (stream labels, timestamp, line, structured metadata): 34 bytes of
JSON each, so even 10,000 entries sharing one nanosecond make a ~340 KB file, and a collision (2^-64
for a billion entries) is out of reach.

One small JSON file per (cluster, selector) under `<data_dir>/log_cursors/<cluster>/`, named by a hash
of the selector (the selector itself is inside, for people). Replaced with observe.atomic_file, so a
crash leaves the old or the new cursor, never half of one. A changed
selector is a new cursor: it starts from `logs.start_from`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from observe.atomic_file import replace_bytes
from observe.errors import QueueError
from observe.model import Labels

__all__ = ["Cursor", "CursorStore", "entry_key"]

_VERSION: Final = 1
log = logging.getLogger("observe.logs")


def entry_key(stream: Labels, ts: int, line: str, metadata: Labels) -> str:
    """The identity of an entry at the page boundary: never the line alone, which drops identical lines
    of different streams. \\x00 and \\x01 cannot occur in label names and separate the parts unambiguously
    enough for a digest (values and lines are length-prefixed)."""
    h = hashlib.blake2b(digest_size=16)
    for name, value in stream:
        h.update(f"{name}\x00{len(value)}\x00{value}\x01".encode("utf-8", "surrogatepass"))
    h.update(f"\x02{ts}\x02{len(line)}\x00".encode())
    h.update(line.encode("utf-8", "surrogatepass"))
    for name, value in metadata:
        h.update(f"\x03{name}\x00{len(value)}\x00{value}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@dataclass(frozen=True)
class Cursor:
    """Query from `start_ns` (inclusive), skipping the entries at `start_ns` whose keys are in `seen`."""

    start_ns: int
    seen: frozenset[str] = field(default_factory=frozenset)

    def advanced(self, start_ns: int, keys_at_start: Iterable[str]) -> Cursor:
        """The cursor after emitting entries up to `start_ns`; keeps `seen` if the start did not move."""
        keys = frozenset(keys_at_start)
        if start_ns == self.start_ns:
            keys = keys | self.seen
        return Cursor(start_ns, keys)


class CursorStore:
    """The cursors of one cluster. Filesystem errors become QueueError (the cursors are queue state)."""

    def __init__(self, directory: Path, cluster: str) -> None:
        self.directory = Path(directory) / cluster
        self.cluster = cluster
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"log cursors {self.directory}: cannot create: {exc.strerror}") from exc

    def path(self, selector: str) -> Path:
        return self.directory / (hashlib.sha256(selector.encode()).hexdigest()[:24] + ".json")

    def load(self, selector: str) -> Cursor | None:
        """The saved cursor, or None when there is none (or it is unreadable: logged, moved aside)."""
        path = self.path(selector)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise QueueError(f"log cursor {path}: cannot read: {exc.strerror}") from exc
        try:
            doc = json.loads(text)
            if doc.get("version") != _VERSION or doc.get("selector") != selector:
                raise ValueError(f"version {doc.get('version')!r}, selector {doc.get('selector')!r}")
            start = int(doc["start_ns"])
            seen = doc["seen"]
            if start < 0 or not isinstance(seen, list) or not all(isinstance(k, str) for k in seen):
                raise ValueError("bad start_ns or seen")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # rename is atomic, so this is damage from outside: keep the file for a person to look at
            aside = path.with_suffix(".corrupt")
            log.error(
                "log cursor unreadable, moved aside; the selector restarts from logs.start_from",
                extra={"cluster": self.cluster, "selector": selector, "path": str(path), "error": str(exc)},
            )
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            return None
        return Cursor(start, frozenset(seen))

    def save(self, selector: str, cursor: Cursor) -> None:
        """Replace the cursor atomically and durably."""
        path = self.path(selector)
        doc = {
            "version": _VERSION,
            "cluster": self.cluster,
            "selector": selector,
            "start_ns": str(cursor.start_ns),
            "seen": sorted(cursor.seen),
        }
        data = json.dumps(doc, separators=(",", ":")).encode()
        try:
            replace_bytes(path, data)
        except OSError as exc:
            raise QueueError(f"log cursor {path}: cannot write: {exc.strerror}") from exc
