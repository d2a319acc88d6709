"""The protobuf wire primitives against the `protobuf` library's own varint encoders, and their errors."""

from __future__ import annotations

import pytest
from google.protobuf.internal import encoder

from observe.protocol import protobuf_wire as wire

VARINTS = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**35, 2**63 - 1, -1, -(2**63)]


def _library_varint(n: int) -> bytes:
    out: list[bytes] = []
    (encoder._VarintEncoder() if n >= 0 else encoder._SignedVarintEncoder())(out.append, n, True)
    return b"".join(out)


@pytest.mark.parametrize("n", VARINTS)
def test_unrolled_varint_matches_the_protobuf_library_and_reads_back(n: int) -> None:
    data = wire.varint(n)
    assert data == _library_varint(n)
    value, pos = wire.read_varint(data + b"\x7f", 0, len(data) + 1)  # a following byte is not read
    assert (value - wire.UINT64 if value >= 1 << 63 else value, pos) == (n, len(data))


def test_iter_fields_gives_each_wire_type_and_skip_field_agrees() -> None:
    # field 1 varint 150, field 2 "hi", field 3 fixed64, field 4 fixed32
    buf = b"\x08\x96\x01" + b"\x12\x02hi" + b"\x19" + bytes(8) + b"\x25" + bytes(4)
    fields = list(wire.iter_fields(buf, 0, len(buf)))
    assert fields == [
        (1, wire.WT_VARINT, 150, 3),
        (2, wire.WT_LEN, 5, 7),
        (3, wire.WT_I64, 8, 16),
        (4, wire.WT_I32, 17, 21),
    ]
    pos = 0
    for field, wt, _, stop in fields:
        key, pos = wire.read_varint(buf, pos, len(buf))
        assert (key >> 3, key & 7) == (field, wt)
        pos = wire.skip_field(buf, pos, len(buf), wt, field)
        assert pos == stop


@pytest.mark.parametrize(
    ("buf", "message"),
    [
        (b"\x96", "truncated varint at byte 1"),
        (b"\xff" * 11, "longer than 10 bytes"),
        (b"\x12\x05hi", "truncated field: 5 bytes declared at byte 2, 2 left"),
        (b"\x19\x00\x00", "truncated field 3 at byte 1"),
        (b"\x1b", "unsupported wire type 3 for field 3"),
    ],
)
def test_malformed_input_is_a_value_error_naming_the_byte(buf: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        list(wire.iter_fields(buf, 0, len(buf)))
    if buf[0] & 0x80 == 0:  # a key was read: skipping its field fails the same way
        key, pos = wire.read_varint(buf, 0, len(buf))
        with pytest.raises(ValueError, match=message.replace("field:", "field 2:")):
            wire.skip_field(buf, pos, len(buf), key & 7, key >> 3)
