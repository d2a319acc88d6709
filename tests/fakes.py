"""Test fakes shared across the suite: a Sink that records what it is sent and fails on demand, and a
TCP server that answers one HTTP request with whatever bytes a test needs (broken HTTP on demand)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from observe.errors import RetryableError
from observe.reasons import FAIL_HTTP_5XX


class RecordingSink:
    """A `Sink` that fails its first `fail_times` calls with `error`, then accepts everything.

    `fail` (payload, attempt number from 1) -> exception or None decides per call instead, for
    failures tied to a payload. Every send yields to the loop (sleeping `delay`) so concurrent sends
    overlap and `max_in_flight` shows how many ran at once. `events` is the order of ("start"|"end",
    payload) across all sends.
    """

    def __init__(
        self,
        name: str = "recording",
        *,
        fail_times: int = 0,
        error: BaseException | None = None,
        fail: Callable[[bytes, int], BaseException | None] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.fail_times = fail_times
        self.error = (
            error if error is not None else RetryableError("fake 503", reason=FAIL_HTTP_5XX, status=503)
        )
        self.fail = fail
        self.delay = delay
        self.sent: list[bytes] = []  # accepted payloads, in the order they were accepted
        self.attempts: list[bytes] = []  # every call, in call order
        self.events: list[tuple[str, bytes]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    async def send(self, payload: bytes) -> None:
        self.attempts.append(payload)
        attempt = len(self.attempts)
        self.events.append(("start", payload))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            error = self.fail(payload, attempt) if self.fail is not None else None
            if error is None and attempt <= self.fail_times:
                error = self.error
            if error is not None:
                raise error
            self.sent.append(payload)
        finally:
            self.in_flight -= 1
            self.events.append(("end", payload))

    async def close(self) -> None:
        self.closed = True


async def raw_http_server(reply: bytes | None) -> tuple[asyncio.Server, str]:
    """A server on 127.0.0.1 that reads one request's head, writes `reply` verbatim (None: never answers,
    waits for the client to give up) and closes. Returns it (the caller closes it) and its base URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if reply is None:
                await reader.read()  # until the client gives up and closes
            else:
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
