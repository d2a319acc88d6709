"""Round trips of our remote-write encoder/decoder against the protobuf library (tests/remote_write_pb.py)."""

from __future__ import annotations

import math
import random
import struct

import cramjam
import pytest

from observe.model import STALE_NAN, STALE_NAN_BITS, STALE_NAN_BYTES
from observe.protocol import remote_write as rw
from tests import remote_write_pb as pb

Series = list[tuple[tuple[tuple[str, str], ...], list[tuple[float, int]]]]

UP = (("__name__", "up"), ("cluster", "prod-eu-1"), ("job", "node"))
NOW_MS = 1_700_000_000_123


def _ours(series: Series) -> bytes:
    entries = []
    for labels, samples in series:
        lb = rw.encode_labels(labels)
        if len(samples) == 1:
            entries.append(rw.encode_series(lb, samples[0][0], samples[0][1]))
        else:
            entries.append(rw.encode_series_samples(lb, samples))
    return rw.encode_write_request(entries)


def _bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


def _same(a: Series, b: Series) -> bool:
    """Equality that treats floats by their bits, so NaN payloads and -0.0 count."""
    if len(a) != len(b):
        return False
    for (la, sa), (lb, sb) in zip(a, b, strict=True):
        if la != lb or len(sa) != len(sb):
            return False
        if any(_bits(va) != _bits(vb) or ta != tb for (va, ta), (vb, tb) in zip(sa, sb, strict=True)):
            return False
    return True


# -- encoder vs protobuf library ---------------------------------------------------------------------


def test_encode_is_byte_identical_to_protobuf_library() -> None:
    # With no default (zero/empty) values protobuf's canonical encoding has no freedom: bytes must match.
    series: Series = [
        (UP, [(1.0, NOW_MS)]),
        ((("__name__", "node_load1"), ("cluster", "b"), ("instance", "10.0.0.1:9100")), [(0.25, NOW_MS + 1)]),
        ((("__name__", "x"),), [(1.5, NOW_MS), (2.5, NOW_MS + 30_000), (-7.0, NOW_MS + 60_000)]),
    ]
    assert _ours(series) == pb.build(series)


def test_ours_to_protobuf_library() -> None:
    series: Series = [(UP, [(42.0, NOW_MS)]), ((("__name__", "b"), ("zone", "ü-1")), [(0.0, 0), (1.0, 1)])]
    assert pb.parse(_ours(series)) == series


def test_protobuf_library_to_ours() -> None:
    series: Series = [(UP, [(42.0, NOW_MS)]), ((("__name__", "b"), ("zone", "ü-1")), [(0.0, 0), (-1.0, -1)])]
    assert rw.decode_write_request(pb.build(series)) == series


def test_empty_write_request() -> None:
    assert rw.encode_write_request([]) == b""
    assert rw.decode_write_request(b"") == []
    assert pb.parse(b"") == []


def _random_label_value(rnd: random.Random) -> str:
    alphabet = 'abcXYZ019_-:/. "\\\n\t{}=,é€日本😀\u0000'
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 40)))


def _random_value(rnd: random.Random) -> float:
    return rnd.choice(
        [
            rnd.uniform(-1e6, 1e6),
            rnd.choice([0.0, -0.0, math.nan, math.inf, -math.inf, STALE_NAN, 5e-324, 1.7976931348623157e308]),
            float(rnd.randint(-(2**63), 2**63)),
        ]
    )


def _random_ts(rnd: random.Random) -> int:
    return rnd.choice([0, -1, -(2**63), 2**63 - 1, rnd.randint(-(2**40), 2**42), NOW_MS])


def _random_series(rnd: random.Random) -> Series:
    out: Series = []
    for _ in range(rnd.randint(0, 8)):
        names = {
            "__name__",
            *(f"l{rnd.randint(0, 30)}_{rnd.choice('abc')}" for _ in range(rnd.randint(0, 6))),
        }
        labels = tuple(sorted((n, _random_label_value(rnd)) for n in names))
        samples = sorted(
            ((_random_value(rnd), _random_ts(rnd)) for _ in range(rnd.randint(1, 4))), key=lambda s: s[1]
        )
        out.append((labels, samples))
    return out


