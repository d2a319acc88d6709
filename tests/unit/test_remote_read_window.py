"""A remote-read reply turned into a window's columns (observe/sources/prometheus_remote_read.py): cutting
whole chunks to the window, concatenating and merging chunks, series across frames and queries, skipped
encodings, and a differential check of the fast paths against a plain per-timestamp merge."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest

from observe.model import STALE_NAN_BITS, Labels
from observe.protocol import remote_read as rr
from observe.protocol.protobuf_wire import varint
from observe.protocol.remote_write import encode_labels
from observe.protocol.xor_chunk import ENCODING_HISTOGRAM, ENCODING_XOR, encode_xor
from observe.sources.prometheus_remote_read import (
    ReadResult,
    native,
    python_streamed_window,
    samples_window,
    streamed_window,
)

UP: Labels = (("__name__", "up"), ("cluster", "c1"), ("job", "node"))
CPU: Labels = (("__name__", "cpu_seconds_total"), ("cluster", "c1"), ("cpu", "0"))


def bits(v: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", v))[0])


def floats(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", b))[0])


def chunk(points: list[tuple[int, float]], ctype: int = ENCODING_XOR) -> rr.Chunk:
    data = encode_xor([t for t, _ in points], [v for _, v in points])
    return rr.Chunk(points[0][0], points[-1][0], ctype, data)


def body(*frames: tuple[int, list[tuple[Labels, list[rr.Chunk]]]]) -> bytes:
    return b"".join(
        rr.encode_frame(
            rr.encode_chunked_read_response(
                rr.ChunkedReadResponse(qi, [rr.ChunkedSeries(labels, chunks) for labels, chunks in series])
            )
        )
        for qi, series in frames
    )


def columns(result: ReadResult) -> dict[Labels, list[tuple[int, int]]]:
    """labels -> [(ts, value bits)] per series, from the columns."""
    out, start = {}, 0
    for lb, end in zip(result.label_bytes, result.ends, strict=True):
        out[rr.decode_series_labels(lb)] = list(
            zip(result.timestamps[start:end], result.values[start:end], strict=True)
        )
        start = end
    return out


def test_a_whole_chunk_is_cut_to_the_window_and_values_keep_their_bits() -> None:
    stale = floats(STALE_NAN_BITS)
    pts = [(t * 1000, float(t)) for t in range(1, 11)]
    pts[5] = (6000, stale)
    got = streamed_window(body((0, [(UP, [chunk(pts)])])), 3000, 7000)
    assert columns(got) == {
        UP: [(4000, bits(4.0)), (5000, bits(5.0)), (6000, STALE_NAN_BITS), (7000, bits(7.0))]
    }
    assert got.samples == 4 and got.series_count == 1 and got.response_type == "streamed_xor_chunks"
    # the key is the series' labels exactly as remote-write encodes them: no decoding needed to cache it
    assert got.label_bytes == [encode_labels(UP)]


def test_chunks_one_after_the_other_are_concatenated_in_time_order_whatever_order_they_came_in() -> None:
    first = chunk([(1000, 1.0), (2000, 2.0)])
    second = chunk([(3000, 3.0), (4000, 4.0)])
    got = streamed_window(body((0, [(UP, [second, first])])), 0, 10_000)
    assert [t for t, _ in columns(got)[UP]] == [1000, 2000, 3000, 4000]


def test_overlapping_chunks_merge_per_timestamp_and_the_first_sent_wins() -> None:
    head = chunk([(2000, 20.0), (3000, 30.0), (4000, 40.0)])
    block = chunk([(1000, 1.0), (2000, 2.0), (3000, 3.0)])
    got = streamed_window(body((0, [(UP, [head, block])])), 0, 10_000)
    assert columns(got)[UP] == [(1000, bits(1.0)), (2000, bits(20.0)), (3000, bits(30.0)), (4000, bits(40.0))]


def test_a_series_across_frames_and_queries_comes_out_once() -> None:
    a = chunk([(1000, 1.0), (2000, 2.0)])
    b = chunk([(3000, 3.0)])
    c = chunk([(4000, 4.0)])
    reply = body((0, [(UP, [a])]), (0, [(UP, [b]), (CPU, [a])]), (1, [(UP, [c])]))
    got = streamed_window(reply, 0, 10_000)
    assert [t for t, _ in columns(got)[UP]] == [1000, 2000, 3000, 4000]
    assert list(columns(got)) == [UP, CPU]


def test_chunks_of_other_encodings_are_counted_by_name_and_never_decoded() -> None:
    xor = chunk([(1000, 1.0)])
    hist = rr.Chunk(1000, 2000, ENCODING_HISTOGRAM, b"\x00\x01garbage")
    odd = rr.Chunk(1000, 2000, 7, b"whatever")
    got = streamed_window(body((0, [(UP, [xor, hist, odd]), (CPU, [hist])])), 0, 10_000)
    assert got.chunks_skipped == {"histogram": 2, "unknown_7": 1}
    assert list(columns(got)) == [UP]  # a series with nothing decodable is left out


def test_chunks_outside_the_window_are_not_decoded() -> None:
    outside = rr.Chunk(1000, 2000, ENCODING_XOR, b"\xff\xff not a chunk")  # would fail to decode
    inside = chunk([(5000, 5.0)])
    got = streamed_window(body((0, [(UP, [outside, inside])])), 2000, 6000)
    assert columns(got) == {UP: [(5000, bits(5.0))]}


def test_a_chunk_whose_times_lie_is_a_clear_error_naming_the_series() -> None:
    # two chunks whose headers say they do not overlap, while their samples do: never sent out of order
    a = chunk([(1000, 1.0), (5000, 5.0)])._replace(max_time_ms=1500)
    b = chunk([(2000, 2.0), (3000, 3.0)])
    with pytest.raises(rr.RemoteReadFormatError, match=r"series \{__name__='up'.*out of time order"):
        streamed_window(body((0, [(UP, [a, b])])), 0, 10_000)


def test_malformed_labels_say_so() -> None:
    frame = rr.encode_frame(b"\x0a\x06" + b"\x0a\x04\x0a\x02\xc3\x28")  # a label name that is not UTF-8
    got = streamed_window(frame, 0, 1)  # no chunks: nothing to decode, nothing kept
    assert got.series_count == 0
    with pytest.raises(rr.RemoteReadFormatError, match="not UTF-8"):
        rr.decode_series_labels(rr.scan_chunked_body(frame)[0].series[0].label_bytes)


def test_labels_interleaved_with_chunks_are_kept_in_wire_order() -> None:
    # Prometheus writes the labels first; any protobuf encoder may interleave fields
    only_chunk = rr.encode_chunked_read_response(
        rr.ChunkedReadResponse(0, [rr.ChunkedSeries((), [chunk([(1000, 1.0)])])])
    )
    assert only_chunk[1] < 0x80  # a one-byte length: the series field's payload starts at byte 2
    inner = encode_labels((("__name__", "up"),)) + only_chunk[2:] + encode_labels((("job", "node"),))
    frame = rr.encode_frame(b"\x0a" + varint(len(inner)) + inner)
    got = rr.scan_chunked_body(frame)[0].series[0]
    assert rr.decode_series_labels(got.label_bytes) == (("__name__", "up"), ("job", "node"))
    assert [c.min_time_ms for c in got.chunks] == [1000]


def reference(
    series: list[tuple[Labels, list[list[tuple[int, float]]]]], start: int, end: int
) -> dict[Labels, list[tuple[int, int]]]:
    """The plain merge: every chunk's samples per timestamp (first wins), in the window, sorted."""
    out: dict[Labels, dict[int, int]] = {}
    for labels, chunks in series:
        points = out.setdefault(labels, {})
        for pts in chunks:
            for t, v in pts:
                if start < t <= end:
                    points.setdefault(t, bits(v))
    return {lb: sorted(p.items()) for lb, p in out.items() if p}


