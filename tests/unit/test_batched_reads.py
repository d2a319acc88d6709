"""observe.batched_reads against a server that writes its reply as Prometheus' remote-read handler does: one
small frame per send (per series), over a kept-alive HTTP/1.1 connection, plain and over TLS."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from observe import batched_reads
from observe.batched_reads import LOW_WATER, batched_chunks
from observe.config import HTTPClientConfig, TLSConfig
from observe.http import fetch, new_session
from tests.unit.test_http import PKI, _server_ssl, pki  # noqa: F401  (pki: the module-scoped fixture)

pytestmark = pytest.mark.skipif(batched_reads._SO_RCVLOWAT is None, reason="SO_RCVLOWAT is Linux's")


@dataclass(frozen=True)
class Reply:
    """`frames` chunks of `frame` bytes, each its own send(); then, after `pause` seconds, `tail`."""

    frames: int
    frame: bytes = b"f" * 300
    pause: float = 0.0
    tail: bytes = b"tail"

    @property
    def body(self) -> bytes:
        return self.frame * self.frames + self.tail


class FrameServer:
    """HTTP/1.1 on 127.0.0.1 in a thread of its own: the n-th request on a connection gets replies[n], its
    chunks written one send() each with TCP_NODELAY (as Go's net/http writes after every Flush)."""

    def __init__(self, replies: list[Reply], tls: ssl.SSLContext | None = None) -> None:
        self.replies, self.tls = replies, tls
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self._listener.accept()
        except OSError:
            return
        self.connections += 1
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
        conn.settimeout(10)
        with conn:
            buf = b""
            for reply in self.replies:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
                chunk = b"%x\r\n%s\r\n" % (len(reply.frame), reply.frame)
                for _ in range(reply.frames):
                    conn.sendall(chunk)
                threading.Event().wait(reply.pause)
                conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(reply.tail), reply.tail))

    def close(self) -> None:
        self._listener.close()
        self._thread.join(10)


@pytest.fixture
def frame_server() -> Iterator[list[FrameServer]]:
    servers: list[FrameServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_the_whole_body_and_a_tail_after_a_pause_then_the_connection_is_read_as_usual(
    scheme: str,
    frame_server: list[FrameServer],
    pki: PKI,  # noqa: F811
) -> None:
    # A tail smaller than the mark, after a pause, on a kept-alive connection: without the quiet timer the
    # kernel never reports it and the request times out. The second reply, on the same connection, read
    # without batching, would wait the same way if the mark had been left on the socket.
    first, second = Reply(frames=3000, pause=0.3), Reply(frames=0, pause=0.3, tail=b"0123456789")
    tls = _server_ssl(pki) if scheme == "https" else None
    server = FrameServer([first, second], tls)
    frame_server.append(server)
    cfg = HTTPClientConfig(url=server.url, timeout=5.0, tls=TLSConfig(ca_file=str(pki.ca)))
    async with new_session(cfg) as session:
        got = await fetch(session, "POST", server.url + "/api/v1/read", cfg=cfg, max_bytes=1 << 24,
                          data=b"q", batch_reads=True)  # fmt: skip
        again = await fetch(
            session, "POST", server.url + "/api/v1/read", cfg=cfg, max_bytes=1 << 24, data=b"q"
        )
    assert (got.status, bytes(got.body)) == (200, first.body)
    assert (again.status, bytes(again.body)) == (200, second.body)
    assert server.connections == 1  # the second request reused the connection the first one batched


async def test_the_socket_wakes_the_reader_once_per_batch(frame_server: list[FrameServer]) -> None:
    reply = Reply(frames=4000, pause=0.0)  # 1.2 MB in 4000 sends
    server = FrameServer([reply])
    frame_server.append(server)
    cfg = HTTPClientConfig(url=server.url, timeout=10.0)
    marks: list[int] = []
    chunks: list[bytes] = []
    async with new_session(cfg) as session, session.post(server.url, data=b"q") as resp:
        assert resp.connection is not None and resp.connection.transport is not None
        sock = resp.connection.transport.get_extra_info("socket")
        # quiet=2s: only the mark decides when the reader wakes, so the count does not depend on timing
        async for chunk in batched_chunks(resp, 1 << 20, quiet=2.0):
            chunks.append(chunk)
            marks.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))
        after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    assert b"".join(chunks) == reply.body
    assert LOW_WATER in marks and after == 1
    # Unbatched, a reader of these sends is woken up to 4000 times; batched, about once per LOW_WATER bytes
    # (aiohttp hands a woken reader's bytes over in pieces of up to 64 KiB).
    assert len(chunks) <= 2 * len(reply.body) // 65536 + 4, len(chunks)


async def test_without_the_socket_option_the_body_is_read_as_usual(
    frame_server: list[FrameServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batched_reads, "_SO_RCVLOWAT", None)
    reply = Reply(frames=500, pause=0.1)
    server = FrameServer([reply])
    frame_server.append(server)
    cfg = HTTPClientConfig(url=server.url, timeout=5.0)
    async with new_session(cfg) as session:
        got = await fetch(
            session, "POST", server.url, cfg=cfg, max_bytes=1 << 24, data=b"q", batch_reads=True
        )
    assert bytes(got.body) == reply.body
