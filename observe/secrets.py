"""Secrets read from files or the environment, never from the config text.

Kubernetes rotates projected service-account tokens in place, so a file secret is re-read when its
mtime or size changes (checked on every use: one `stat`, cheaper than a request). A secret's value
never reaches `repr`, logs, errors or `/status`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from observe.errors import ConfigError


@dataclass(eq=False)
class Secret:
    """A secret from a file (re-read on change) or an environment variable. `repr` shows only its origin."""

    path: Path | None = None
    env: str | None = None
    # ((inode, mtime_ns, ctime_ns, size), value): the inode catches Kubernetes' symlink swap of a rotated
    # Secret, ctime a same-size rewrite within one mtime tick.
    _cache: tuple[tuple[int, int, int, int], str] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # guards _cache

    def __post_init__(self) -> None:
        if (self.path is None) == (self.env is None):
            raise ValueError("a secret comes from exactly one of a file or an environment variable")

    @property
    def origin(self) -> str:
        """Where the secret comes from, safe to show: `file /x/token` or `env TOKEN`."""
        return f"file {self.path}" if self.path is not None else f"env {self.env}"

    def __repr__(self) -> str:
        return f"Secret({self.origin})"

    def value(self) -> str:
        """The current value; a file is re-read when it changed. Trailing newlines are stripped."""
        if self.env is not None:
            val = os.environ.get(self.env)
            if val is None:
                raise ConfigError(f"secret {self.origin}: environment variable is not set")
            return val
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"secret {self.origin}: cannot read: {exc.strerror}") from exc
        stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        with self._lock:
            if self._cache is None or self._cache[0] != stamp:
                try:
                    text = self.path.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise ConfigError(f"secret {self.origin}: cannot read: {exc.strerror}") from exc
                self._cache = (stamp, text)
            return self._cache[1]
