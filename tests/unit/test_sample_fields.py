"""SampleFields (the remote-read path's batch encoder) writes byte for byte what the one-sample-at-a-time
remote-write encoder writes, in and outside the 6-byte timestamp range, and keeps NaN payloads."""

from __future__ import annotations

import random
import struct
from array import array

import pytest

from observe.model import STALE_NAN_BITS
from observe.protocol.remote_write import (
    decode_write_request,
    encode_labels,
    encode_series_samples,
    series_prefix,
)
from observe.protocol.sample_fields import FIELD_BYTES, SampleFields

LABELS = encode_labels((("__name__", "up"), ("job", "a")))


def as_float(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", b))[0])


def reference(ts: list[int], vs: list[int]) -> bytes:
    """The samples part of encode_series_samples' output (after its head and labels)."""
    whole = encode_series_samples(LABELS, [(as_float(v), t) for t, v in zip(ts, vs, strict=True)])
    return whole[whole.index(LABELS) + len(LABELS) :]


@pytest.mark.parametrize(
    "timestamps",
    [
        [1_700_000_000_000 + 15_000 * i for i in range(50)],  # today: 18 bytes a sample, the batch path
        [1, 2, 300, 70_000],  # small: 1- to 3-byte varints, one at a time
        [-5, 0, 1 << 35, (1 << 42) - 1, 1 << 42, (1 << 63) - 1],  # both edges of the 6-byte range
    ],
)
def test_the_same_bytes_as_the_one_by_one_encoder(timestamps: list[int]) -> None:
    rnd = random.Random(len(timestamps))
    values = [rnd.getrandbits(64) for _ in timestamps]  # any bit pattern: NaNs and infinities included
    values[0] = STALE_NAN_BITS
    fields = SampleFields(array("q", timestamps), array("Q", values))
    assert fields.take(0, len(timestamps)) == reference(timestamps, values)
    assert fields.take(1, 3) == reference(timestamps[1:3], values[1:3])  # a series cut out of the window
    assert fields.stale(0, len(timestamps)) == 1 and fields.stale(1, len(timestamps)) == 0


def test_a_series_built_from_the_fields_decodes_with_its_value_bits() -> None:
    ts = [1_800_000_000_000, 1_800_000_015_000]
    vs = [STALE_NAN_BITS, 0x7FF8000000000001]  # the staleness marker and another NaN payload
    fields = SampleFields(array("q", ts), array("Q", vs))
    body = fields.take(0, 2)
    assert len(body) == 2 * FIELD_BYTES
    ((labels, samples),) = decode_write_request(series_prefix(LABELS, len(body)) + body)
    assert labels == (("__name__", "up"), ("job", "a"))
    assert [(struct.unpack("<Q", struct.pack("<d", v))[0], t) for v, t in samples] == list(
        zip(vs, ts, strict=True)
    )


def test_no_samples_and_mismatched_columns() -> None:
    assert SampleFields(array("q"), array("Q")).take(0, 0) == b""
    with pytest.raises(ValueError, match="2 timestamps but 1 values"):
        SampleFields(array("q", [1, 2]), array("Q", [0]))
