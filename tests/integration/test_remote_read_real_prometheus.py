"""observe.protocol.remote_read and xor_chunk against a real Prometheus 2.42 (`POST /api/v1/read`).

Exact samples go in through the remote-write receiver (a stale marker, NaN payloads, ±Inf, -0.0
included) and must come back bit for bit from both response types, with the server's external labels
merged in. The schema in tests/remote_read_pb.py is checked against the descriptors compiled into the
binary itself. `OBSERVE_RECORD_FIXTURES=1` rewrites tests/data/remote_read_streamed_2.42.* from this run.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from observe.model import STALE_NAN_BITS, Labels
from observe.protocol import remote_write
from observe.protocol.remote_read import (
    REQUEST_HEADERS,
    SAMPLES,
    STREAMED_CONTENT_TYPE,
    STREAMED_XOR_CHUNKS,
    ChunkedReadDecoder,
    ChunkedReadResponse,
    Query,
    decode_chunked_body,
    decode_read_response,
    encode_read_request,
)
from observe.protocol.series_selector import parse_selector
from observe.protocol.xor_chunk import ENCODING_XOR, decode_xor, encode_xor, is_decodable
from tests import remote_read_pb
from tests.servers import Server, require_binary, start_prometheus

pytestmark = pytest.mark.real_server

DATA = Path(__file__).resolve().parent.parent / "data"
EXTERNAL = {"cluster": "ext-a", "region": "eu-1"}
CONFIG = "global:\n  external_labels:\n" + "".join(f"    {k}: {v}\n" for k, v in EXTERNAL.items())


def _bits(v: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", v))[0])


def _float(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _written(now_ms: int) -> dict[Labels, list[tuple[int, int]]]:
    """Series to write: labels -> [(timestamp_ms, value bits)], all in the last ~10 minutes."""
    start = now_ms - 600_000
    gauge_values = [0.0, -0.0, 1.5, float("inf"), float("-inf"), 1e-300, -2.5e300, 42.0, 42.0, 7.25]
    gauge = [
        (start + i * 1000 + (i * 7919) % 13, _bits(gauge_values[i % len(gauge_values)])) for i in range(299)
    ]
    gauge.append((start + 299 * 1000 + 3, 0x7FF8000000000ABC))  # a NaN with a payload
    gauge.append((start + 300 * 1000, STALE_NAN_BITS))  # the staleness marker
    counter = [(start + i * 2000, _bits(float(i * i // 3))) for i in range(250)]
    other = [(start + i * 5000, _bits(1.0)) for i in range(5)]
    return {
        (("__name__", "rr_gauge"), ("instance", "a"), ("job", "rr")): gauge,
        (("__name__", "rr_counter_total"), ("job", "rr")): counter,
        (("__name__", "rr_other"), ("job", "other")): other,
    }


def _write(server: Server, series: dict[Labels, list[tuple[int, int]]]) -> None:
    body = remote_write.encode_write_request(
        remote_write.encode_series_samples(
            remote_write.encode_labels(labels), [(_float(b), t) for t, b in samples]
        )
        for labels, samples in series.items()
    )
    req = urllib.request.Request(
        server.url + "/api/v1/write",
        data=remote_write.compress(body),
        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204, resp.status


def _read(server: Server, body: bytes, headers: dict[str, str] | None = None) -> tuple[dict[str, str], bytes]:
    req = urllib.request.Request(
        server.url + "/api/v1/read",
        data=body,
        headers=dict(REQUEST_HEADERS if headers is None else headers),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        return {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def _with_external(labels: Labels) -> Labels:
    return tuple(sorted({**dict(labels), **EXTERNAL}.items()))


@pytest.fixture(scope="module")
def prom(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[Labels, list[tuple[int, int]]]]]:
    server = start_prometheus(tmp_path_factory.mktemp("prom-rr"), CONFIG, remote_write_receiver=True)
    try:
        series = _written(int(time.time() * 1000))
        _write(server, series)
        yield server, series
    finally:
        server.stop()


def _window(series: dict[Labels, list[tuple[int, int]]]) -> tuple[int, int]:
    ts = [t for samples in series.values() for t, _ in samples]
    return min(ts), max(ts)


def _streamed_samples(messages: list[ChunkedReadResponse]) -> dict[int, dict[Labels, list[tuple[int, int]]]]:
    """query index -> labels -> [(t, bits)], joining a series' consecutive frames; checks each chunk."""
    out: dict[int, dict[Labels, list[tuple[int, int]]]] = {}
    for msg in messages:
        for s in msg.series:
            got = out.setdefault(msg.query_index, {}).setdefault(s.labels, [])
            for c in s.chunks:
                assert c.type == ENCODING_XOR and is_decodable(c.type)
                ts, vs = decode_xor(c.data)
                assert (ts[0], ts[-1]) == (c.min_time_ms, c.max_time_ms)  # max_time_ms is inclusive
                assert encode_xor(ts, vs) == c.data  # our encoder writes what Prometheus' appender wrote
                got.extend(zip(ts, map(_bits, vs), strict=True))
    return out


