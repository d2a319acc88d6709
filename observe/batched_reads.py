"""A response body read in batches: the kernel wakes the collector once per batch, not once per write.

Prometheus' remote-read handler writes and flushes one frame per series (`StreamChunkedReadResponses`
in storage/remote/chunked.go), a few hundred bytes each: a 30k-series reply is ~30k writes. A reader that
takes each one as it lands is woken thousands of times a reply, and every wake-up is a trip through the
event loop, aiohttp's parser and a coroutine. With `SO_RCVLOWAT` the kernel reports the socket readable
only once `low_water` bytes are queued (Linux: socket(7), tcp_poll).

Measured against a real Prometheus 2.42 (30k series, a 30s window, `python -m bench.remote_read_source`,
two runs): the collector's CPU to receive one reply fell from 239-274 to 32-41 ms (wake-ups 1290-1884 ->
55-62) and the source's by 10-21% on loopback, where a write to a socket whose reader is asleep in epoll
also pays for waking it.

The kernel knows nothing of HTTP framing, so the tail of a reply, under `low_water`, would never be
reported on a kept-alive connection. A timer lowers the mark to one byte once `quiet` seconds pass with
nothing read, and Linux reports the socket at once if bytes are queued (tcp_set_rcvlowat calls
tcp_data_ready); the next read raises it again. The mark is back to one byte before the connection
returns to aiohttp's pool, so the next request on it is read as usual.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp

LOW_WATER: Final = 256 * 1024  # bytes queued before a wake-up; ~300 wake-ups for a 30k-series reply
QUIET: Final = 0.01  # seconds with nothing read before the mark drops to one byte (the reply's tail)

# Only where the kernel wakes a reader when the mark is lowered (Linux); elsewhere a tail could wait.
_SO_RCVLOWAT: Final[int | None] = getattr(socket, "SO_RCVLOWAT", None) if sys.platform == "linux" else None


class _Mark:
    """The low-water mark on one connection's socket, and the timer that lowers it when the reply is quiet."""

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop, low_water: int, quiet: float) -> None:
        self._sock, self._loop = sock, loop
        self._low_water, self._quiet = low_water, quiet
        self._high = False
        self._last = 0.0  # monotonic time of the last read
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    @classmethod
    def attach(cls, resp: aiohttp.ClientResponse, low_water: int, quiet: float) -> _Mark | None:
        """A mark on `resp`'s socket, or None: no socket option here, or the body was all read already."""
        conn = resp.connection
        if _SO_RCVLOWAT is None or conn is None or conn.transport is None:
            return None
        sock = conn.transport.get_extra_info("socket")
        if sock is None:
            return None
        mark = cls(sock, asyncio.get_running_loop(), low_water, quiet)
        conn.add_callback(mark.release)  # before the connection goes back to the pool, or is closed
        return mark

    def read(self) -> None:
        """Bytes were read: wait for a batch again."""
        self._last = time.monotonic()
        if self._done or self._high:
            return
        if self._set(self._low_water):
            self._high = True
            if self._timer is None:
                self._timer = self._loop.call_later(self._quiet, self._check)

    def release(self) -> None:
        """The reply is over (read, abandoned or the connection closed): one byte wakes the reader again."""
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._high:
            self._set(1)
            self._high = False

    def _check(self) -> None:
        self._timer = None
        if self._done or not self._high:
            return
        idle = time.monotonic() - self._last
        if idle < self._quiet:
            self._timer = self._loop.call_later(self._quiet - idle, self._check)
            return
        self._set(1)  # the kernel reports the socket now if anything is queued
        self._high = False

    def _set(self, value: int) -> bool:
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVLOWAT, value)
        except OSError:  # the connection is gone: nothing left to wake for
            self._done = True
            return False
        return True


async def batched_chunks(
    resp: aiohttp.ClientResponse, chunk_size: int, *, low_water: int = LOW_WATER, quiet: float = QUIET
) -> AsyncIterator[bytes]:
    """`resp`'s body in chunks of up to `chunk_size`, the socket read in batches of `low_water` bytes."""
    mark = _Mark.attach(resp, low_water, quiet)
    try:
        async for chunk in resp.content.iter_chunked(chunk_size):
            if mark is not None:
                mark.read()
            yield chunk
    finally:
        if mark is not None:
            mark.release()