@pytest.mark.parametrize("seed", range(200))
def test_random_round_trip_both_ways(seed: int) -> None:
    rnd = random.Random(seed)
    series = _random_series(rnd)
    for labels, _ in series:
        rw.check_labels(labels)
    ours = _ours(series)
    assert _same(pb.parse(ours), series)
    assert _same(rw.decode_write_request(ours), series)
    assert _same(rw.decode_write_request(pb.build(series)), series)


def test_extreme_timestamps_and_values() -> None:
    samples = [(math.inf, -(2**63)), (-math.inf, -1), (math.nan, 0), (1e308, 2**63 - 1)]
    series: Series = [(UP, samples)]
    assert _same(pb.parse(_ours(series)), series)
    with pytest.raises(ValueError, match="int64"):
        rw.encode_series(rw.encode_labels(UP), 1.0, 2**63)


# -- staleness marker -------------------------------------------------------------------------------


def test_stale_marker_bits_survive_protobuf_decode() -> None:
    lb = rw.encode_labels(UP)
    body = rw.encode_write_request(
        [rw.encode_series(lb, 1.0, NOW_MS), rw.encode_stale_series(lb, NOW_MS + 1)]
    )
    assert STALE_NAN_BYTES in body
    req = pb.WriteRequest.FromString(body)
    stale = req.timeseries[1].samples[0]
    assert struct.pack("<d", stale.value) == (0x7FF0000000000002).to_bytes(8, "little")
    assert _bits(stale.value) == STALE_NAN_BITS
    assert stale.timestamp == NOW_MS + 1
    ours = rw.decode_write_request(body)
    assert _bits(ours[1][1][0][0]) == STALE_NAN_BITS


def test_stale_series_equals_generic_encoding_of_the_marker() -> None:
    lb = rw.encode_labels(UP)
    assert rw.encode_stale_series(lb, NOW_MS) == rw.encode_series(lb, STALE_NAN, NOW_MS)


# -- shape of the output ----------------------------------------------------------------------------


def test_encode_series_is_a_complete_timeseries_field() -> None:
    lb = rw.encode_labels((("__name__", "a"),))
    entry = rw.encode_series(lb, 1.0, 1)
    # tag 0x0a, length, then labels, then the sample field
    assert entry[0] == 0x0A
    assert entry[1] == len(entry) - 2
    assert entry[2 : 2 + len(lb)] == lb
    assert entry[2 + len(lb) :] == b"\x12\x0b\x09" + struct.pack("<d", 1.0) + b"\x10\x01"


def test_long_label_sets_use_multibyte_lengths() -> None:
    labels = (("__name__", "big"), ("payload", "x" * 70_000))
    series: Series = [(labels, [(1.0, NOW_MS)]), (labels, [(2.0, NOW_MS), (3.0, NOW_MS + 1)])]
    assert pb.parse(_ours(series)) == series


def test_encode_series_samples_requires_time_order() -> None:
    lb = rw.encode_labels(UP)
    with pytest.raises(ValueError, match="time order"):
        rw.encode_series_samples(lb, [(1.0, 10), (2.0, 9)])


def test_encode_series_samples_with_no_sample_is_labels_only() -> None:
    lb = rw.encode_labels(UP)
    assert pb.parse(rw.encode_series_samples(lb, [])) == [(UP, [])]


def test_timestamp_frame_cache_is_bounded() -> None:
    lb = rw.encode_labels(UP)
    for ts in range(rw._FRAME_CACHE_MAX + 10):
        rw.encode_series(lb, 1.0, ts)
    assert len(rw._frame_cache) <= rw._FRAME_CACHE_MAX
    assert rw.decode_write_request(rw.encode_series(lb, 1.0, 5)) == [(UP, [(1.0, 5)])]


