"""What one remote-read request costs the source Prometheus, by how it is read and by its window, in one run.

    .venv/bin/python -m bench.remote_read_source [--series 30000] [--window 30] [--requests 8] [--rounds 2]
        [--windows 30,60,90,120,300] [--pulls 5]

One real Prometheus 2.42 holds `--series` series of 25 minutes of 15s samples (the label sets and writer of
bench/remote_read_vs_federate.py). The same remote-read request (streamed XOR chunks, a `--window`
second window inside the data, so the source trims the open head chunk as in a steady cycle) is sent
`--requests` times through `observe.http.fetch`, with the body read as it lands and read in batches,
alternating for `--rounds` rounds. Per request: the source's CPU (user and system, from /proc), this
process' CPU and voluntary context switches (getrusage), and the wall time. Prometheus writes and flushes
one frame per series, so the reply is ~`--series` writes; on loopback a write to a socket whose reader
sleeps in epoll also pays for waking it, which batching avoids, so the source's system time falls too.
A `/federate` pull of every series (gzip, written 4 KiB at a time) is read both ways too.

Then the source's cost by window length, the choice behind `remote_read.min_window`: `--pulls` GETs of
`/federate` (gzip, as observe and vmagent ask), one sample per series each, against batched remote-read
requests of each of `--windows` (window / 15s samples per series each). Prometheus pays per series per
request (the index, the labels, decoding and re-encoding the open head chunk), whatever the window holds,
so the cost per sample falls as the window grows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench.remote_read_vs_federate import EXTERNAL, SCRAPE_MS, SELECT_ALL, Data
from observe.config import HTTPClientOptions
from observe.http import fetch, new_session
from observe.protocol.remote_read import REQUEST_HEADERS, STREAMED_XOR_CHUNKS, Query, encode_read_request
from observe.protocol.series_selector import parse_selector
from observe.sources.prometheus_federate import ACCEPT
from tests.servers import Server, start_prometheus

_TICK = os.sysconf("SC_CLK_TCK")


def _source_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


FEDERATE = None  # in a list of request bodies: a GET of /federate (gzip, as observe and vmagent ask)


async def _requests(server: Server, bodies: list[bytes | None], batch: bool) -> int:
    cfg = HTTPClientOptions(timeout=120.0)
    session = new_session(cfg)
    size = 0
    federate = server.url + "/federate?" + urllib.parse.urlencode({"match[]": SELECT_ALL})
    try:
        for body in bodies:
            if body is FEDERATE:
                resp = await fetch(session, "GET", federate, cfg=cfg, max_bytes=1 << 30, headers={"Accept": ACCEPT},
                                   batch_reads=batch)  # fmt: skip
            else:
                resp = await fetch(session, "POST", server.url + "/api/v1/read", cfg=cfg, max_bytes=1 << 30,
                                   headers=REQUEST_HEADERS, data=body, batch_reads=batch)  # fmt: skip
            if resp.status != 200:
                raise RuntimeError(f"the source answered {resp.status}: {bytes(resp.body[:200])!r}")
            size = len(resp.body)
    finally:
        await session.close()
    return size


def measure(server: Server, bodies: list[bytes | None], batch: bool) -> dict[str, float]:
    asyncio.run(_requests(server, bodies[:1], batch))  # a warm-up request: the source's caches, our imports
    pid, n = server.proc.pid, len(bodies)
    (u0, s0), r0, t0 = _source_cpu(pid), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    size = asyncio.run(_requests(server, bodies, batch))
    (u1, s1), r1, t1 = _source_cpu(pid), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {
        "bytes": size, "source_user": (u1 - u0) / n, "source_sys": (s1 - s0) / n, "collector": own / n,
        "switches": (r1.ru_nvcsw - r0.ru_nvcsw) / n, "wall": (t1 - t0) / n,
    }  # fmt: skip


def federate_pull_cpu(server: Server, pulls: int) -> float:
    """The source's CPU seconds per `/federate` pull of every series (gzip, as observe and vmagent ask)."""
    url = server.url + "/federate?" + urllib.parse.urlencode({"match[]": SELECT_ALL})
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
    urllib.request.urlopen(request, timeout=120).read()  # warm-up
    u0, s0 = _source_cpu(server.proc.pid)
    for _ in range(pulls):
        with urllib.request.urlopen(request, timeout=120) as resp:
            resp.read()
    u1, s1 = _source_cpu(server.proc.pid)
    return (u1 + s1 - u0 - s0) / pulls


