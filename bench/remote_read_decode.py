"""Decode speed of a real Prometheus 2.42 remote-read response, streamed XOR chunks vs SAMPLES.

Writes 1000 series x 200 samples (15s scrape with ms jitter; a third counters, gauges, constants) into a
real Prometheus through its remote-write receiver, reads them back both ways, and times our decoding of
the bodies (best of 5), and the whole window step a cycle runs, in Python and with the C accelerator.
Run: `.venv/bin/python -m bench.remote_read_decode` (needs `prometheus` on PATH).
"""

from __future__ import annotations

import random
import tempfile
import time
import urllib.request
from pathlib import Path

from observe.protocol import remote_write
from observe.protocol.remote_read import (
    REQUEST_HEADERS,
    SAMPLES,
    STREAMED_XOR_CHUNKS,
    Query,
    decode_chunked_body,
    decode_read_response,
    encode_read_request,
)
from observe.protocol.series_selector import parse_selector
from observe.protocol.xor_chunk import decode_xor
from observe.sources.prometheus_remote_read import native, python_streamed_window, streamed_window
from tests.servers import start_prometheus


def _post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return bytes(resp.read())


def _best(fn: object, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best


def main(nseries: int = 1000, per_series: int = 200) -> None:
    rnd = random.Random(1)
    start = int(time.time() * 1000) - per_series * 15_000 - 60_000
    entries = []
    for s in range(nseries):
        t, v, samples = start + rnd.randrange(15_000), float(rnd.randrange(1000)), []
        for _ in range(per_series):
            samples.append((v, t))
            t += 15_000 + rnd.choice((0, 0, 0, 1, -1, 2, -3, 5))
            if s % 3 == 0:
                v += rnd.randrange(50)
            elif s % 3 == 1:
                v = rnd.random() * 100
        labels = (
            ("__name__", f"bench_metric_{s % 20}"),
            ("instance", f"10.0.{s // 250}.{s % 250}:9100"),
            ("job", "bench"),
        )
        entries.append(remote_write.encode_series_samples(remote_write.encode_labels(labels), samples))
    with tempfile.TemporaryDirectory() as tmp:
        server = start_prometheus(Path(tmp), remote_write_receiver=True)
        try:
            _post(
                server.url + "/api/v1/write",
                remote_write.compress(b"".join(entries)),
                {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
            )
            q = [Query(start, start + per_series * 16_000, parse_selector('{job="bench"}'))]
            streamed = _post(
                server.url + "/api/v1/read",
                encode_read_request(q, [STREAMED_XOR_CHUNKS]),
                dict(REQUEST_HEADERS),
            )
            samples_body = _post(
                server.url + "/api/v1/read", encode_read_request(q, [SAMPLES]), dict(REQUEST_HEADERS)
            )
        finally:
            server.stop()

    total = nseries * per_series
    messages = decode_chunked_body(streamed)
    chunks = [c.data for m in messages for s in m.series for c in s.chunks]
    assert sum(len(decode_xor(c)[0]) for c in chunks) == total
    t_frames = _best(lambda: decode_chunked_body(streamed))
    t_xor = _best(lambda: [decode_xor(c) for c in chunks])
    t_samples = _best(lambda: decode_read_response(samples_body))
    print(
        f"{total:,} samples in {nseries} series; streamed body {len(streamed):,} B in {len(messages)} frames, "
        f"{len(chunks)} chunks; SAMPLES body {len(samples_body):,} B (snappy)"
    )
    print(
        f"streamed: frames+protobuf {total / t_frames:,.0f} samples/s, XOR decode {total / t_xor:,.0f} samples/s, "
        f"together {total / (t_frames + t_xor):,.0f} samples/s"
    )
    print(f"SAMPLES:  snappy+protobuf {total / t_samples:,.0f} samples/s")
    end = start + per_series * 16_000
    t_python = _best(lambda: python_streamed_window(streamed, start - 1, end))
    line = f"window (what a cycle calls): Python {total / t_python:,.0f} samples/s"
    if native is not None:
        t_native = _best(lambda: streamed_window(streamed, start - 1, end))
        line += f", C accelerator {total / t_native:,.0f} samples/s ({t_python / t_native:.0f}x)"
    else:
        line += " (the C accelerator is not built here)"
    print(line)


if __name__ == "__main__":
    main()