# -- check_labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ((("job", "a"), ("__name__", "up")), "not sorted by name: '__name__' comes after 'job'"),
        ((("__name__", "up"), ("job", "a"), ("job", "b")), "duplicate label name 'job'"),
        ((("__name__", "up"), ("job", "")), "label 'job' has an empty value"),
        ((("__name__", "up"), ("", "x")), "label 1 has an empty name"),
        ((("job", "a"),), "no __name__ label in {job='a'}"),
        ((), "no __name__ label"),
    ],
)
def test_check_labels_rejects(labels: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        rw.check_labels(labels)


def test_check_labels_accepts_sorted_valid_set() -> None:
    rw.check_labels(UP)
    rw.check_labels(
        (("__name__", "x"), ("a_b", "ü"), ("a\u00e9", "1"))
    )  # code-point order == UTF-8 byte order


# -- decoder robustness -----------------------------------------------------------------------------


def test_decoder_skips_unknown_fields_exemplars_histograms_metadata() -> None:
    req = pb.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="http_requests_total")
    ts.samples.add(value=3.0, timestamp=NOW_MS)
    ex = ts.exemplars.add(value=0.5, timestamp=NOW_MS)
    ex.labels.add(name="trace_id", value="abc")
    h = ts.histograms.add(count_int=4, sum=2.5, schema=-2, timestamp=NOW_MS, zero_threshold=1e-9)
    h.positive_spans.add(offset=-1, length=2)
    h.positive_deltas.extend([1, -1])
    req.metadata.add(type=1, metric_family_name="http_requests_total", help="h", unit="")
    body = req.SerializeToString()
    assert rw.decode_write_request(body) == [((("__name__", "http_requests_total"),), [(3.0, NOW_MS)])]
    # fixed32 (wire type 5) and varint unknown fields are skipped too
    extra = b"\x2d\x00\x00\x80\x3f" + b"\x30\x96\x01"  # field 5 fixed32, field 6 varint
    assert rw.decode_write_request(body + extra) == rw.decode_write_request(body)


def test_decoder_rejects_every_truncation() -> None:
    body = _ours([(UP, [(1.0, NOW_MS), (2.0, NOW_MS + 1)])])
    for cut in range(1, len(body)):
        with pytest.raises(ValueError):
            rw.decode_write_request(body[:cut])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x08\x01", "WriteRequest.timeseries has wire type 0, expected 2"),  # known field, wrong wire type
        (b"\x0a\x05\x0a\x03\x0a\x01", "truncated"),
        (b"\x0a\x04\x0a\x02\x0a\xff", "truncated"),
        (b"\x1b", "unsupported wire type 3"),
        (b"\x18" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x0a\x06\x0a\x04\x0a\x02\xc3\x28", "not UTF-8"),
        (b"\x0a\x04\x12\x02\x08\x01", "Sample.value has wire type 0"),
    ],
)
def test_decoder_rejects_malformed(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rw.decode_write_request(body)


# -- snappy -----------------------------------------------------------------------------------------


def test_snappy_block_round_trip_with_cramjam() -> None:
    body = _ours([(UP, [(float(i), NOW_MS + i) for i in range(1000)])])
    packed = rw.compress(body)
    assert len(packed) < len(body)
    assert bytes(cramjam.snappy.decompress_raw(packed)) == body
    assert rw.decompress(bytes(cramjam.snappy.compress_raw(body))) == body
    # block format: starts with the uncompressed length as a varint, no stream identifier chunk
    assert not packed.startswith(b"\xff\x06\x00\x00sNaPpY")
    assert rw.decompress(packed) == body


def test_decompress_rejects_framed_and_garbage() -> None:
    framed = bytes(cramjam.snappy.compress(b"hello" * 100))
    with pytest.raises(ValueError, match="not a snappy block"):
        rw.decompress(framed)
    with pytest.raises(ValueError, match="not a snappy block"):
        rw.decompress(b"\xff\xff\xff\xff")


def test_public_names() -> None:
    assert sorted(rw.__all__) == sorted(
        [
            "check_labels",
            "compress",
            "decode_labels",
            "decode_write_request",
            "decompress",
            "encode_labels",
            "encode_series",
            "encode_series_samples",
            "encode_stale_series",
            "encode_write_request",
            "pack_double",
            "sample_frame",
            "series_prefix",
        ]
    )


def test_prefix_and_frame_pieces_make_the_same_bytes_as_encode_series() -> None:
    labels = rw.encode_labels([("__name__", "up"), ("cluster", "a"), ("job", "node")])
    for ts in (0, 1, 1_700_000_000_000, -5, 2**62):
        before, after, frame_len = rw.sample_frame(ts)
        pieces = rw.series_prefix(labels, frame_len) + before + rw.pack_double(2.5) + after
        assert pieces == rw.encode_series(labels, 2.5, ts)