def _bodies(start_ms: int, window_ms: int, n: int) -> list[bytes | None]:
    """`n` requests of one window each, four different windows in turn, from `start_ms` on."""
    return [
        encode_read_request([Query(s + 1, s + window_ms, parse_selector(SELECT_ALL))], [STREAMED_XOR_CHUNKS])
        for s in (start_ms + (i % 4) * window_ms for i in range(n))
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", type=int, default=30_000)
    p.add_argument("--window", type=float, default=30.0, help="seconds of samples one request covers")
    p.add_argument("--requests", type=int, default=8, help="requests per measurement")
    p.add_argument("--rounds", type=int, default=2, help="measurements of each way, alternating")
    p.add_argument("--windows", default="30,60,90,120,300", help="window lengths (s) of the cost sweep")
    p.add_argument("--pulls", type=int, default=5, help="federate pulls to time the source's cost per pull")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="observe-bench-reads-") as tmp:
        ext = "".join(f"    {k}: {v}\n" for k, v in EXTERNAL.items())
        server = start_prometheus(Path(tmp) / "source", f"global:\n  external_labels:\n{ext}",
                                  remote_write_receiver=True, name="source")  # fmt: skip
        try:
            data = Data(a.series)
            samples = 25 * 60_000 // SCRAPE_MS  # 100 samples: one head chunk (120 at most) holds them
            data.base_ms = int(time.time() * 1000) - (samples + 1) * SCRAPE_MS
            data.write(server, list(range(samples)))
            start = data.grid_ms(2)  # from near the start: every window lies inside the open head chunk
            bodies = _bodies(start, int(a.window * 1000), a.requests)
            pulls: list[bytes | None] = [FEDERATE] * a.requests
            print(f"{data.series:,} series; {a.requests} requests per row (ms per request): remote-read of a "
                  f"{a.window:g}s window, and /federate; the reply read as it lands, or in batches")  # fmt: skip
            print(f"{'request':12s} {'reply':>8s} {'source user':>12s} {'source sys':>11s} {'collector':>10s} "
                  f"{'switches':>9s} {'wall':>7s}")  # fmt: skip
            ways = (("read-lands", bodies, False), ("read-batched", bodies, True),
                    ("fed-lands", pulls, False), ("fed-batched", pulls, True))  # fmt: skip
            for _ in range(a.rounds):
                for name, requests, batch in ways:
                    m = measure(server, requests, batch)
                    print(f"{name:12s} {m['bytes'] / 1e6:6.1f}MB {m['source_user'] * 1e3:12.0f} "
                          f"{m['source_sys'] * 1e3:11.0f} {m['collector'] * 1e3:10.0f} {m['switches']:9.0f} "
                          f"{m['wall'] * 1e3:7.0f}", flush=True)  # fmt: skip
            per_pull = federate_pull_cpu(server, a.pulls)
            print(f"\nthe source's cost by window (batched reads); /federate: {per_pull * 1e3:.0f} ms per pull "
                  f"of {data.series:,} samples")  # fmt: skip
            print(
                f"{'window':>7s} {'samples/series':>15s} {'source ms/request':>18s} {'per sample vs /federate':>24s}"
            )
            for window in (float(w) for w in a.windows.split(",")):
                m = measure(server, _bodies(start, int(window * 1000), a.requests), True)
                cpu = m["source_user"] + m["source_sys"]
                per_series = window * 1000 / SCRAPE_MS
                print(f"{window:6.0f}s {per_series:15.0f} {cpu * 1e3:18.0f} {cpu / per_series / per_pull:23.2f}x",
                      flush=True)  # fmt: skip
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