def test_streamed_and_samples_return_exactly_what_was_written(
    prom: tuple[Server, dict[Labels, list[tuple[int, int]]]],
) -> None:
    server, series = prom
    lo, hi = _window(series)
    queries = [
        Query(lo, hi, parse_selector('{__name__=~"rr_.+",job="rr"}')),
        Query(lo, hi, parse_selector('rr_other{job="other"}')),
    ]
    expected = {
        0: {_with_external(k): v for k, v in series.items() if dict(k)["job"] == "rr"},
        1: {_with_external(k): v for k, v in series.items() if dict(k)["job"] == "other"},
    }

    headers, body = _read(server, encode_read_request(queries, [STREAMED_XOR_CHUNKS, SAMPLES]))
    assert headers["content-type"] == STREAMED_CONTENT_TYPE
    assert "content-encoding" not in headers  # not snappy
    messages = decode_chunked_body(body)
    assert all(len(m.series) == 1 for m in messages)  # one series per frame
    streamed = _streamed_samples(messages)
    assert streamed == expected
    # The series of a query arrive sorted by their labels.
    assert [s.labels for m in messages if m.query_index == 0 for s in m.series] == sorted(expected[0])

    headers, body = _read(server, encode_read_request(queries, [SAMPLES, STREAMED_XOR_CHUNKS]))
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["content-encoding"] == "snappy"
    results = decode_read_response(body)
    assert len(results) == 2
    # SAMPLES loses the sign of -0.0: gogo's proto3 marshaller omits a double that == 0, and -0.0 == 0, so
    # it arrives as the default +0.0. Every other bit pattern (NaN payloads, the stale marker) survives.
    neg_zero = _bits(-0.0)
    lossy = {
        i: {k: [(t, 0 if b == neg_zero else b) for t, b in v] for k, v in e.items()}
        for i, e in expected.items()
    }
    assert any(b == neg_zero for v in expected[0].values() for _, b in v)
    for i, result in enumerate(results):
        assert {labels: [(t, _bits(v)) for v, t in samples] for labels, samples in result} == lossy[i]

    if os.environ.get("OBSERVE_RECORD_FIXTURES") == "1":
        _, body = _read(server, encode_read_request(queries[:1], [STREAMED_XOR_CHUNKS]))
        (DATA / "remote_read_streamed_2.42.bin").write_bytes(body)
        (DATA / "remote_read_streamed_2.42.json").write_text(
            json.dumps(
                [
                    {"labels": list(map(list, k)), "samples": [[t, f"{b:016x}"] for t, b in v]}
                    for k, v in sorted(expected[0].items())
                ],
                indent=1,
            )
            + "\n"
        )


