"""observe.protocol.remote_read, xor_chunk and series_selector: round trips against the `protobuf` library,
the plain reference XOR decoder, real bytes recorded from Prometheus 2.42, and every malformed input."""

from __future__ import annotations

import ast
import json
import random
import struct
from pathlib import Path
from types import ModuleType

import cramjam
import pytest

from observe.model import STALE_NAN_BITS
from observe.protocol import remote_read as rr
from observe.protocol import series_selector, xor_chunk
from observe.protocol.protobuf_wire import varint
from observe.protocol.remote_read import (
    Chunk,
    ChunkedReadDecoder,
    ChunkedReadResponse,
    ChunkedSeries,
    FrameReader,
    Query,
    ReadHints,
    RemoteReadFormatError,
)
from observe.protocol.series_selector import MATCH_EQ, MATCH_NEQ, MATCH_NRE, MATCH_RE, Matcher, parse_selector
from observe.protocol.xor_chunk import XorChunkError, decode_xor, encode_xor
from tests import remote_read_pb as pb
from tests.xor_reference import decode_reference

DATA = Path(__file__).resolve().parent.parent / "data"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def f(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


def b(v: float) -> int:
    return int.from_bytes(struct.pack(">d", v), "big")


# -- __all__ ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [rr, xor_chunk, series_selector])
def test_all_is_exactly_the_public_names(module: ModuleType) -> None:
    """Every public name the module defines at top level is in `__all__`, and nothing else is."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    public = {n for n in defined if not n.startswith("_")} - {"realistic_chunks"}  # a bench/test helper
    assert set(module.__all__) == public


# -- XOR chunks ------------------------------------------------------------------------------------

SPECIAL = [
    STALE_NAN_BITS,
    0x7FF8000000000000,  # the usual quiet NaN
    0x7FF8000000000ABC,  # quiet NaN with a payload
    0xFFF0000000000001,  # negative signalling NaN
    b(float("inf")),
    b(float("-inf")),
    b(-0.0),
    b(0.0),
    b(5e-324),
    b(1.7976931348623157e308),
]


def roundtrip(ts: list[int], bits: list[int]) -> bytes:
    chunk = encode_xor(ts, [f(x) for x in bits])
    got_t, got_v = decode_xor(chunk)
    assert got_t == ts
    assert [b(v) for v in got_v] == bits
    assert decode_reference(chunk) == list(zip(ts, bits, strict=True))
    return chunk


@pytest.mark.parametrize("n", [1, 2, 3, 120])
def test_xor_round_trip_lengths(n: int) -> None:
    rnd = random.Random(n)
    ts = [1_700_000_000_000 + i * 15_000 + rnd.randrange(-5, 6) for i in range(n)]
    roundtrip(ts, [b(rnd.random() * 1000) for _ in range(n)])


def test_xor_special_values_survive_bit_for_bit() -> None:
    bits = SPECIAL + SPECIAL[::-1] + [b(1.0)] * 3 + [STALE_NAN_BITS]
    roundtrip([1000 * i for i in range(len(bits))], bits)


@pytest.mark.parametrize(
    "ts",
    [
        [INT64_MIN, INT64_MIN + 1, 0, INT64_MAX],  # deltas that wrap at 64 bits
        [INT64_MAX, INT64_MIN, INT64_MAX],
        [-5_000, -4_000, -1, 0, 1],  # negative timestamps (zigzag first varint)
        [0, 10, 5, 20, 20, 20],  # a negative delta, a repeat: the encoding allows both
        # every dod bucket at its edges: bitRange(x, n) is -(2**(n-1)-1) .. 2**(n-1)
        [0, 0, 8192, 16384 + 8192 - 8191, 0, 65536 * 2, 65536 * 2 + 1 << 19, 10**15, 10**15 + 1],
    ],
)
def test_xor_timestamps_at_the_edges(ts: list[int]) -> None:
    roundtrip(ts, [b(float(i)) for i in range(len(ts))])


def test_xor_dod_bucket_boundaries() -> None:
    for nbits in (14, 17, 20):
        hi, lo = 1 << (nbits - 1), -((1 << (nbits - 1)) - 1)
        for dod in (hi, hi + 1, lo, lo - 1):
            ts = [0, 1000, 2000 + dod, 3000 + 2 * dod]
            roundtrip(ts, [b(1.0)] * 4)


def test_xor_many_samples_and_the_uint16_limit() -> None:
    n = 0xFFFF
    roundtrip(list(range(n)), [b(float(i % 7)) for i in range(n)])
    with pytest.raises(ValueError, match="uint16"):
        encode_xor(list(range(n + 1)), [0.0] * (n + 1))


def test_xor_random_against_the_reference_decoder() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        n = rnd.randrange(1, 130)
        t = rnd.randrange(-(10**13), 10**13)
        ts, bits = [], []
        for _ in range(n):
            ts.append(t)
            t += rnd.choice((15_000, 15_000, 1, 0, rnd.randrange(1 << 21), rnd.randrange(1 << 40)))
            bits.append(rnd.choice((rnd.getrandbits(64), rnd.choice(SPECIAL), b(float(rnd.randrange(100))))))
        roundtrip(ts, bits)


def test_xor_empty_chunk_and_decodable_encodings() -> None:
    assert encode_xor([], []) == b"\x00\x00"
    assert decode_xor(b"\x00\x00") == ([], [])
    assert [xor_chunk.is_decodable(e) for e in range(4)] == [False, True, False, False]


def test_xor_truncated_anywhere_raises() -> None:
    rnd = random.Random(3)
    ts = [i * 15_000 + rnd.randrange(3) for i in range(120)]
    chunk = encode_xor(ts, [rnd.random() for _ in ts])
    for cut in range(len(chunk) - 1):  # the last byte may be mostly padding; every shorter prefix fails
        with pytest.raises(XorChunkError, match="XOR chunk"):
            decode_xor(chunk[:cut])


def test_xor_corrupt_window_raises() -> None:
    # Second value: '1' '1', then 5 bits leading=31 and 6 bits meaningful=40: 71 bits, impossible.
    head = b"\x00\x02" + varint(0) + bytes(8) + varint(1000)
    bits = (0b11 << 11 | 31 << 6 | 40) << 3  # 13 bits, padded to 16
    with pytest.raises(XorChunkError, match="leading zeros and 40 meaningful bits"):
        decode_xor(head + bits.to_bytes(2, "big") + bytes(8))


def test_xor_header_and_mismatched_encoder_input() -> None:
    with pytest.raises(XorChunkError, match="shorter than its 2-byte sample count"):
        decode_xor(b"\x01")
    with pytest.raises(ValueError, match="2 timestamps but 1 values"):
        encode_xor([1, 2], [1.0])
    with pytest.raises(ValueError, match="int64"):
        encode_xor([1 << 63], [1.0])


# -- ReadRequest -----------------------------------------------------------------------------------


def library_request(queries: list[Query], accepted: list[int]) -> bytes:
    req = pb.ReadRequest()
    for q in queries:
        pq = req.queries.add(start_timestamp_ms=q.start_ms, end_timestamp_ms=q.end_ms)
        for m in q.matchers:
            pq.matchers.add(type=m.type, name=m.name, value=m.value)
        if q.hints is not None:
            h = q.hints
            pq.hints.SetInParent()
            pq.hints.step_ms, pq.hints.func, pq.hints.start_ms, pq.hints.end_ms = (
                h.step_ms,
                h.func,
                h.start_ms,
                h.end_ms,
            )
            pq.hints.grouping.extend(h.grouping)
            pq.hints.by, pq.hints.range_ms = h.by, h.range_ms
    req.accepted_response_types.extend(accepted)
    return bytes(req.SerializeToString())


REQUESTS = [
    ([Query(0, 0, ())], []),
    ([Query(1_700_000_000_000, 1_700_000_300_000, parse_selector('{__name__=~".+",job="x"}'))], [1, 0]),
    (
        [
            Query(-5, INT64_MAX, (Matcher(MATCH_NEQ, "a", 'é\n"'), Matcher(MATCH_NRE, "b", ""))),
            Query(INT64_MIN, -1, (Matcher(MATCH_EQ, "x", "y"),), ReadHints()),
            Query(1, 2, (), ReadHints(15_000, "rate", 1, 2, ("job", "le"), True, 300_000)),
        ],
        [0],
    ),
]


@pytest.mark.parametrize(("queries", "accepted"), REQUESTS)
def test_read_request_is_byte_identical_to_the_library(queries: list[Query], accepted: list[int]) -> None:
    body = rr.encode_read_request(queries, accepted)
    raw = bytes(cramjam.snappy.decompress_raw(body))  # block format, not framed
    assert raw == library_request(queries, accepted)
    assert rr.decode_read_request(body) == (queries, accepted)


def test_read_request_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="start_ms 2 is after end_ms 1"):
        rr.encode_read_request([Query(2, 1, ())], [])
    with pytest.raises(ValueError, match="type 7"):
        rr.encode_read_request([Query(1, 2, (Matcher(7, "a", "b"),))], [])
    with pytest.raises(ValueError, match="response type 2"):
        rr.encode_read_request([], [2])
    with pytest.raises(RemoteReadFormatError, match="ReadRequest: not a snappy block"):
        rr.decode_read_request(b"\xff\xff\xff")


# -- selectors -------------------------------------------------------------------------------------

SELECTORS = [
    ("up", [(MATCH_EQ, "__name__", "up")]),
    ('up{job="x"}', [(MATCH_EQ, "__name__", "up"), (MATCH_EQ, "job", "x")]),
    ('{__name__=~".+",job="x",}', [(MATCH_RE, "__name__", ".+"), (MATCH_EQ, "job", "x")]),
    (
        ' ns:metric:rate5m { a != "b" , c !~ "d" } ',
        [(0, "__name__", "ns:metric:rate5m"), (1, "a", "b"), (3, "c", "d")],
    ),
    (r'{a="q\"s\\b\n"}', [(0, "a", 'q"s\\b\n')]),
    (r"{a='it\'s'}", [(0, "a", "it's")]),
    ("{a=`raw\\n\"'\nline`}", [(0, "a", "raw\\n\"'\nline")]),
    (r'{a="\u00e9\xc3\xa9\101\U0001F600\a\t"}', [(0, "a", "ééA\U0001f600\a\t")]),
    ('{job=~".*",x="1"}', [(2, "job", ".*"), (0, "x", "1")]),
]


@pytest.mark.parametrize(("text", "want"), SELECTORS)
def test_selectors(text: str, want: list[tuple[int, str, str]]) -> None:
    got = parse_selector(text)
    assert got == tuple(Matcher(*m) for m in want)
    assert parse_selector(series_selector.format_selector(got)) == got


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty selector at position 0"),
        ("{}", "no matcher that rejects the empty string"),
        ('{job=~".*"}', "no matcher that rejects the empty string"),
        ('up{__name__="x"}', "metric name set twice"),
        ('{job="x}', "unterminated quoted string at position 5"),
        ('{job="x\n"}', "unterminated quoted string at position 5"),
        ("{job=`x}", "unterminated raw string at position 5"),
        (r'{job="x\q"}', r"unknown escape sequence \\q at position 7"),
        (r"{job='x\"'}", "unknown escape sequence"),  # \" only inside "..."
        (r'{a="\12"}', "octal escape needs 3 digits"),
        (r'{a="\400"}', "over 255"),
        (r'{a="\xg0"}', "needs 2 hex digits"),
        (r'{a="\ud800"}', "not a valid code point"),
        (r'{a="\xff"}', "not valid UTF-8"),
        ("up[5m]", "unexpected '\\[' after the selector at position 2"),
        ("up offset 5m", "unexpected 'o'"),
        ("{job=x}", "expected a quoted string, found 'x' at position 5"),
        ('{1a="b"}', "expected a label name, found '1' at position 1"),
        ('{a=="b"}', "expected a quoted string"),
        ('{a~"b"}', "expected one of"),
        ('{a="b" c="d"}', "expected ',' or '}', found 'c' at position 7"),
        ('{a="b"', "unclosed"),
        ("1up", "expected a metric name or '{'"),
    ],
)
def test_bad_selectors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_selector(text)
    assert repr(text) in str(info.value)


# -- streamed responses ----------------------------------------------------------------------------


def sample_response(query_index: int = 0, nseries: int = 2) -> ChunkedReadResponse:
    series = []
    for s in range(nseries):
        chunks = [
            Chunk(
                1000 * c,
                1000 * c + 119,
                xor_chunk.ENCODING_XOR,
                encode_xor(list(range(1000 * c, 1000 * c + 120)), [1.5] * 120),
            )
            for c in range(3)
        ]
        chunks.append(Chunk(-7, INT64_MAX, xor_chunk.ENCODING_HISTOGRAM, b"\x00\x01opaque"))
        series.append(ChunkedSeries((("__name__", f"m{s}"), ("cluster", "é")), chunks))
    return ChunkedReadResponse(query_index, series)


def library_chunked(resp: ChunkedReadResponse) -> bytes:
    msg = pb.ChunkedReadResponse(query_index=resp.query_index)
    for s in resp.series:
        ps = msg.chunked_series.add()
        for name, value in s.labels:
            ps.labels.add(name=name, value=value)
        for c in s.chunks:
            ps.chunks.add(min_time_ms=c.min_time_ms, max_time_ms=c.max_time_ms, type=c.type, data=c.data)
    return bytes(msg.SerializeToString())


@pytest.mark.parametrize("resp", [sample_response(), sample_response(3, 0), sample_response(INT64_MAX, 1)])
def test_chunked_read_response_round_trip_with_the_library(resp: ChunkedReadResponse) -> None:
    ours = rr.encode_chunked_read_response(resp)
    assert ours == library_chunked(resp)
    assert rr.decode_chunked_read_response(ours) == resp


def body_of(*responses: ChunkedReadResponse) -> bytes:
    return b"".join(rr.encode_frame(rr.encode_chunked_read_response(r)) for r in responses)


def test_frames_fed_in_any_pieces_decode_the_same() -> None:
    responses = [sample_response(i, 1) for i in range(4)]
    body = body_of(*responses)
    assert rr.decode_chunked_body(body) == responses
    for step in (1, 2, 5, 64, 1000):
        decoder = ChunkedReadDecoder()
        got: list[ChunkedReadResponse] = []
        for i in range(0, len(body), step):
            got += decoder.feed(body[i : i + step])
        decoder.close()
        assert got == responses
        assert decoder.frames.frames == 4 and decoder.frames.offset == len(body)


def test_frame_crc_is_big_endian_castagnoli() -> None:
    # The CRC32-C check value of "123456789" is 0xE3069283 (RFC 3720, B.4).
    assert rr.encode_frame(b"123456789") == b"\x09\xe3\x06\x92\x83123456789"
    # An empty frame is legal (Go's writer never sends one); the CRC of nothing is 0.
    assert FrameReader().feed(b"\x00\x00\x00\x00\x00") == [b""]


def test_bad_crc() -> None:
    body = bytearray(body_of(sample_response(0, 1), sample_response(1, 1)))
    first = len(body_of(sample_response(0, 1)))
    body[-1] ^= 1
    with pytest.raises(RemoteReadFormatError, match=rf"frame 1 at byte {first}: CRC32-C mismatch"):
        rr.decode_chunked_body(bytes(body))


@pytest.mark.parametrize(
    ("cut", "message"),
    [(1, "inside its length varint"), (3, "inside its CRC32-C"), (-1, "body ends after")],
)
def test_truncated_frames(cut: int, message: str) -> None:
    frame = rr.encode_frame(b"x" * 200)  # a 2-byte length varint
    first = rr.encode_frame(b"ok")
    with pytest.raises(RemoteReadFormatError, match=f"frame 1 at byte {len(first)}: .*{message}"):
        reader = FrameReader()
        assert reader.feed(first + frame[:cut]) == [b"ok"]
        reader.close()


def test_oversized_frame_is_rejected_from_its_header() -> None:
    reader = FrameReader(max_frame_bytes=1000)
    with pytest.raises(
        RemoteReadFormatError, match="frame 0 at byte 0: length 1001 bytes is over the 1000-byte"
    ):
        reader.feed(varint(1001))  # no data: rejected before any is buffered
    with pytest.raises(RemoteReadFormatError, match="length 18446744073709551615 bytes"):
        FrameReader().feed(varint((1 << 64) - 1))
    assert rr.DEFAULT_MAX_FRAME_BYTES == 2 << 20


def test_length_varint_over_10_bytes() -> None:
    with pytest.raises(RemoteReadFormatError, match="frame 0 at byte 0: length varint longer than 10 bytes"):
        FrameReader().feed(b"\x80" * 11)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x0a\x05\x0a\x02", "truncated"),  # series declares 5 bytes, 2 follow
        (b"\x10", "truncated varint"),  # query_index with no value
        (b"\x0a\x02\x12\x00\x0a", "truncated"),
        (b"\x11" + bytes(8), "query_index has wire type 1"),
        (b"\x0a\x04\x0a\x02\x0a\xff", "truncated"),
        (b"\x0a\x06\x0a\x04\x0a\x02\xc3\x28", "not UTF-8"),
        (b"\x0b", "chunked_series has wire type 3, expected 2"),
    ],
)
def test_malformed_protobuf_in_a_frame(payload: bytes, message: str) -> None:
    body = rr.encode_frame(b"") + rr.encode_frame(payload)
    with pytest.raises(RemoteReadFormatError, match=f"frame 1: ChunkedReadResponse: .*{message}"):
        rr.decode_chunked_body(body)


def test_real_prometheus_streamed_body() -> None:
    """A body recorded from Prometheus 2.42 (tests/integration/test_remote_read_real_prometheus.py wrote it,
    with the samples it had written beside it): decode to exactly those samples."""
    body = (DATA / "remote_read_streamed_2.42.bin").read_bytes()
    expected = json.loads((DATA / "remote_read_streamed_2.42.json").read_text())
    got: dict[tuple[tuple[str, str], ...], list[list[object]]] = {}
    for msg in rr.decode_chunked_body(body):
        assert msg.query_index == 0
        for s in msg.series:
            for c in s.chunks:
                ts, vs = decode_xor(c.data)
                assert encode_xor(ts, vs) == c.data
                got.setdefault(s.labels, []).extend([t, f"{b(v):016x}"] for t, v in zip(ts, vs, strict=True))
    assert [{"labels": [list(x) for x in k], "samples": v} for k, v in got.items()] == expected
    assert any(s[1] == f"{STALE_NAN_BITS:016x}" for e in expected for s in e["samples"])


# -- SAMPLES responses -----------------------------------------------------------------------------


def test_read_response_round_trip_with_the_library() -> None:
    results = [
        [
            ((("__name__", "up"), ("job", "a")), [(1.0, 1000), (f(STALE_NAN_BITS), 2000)]),
            ((("__name__", "x"),), [(-2.5, -1)]),
        ],
        [],
    ]
    body = rr.encode_read_response(results)
    msg = pb.ReadResponse.FromString(bytes(cramjam.snappy.decompress_raw(body)))

    def bits(rs: list[list[tuple[tuple[tuple[str, str], ...], list[tuple[float, int]]]]]) -> object:
        return [[(lb, [(b(v), t) for v, t in s]) for lb, s in r] for r in rs]

    parsed = [
        [
            (tuple((lb.name, lb.value) for lb in ts.labels), [(s.value, s.timestamp) for s in ts.samples])
            for ts in qr.timeseries
        ]
        for qr in msg.results
    ]
    assert bits(parsed) == bits(results)
    assert bits(rr.decode_read_response(bytes(cramjam.snappy.compress_raw(msg.SerializeToString())))) == bits(
        results
    )


def test_read_response_errors() -> None:
    with pytest.raises(RemoteReadFormatError, match="ReadResponse: not a snappy block"):
        rr.decode_read_response(b"\x05garbage")
    bad = bytes(cramjam.snappy.compress_raw(b"\x0a\x03\x0a\x05\x0a"))
    with pytest.raises(RemoteReadFormatError, match="ReadResponse: result 0 at byte 2: truncated"):
        rr.decode_read_response(bad)