@pytest.mark.parametrize("seed", range(60))
def test_fast_paths_match_the_plain_merge(seed: int) -> None:
    rnd = random.Random(seed)
    series: list[tuple[Labels, list[list[tuple[int, float]]]]] = []
    for s in range(rnd.randrange(1, 6)):
        labels = (("__name__", f"m{s}"), ("i", str(s)))
        t, chunks = rnd.randrange(0, 5000), []
        for _ in range(rnd.randrange(1, 4)):
            pts = []
            for _ in range(rnd.randrange(1, 30)):
                pts.append((t, rnd.choice((0.0, 1.5, float(rnd.randrange(100)), floats(STALE_NAN_BITS)))))
                t += rnd.choice((1000, 15_000, 15_001, 14_999))
            chunks.append(pts)
            if rnd.random() < 0.3:  # the next chunk starts inside this one: an overlap
                t = pts[len(pts) // 2][0]
        series.append((labels, rnd.sample(chunks, len(chunks))))  # sent in any order
    start = rnd.randrange(0, 60_000)
    end = start + rnd.randrange(1, 300_000)
    reply = body((0, [(lb, [chunk(p) for p in cs]) for lb, cs in series]))
    assert columns(streamed_window(reply, start, end)) == reference(series, start, end)


def test_a_samples_reply_gives_the_same_columns() -> None:
    reply = rr.encode_read_response([[(UP, [(1.0, 1000), (2.0, 2000), (3.0, 3000)])], [(UP, [(2.0, 2000)])]])
    got = samples_window(reply, 1000, 3000)
    assert columns(got) == {UP: [(2000, bits(2.0)), (3000, bits(3.0))]}
    assert list(got.series()) == [(UP, [(2.0, 2000), (3.0, 3000)])]


# -- the C accelerator against the Python reference -----------------------------------------------------


def test_the_accelerator_is_built_where_the_suite_runs_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert native is not None, "observe/protocol/remote_read_native.c was not built at install"


def same(a: ReadResult, b: ReadResult) -> None:
    assert (a.label_bytes, a.ends, a.timestamps, a.values, a.chunks_skipped, a.body_bytes) == (
        b.label_bytes, b.ends, b.timestamps, b.values, b.chunks_skipped, b.body_bytes,
    )  # fmt: skip


@pytest.mark.skipif(native is None, reason="the C accelerator is not built here")
@pytest.mark.parametrize("seed", range(200))
def test_the_accelerator_gives_the_reference_columns_or_hands_over(seed: int) -> None:
    assert native is not None
    rnd = random.Random(seed)
    series: list[tuple[Labels, list[rr.Chunk]]] = []
    regular = True  # what Prometheus sends: the accelerator must take it
    for s in range(rnd.randrange(1, 8)):
        labels = (("__name__", f"m{s}"), ("i", str(s)), ("long", "x" * rnd.choice((1, 200))))
        t, chunks = rnd.randrange(-3000, 5000), []
        for _ in range(rnd.randrange(1, 4)):
            pts = []
            for _ in range(rnd.randrange(1, 130)):
                v = rnd.choice(
                    (0.0, -0.0, 1.5, float(rnd.randrange(10**6)), rnd.random(), floats(STALE_NAN_BITS))
                )
                pts.append((t, v))
                t += rnd.choice((1000, 15_000, 15_001, 14_999, 1, 2**20))
            ctype = ENCODING_HISTOGRAM if rnd.random() < 0.05 else ENCODING_XOR
            chunks.append(
                chunk(pts, ctype) if ctype == ENCODING_XOR else rr.Chunk(pts[0][0], pts[-1][0], ctype, b"h")
            )
            if rnd.random() < 0.1:
                t = pts[0][0]  # the next chunk overlaps this one
                regular = False
        series.append((labels, chunks))
    frames = [(0, [s]) for s in series]
    if rnd.random() < 0.1:
        frames.append((1, [series[0]]))  # the same series again, in a second query
        regular = False
    reply = body(*frames)
    start = rnd.randrange(-5000, 60_000)
    end = start + rnd.randrange(1, 3_000_000)
    got = native.streamed_window(reply, start, end, rr.DEFAULT_MAX_FRAME_BYTES)
    if regular:
        assert got is not None
    same(streamed_window(reply, start, end), python_streamed_window(reply, start, end))


def label_after_chunk() -> bytes:
    c = chunk([(1000, 1.0)])
    msg = b"\x08" + varint(c.min_time_ms) + b"\x10" + varint(c.max_time_ms) + b"\x18\x01"
    msg += b"\x22" + varint(len(c.data)) + c.data
    inner = encode_labels(UP[:1]) + b"\x12" + varint(len(msg)) + msg + encode_labels(UP[1:2])
    frame = rr.encode_frame(b"\x0a" + varint(len(inner)) + inner)
    assert rr.decode_series_labels(rr.scan_chunked_body(frame)[0].series[0].label_bytes) == UP[:2]
    return frame


@pytest.mark.skipif(native is None, reason="the C accelerator is not built here")
def test_the_accelerator_hands_every_irregular_reply_over() -> None:
    assert native is not None
    a = chunk([(1000, 1.0), (2000, 2.0)])
    b = chunk([(3000, 3.0)])
    regular = body((0, [(UP, [a, b]), (CPU, [a])]))
    assert native.streamed_window(regular, 0, 10_000, rr.DEFAULT_MAX_FRAME_BYTES) is not None
    bad_crc = bytearray(regular)
    bad_crc[3] ^= 0xFF
    truncated_chunk = body((0, [(UP, [a._replace(data=a.data[:-3])])]))
    cases = {
        "bad CRC": bytes(bad_crc),
        "cut short": regular[:-1],
        "frame over the limit": regular,
        "a series in two frames": body((0, [(UP, [a])]), (0, [(UP, [b])])),
        "overlapping chunks": body((0, [(UP, [b, a])])),
        "a truncated chunk": truncated_chunk,
        "a label after a chunk": label_after_chunk(),
        "a group wire type": rr.encode_frame(b"\x0b"),
    }
    for what, reply in cases.items():
        limit = 8 if what == "frame over the limit" else rr.DEFAULT_MAX_FRAME_BYTES
        assert native.streamed_window(reply, 0, 10_000, limit) is None, what
    # the real Prometheus 2.42 reply recorded by the integration test: the regular case
    recorded = (Path(__file__).parents[1] / "data" / "remote_read_streamed_2.42.bin").read_bytes()
    got = native.streamed_window(recorded, -(2**62), 2**62, rr.DEFAULT_MAX_FRAME_BYTES)
    assert got is not None and got[0]
    same(streamed_window(recorded, -(2**62), 2**62), python_streamed_window(recorded, -(2**62), 2**62))