def test_no_accepted_types_means_samples_and_headers_are_optional(
    prom: tuple[Server, dict[Labels, list[tuple[int, int]]]],
) -> None:
    server, series = prom
    lo, hi = _window(series)
    headers, body = _read(
        server, encode_read_request([Query(lo, hi, parse_selector("rr_other"))], []), headers={}
    )
    assert headers["content-encoding"] == "snappy"
    [[(labels, samples)]] = decode_read_response(body)
    assert labels == _with_external((("__name__", "rr_other"), ("job", "other")))
    assert len(samples) == 5


def test_external_label_matchers(prom: tuple[Server, dict[Labels, list[tuple[int, int]]]]) -> None:
    """An EQ matcher on an external label's own value matches every series; another value matches none."""
    server, series = prom
    lo, hi = _window(series)
    queries = [
        Query(lo, hi, parse_selector('{job="rr",cluster="ext-a"}')),
        Query(lo, hi, parse_selector('{job="rr",cluster="ext-b"}')),
    ]
    _, body = _read(server, encode_read_request(queries, [SAMPLES]))
    results = decode_read_response(body)
    assert len(results[0]) == 2
    assert results[1] == []


def test_a_series_spans_frames_when_over_the_frame_limit(tmp_path: Path) -> None:
    """With --storage.remote.read-max-bytes-in-frame=512 a 300-sample series comes in several frames of the
    same labels; fed a few bytes at a time, the incremental decoder gives the same messages."""
    server = start_prometheus(
        tmp_path,
        CONFIG,
        remote_write_receiver=True,
        extra_args=["--storage.remote.read-max-bytes-in-frame=512"],
    )
    try:
        series = _written(int(time.time() * 1000))
        _write(server, series)
        lo, hi = _window(series)
        _, body = _read(
            server,
            encode_read_request([Query(lo, hi, parse_selector('rr_gauge{job="rr"}'))], [STREAMED_XOR_CHUNKS]),
        )
    finally:
        server.stop()
    messages = decode_chunked_body(body)
    assert len(messages) > 1
    assert len({s.labels for m in messages for s in m.series}) == 1
    assert _streamed_samples(messages) == {
        0: {_with_external(k): v for k, v in series.items() if dict(k)["__name__"] == "rr_gauge"}
    }
    decoder = ChunkedReadDecoder()
    fed: list[ChunkedReadResponse] = []
    for i in range(0, len(body), 7):
        fed += decoder.feed(body[i : i + 7])
    decoder.close()
    assert fed == messages


def _binary_descriptors() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The gzipped FileDescriptorProtos gogo/protobuf registers, found in the prometheus binary."""
    data = Path(shutil.which("prometheus") or require_binary("prometheus")).read_bytes()
    found: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    magic = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # Go's gzip header
    i = data.find(magic)
    while i >= 0:
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[i : i + 1 << 18])
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if fd.package == "prometheus":
                found[fd.name] = fd
        except (zlib.error, gzip.BadGzipFile, Exception):  # most hits are not descriptors
            pass
        i = data.find(magic, i + 1)
    return found


def _shape(fd: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    return {
        m.name: (
            {f.name: (f.number, f.type, f.label) for f in m.field},
            {e.name: {v.name: v.number for v in e.value} for e in m.enum_type},
        )
        for m in fd.message_type
    }


def test_reference_schema_matches_the_binarys_descriptors() -> None:
    require_binary("prometheus")
    compiled: dict[str, Any] = {}
    for fd in _binary_descriptors().values():
        compiled.update(_shape(fd))
    assert "ChunkedReadResponse" in compiled, "no prompb descriptors found in the prometheus binary"
    ours = _shape(remote_read_pb.file_descriptor())
    for name, (fields, enums) in ours.items():
        bin_fields, bin_enums = compiled[name]
        assert {k: bin_fields[k] for k in fields} == fields, name  # TimeSeries: ours omits 3 and 4
        assert bin_enums == enums, name
