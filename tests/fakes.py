"""Test fakes shared across the suite: a Sink that records what it is sent and fails on demand, a TCP
server that answers one HTTP request with whatever bytes a test needs (broken HTTP on demand), and an
HTTP proxy that injects faults in front of a real (or fake) receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

import aiohttp

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


@dataclass(frozen=True)
class Fault:
    """What `FaultProxy` does with one request.

    pass        forward it and relay the receiver's reply
    status      answer `status` itself (with `headers`); the receiver never sees the request
    drop        close the connection without an answer; the receiver never sees the request
    lose_reply  forward it, then close the connection instead of relaying the reply: the request
                arrived, and the sender cannot know (the case at-least-once delivery duplicates)
    """

    kind: Literal["pass", "status", "drop", "lose_reply"]
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()


PASS = Fault("pass")
DROP = Fault("drop")
LOSE_REPLY = Fault("lose_reply")


def answer(status: int, **headers: str) -> Fault:
    return Fault("status", status, tuple((k.replace("_", "-"), v) for k, v in headers.items()))


@dataclass
class Exchange:
    """One request through the proxy: its body, the fault applied, and the receiver's status if forwarded."""

    body: bytes
    fault: Fault
    upstream_status: int | None = None

    @property
    def acknowledged(self) -> bool:
        """The receiver answered 2xx and the sender got that answer."""
        return (
            self.fault.kind == "pass"
            and self.upstream_status is not None
            and 200 <= self.upstream_status < 300
        )

    @property
    def arrived(self) -> bool:
        """The receiver took the request (2xx), whether or not the sender heard so."""
        return self.upstream_status is not None and 200 <= self.upstream_status < 300


@dataclass
class FaultProxy:
    """A minimal HTTP/1.1 proxy on 127.0.0.1 in front of `upstream` (keep-alive, Content-Length bodies).

    `decide(n, body)` picks the `Fault` for the n-th request (from 1). Every request is recorded in
    `exchanges`. `await start()` returns the proxy's base URL; `await stop()` closes it.
    """

    upstream: str
    decide: Callable[[int, bytes], Fault]
    exchanges: list[Exchange] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _session: aiohttp.ClientSession | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
        if self._session is not None:
            await self._session.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    method, target, headers = _parse_head(head)
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed its keep-alive connection
                exchange = Exchange(body, self.decide(len(self.exchanges) + 1, body))
                self.exchanges.append(exchange)
                fault = exchange.fault
                if fault.kind == "drop":
                    return
                if fault.kind == "status":
                    writer.write(_response(fault.status, b"injected fault\n", "text/plain", fault.headers))
                    await writer.drain()
                    continue
                status, reply, ctype = await self._forward(method, target, headers, body)
                exchange.upstream_status = status
                if fault.kind == "lose_reply":
                    return
                writer.write(_response(status, reply, ctype, ()))
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, str]:
        assert self._session is not None
        hop = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
        forwarded = {k: v for k, v in headers.items() if k not in hop}
        async with self._session.request(
            method, self.upstream + target, headers=forwarded, data=body
        ) as resp:
            return resp.status, await resp.read(), resp.headers.get("Content-Type", "text/plain")


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, target, headers with lower-case names) of an HTTP/1.1 request head."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _response(status: int, body: bytes, ctype: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body
