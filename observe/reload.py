"""Reload the config while running: on SIGHUP, and when the file changes on disk.

Kubernetes updates a mounted ConfigMap in place by swapping a symlink (`..data`), so the file's identity
(inode, size, mtime of what the path resolves to) is polled every `poll` seconds; an editor's write or a
`kubectl apply` shows the same way. A new config goes through the loader exactly as at start-up, then
`FleetDiscovery.set_base` (the inventories read again, then `Collector.reconfigure`): clusters added, changed or removed apply live. A config with a mistake (or a
change only a restart can apply) is refused, said once with every problem and its YAML path, and the
running config stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from observe.config import load_config
from observe.discovery.runner import FleetDiscovery
from observe.errors import ConfigError

__all__ = ["ConfigWatcher"]

log = logging.getLogger("observe.reload")


class ConfigWatcher:
    def __init__(self, path: Path, fleet: FleetDiscovery, *, poll: float = 2.0) -> None:
        self.path = Path(path)
        self.fleet = fleet
        self.poll = poll
        self._hup = asyncio.Event()
        self._seen = self._identity()

    def hup(self) -> None:
        """SIGHUP: reload now, changed or not."""
        self._hup.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait(stop), self.poll)
            if stop.is_set():
                return
            identity = self._identity()
            if self._hup.is_set() or identity != self._seen:
                why = "SIGHUP" if self._hup.is_set() else "the file changed"
                self._hup.clear()
                self._seen = identity
                await self.reload(why)

    async def reload(self, why: str) -> bool:
        """Load and apply the file; False (and the problems logged) if refused."""
        try:
            cfg = load_config(self.path, for_service=True)
            report = await self.fleet.set_base(cfg)
        except ConfigError as exc:
            log.error(
                "config reload refused; the running config stays",
                extra={"path": str(self.path), "why": why, "problems": exc.problems},
            )
            return False
        log.info(
            "config reloaded",
            extra={"path": str(self.path), "why": why, "added": report.added, "changed": report.changed,
                   "removed": report.removed},
        )  # fmt: skip
        return True

    async def _wait(self, stop: asyncio.Event) -> None:
        hup, stopped = asyncio.ensure_future(self._hup.wait()), asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({hup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (hup, stopped):
                waiter.cancel()
            await asyncio.gather(hup, stopped, return_exceptions=True)

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the symlink: a ConfigMap swap changes the inode
        except OSError:
            return None  # gone for a moment (mid-swap): compared again at the next poll
        return (st.st_ino, st.st_size, st.st_mtime_ns)
