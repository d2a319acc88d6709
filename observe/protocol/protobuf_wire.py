"""Protobuf wire-format primitives shared by our hand-written encoders and decoders.

Encoding spec: https://protobuf.dev/programming-guides/encoding/

A message is a sequence of fields, each a varint key (`field_number << 3 | wire_type`) and a payload
whose shape the wire type gives: a varint (0), 8 little-endian bytes (1, fixed64/double), a varint
length and that many bytes (2: strings, bytes, sub-messages, packed repeated fields) or 4 bytes (5).
Wire types 3 and 4 are proto2's deprecated groups, which neither prompb nor Loki's logproto uses.

Only the primitives live here; each protocol module keeps its own message layouts and hot paths
(`remote_write.encode_series` never calls into this module per series: it joins cached bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

__all__ = [
    "SMALL_VARINT",
    "UINT64",
    "WT_I32",
    "WT_I64",
    "WT_LEN",
    "WT_VARINT",
    "iter_fields",
    "read_len",
    "read_varint",
    "skip_field",
    "varint",
]

WT_VARINT: Final = 0
WT_I64: Final = 1
WT_LEN: Final = 2
WT_I32: Final = 5

UINT64: Final = 1 << 64
"""A negative int64 travels as its 64-bit two's complement: add this to encode, subtract to decode."""

SMALL_VARINT: Final = [bytes((i,)) for i in range(0x80)]
"""The varint of every value under 128, one byte each: an index instead of a call on hot paths."""


def varint(n: int) -> bytes:
    """Unsigned LEB128, unrolled for values under 2**28 (lengths, nanoseconds, seconds): about twice as
    fast as the loop, which is kept for the rest and for negative int64s (always 10 bytes)."""
    if n < 0x80:
        if n >= 0:
            return SMALL_VARINT[n]
    elif n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    elif n < 0x200000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    elif n < 0x10000000:
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, (n >> 14) & 0x7F | 0x80, n >> 21))
    if n < 0:
        n += UINT64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`; ValueError when truncated or over 10 bytes."""
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError(f"varint longer than 10 bytes ending at byte {pos}")


def read_len(buf: bytes, pos: int, end: int, what: str = "field") -> tuple[int, int]:
    """(start, stop) of the payload of the length-delimited `what` whose length prefix is at `pos`."""
    n, pos = read_varint(buf, pos, end)
    stop = pos + n
    if stop > end:
        raise ValueError(f"truncated {what}: {n} bytes declared at byte {pos}, {end - pos} left")
    return pos, stop


def skip_field(buf: bytes, pos: int, end: int, wire_type: int, field: int) -> int:
    """The position after the payload (at `pos`) of a field the decoder does not know."""
    if wire_type == WT_VARINT:
        return read_varint(buf, pos, end)[1]
    if wire_type == WT_I64:
        stop = pos + 8
    elif wire_type == WT_LEN:
        stop = read_len(buf, pos, end, f"field {field}")[1]
    elif wire_type == WT_I32:
        stop = pos + 4
    else:  # 3/4 are groups (see the module docstring); 6/7 do not exist
        raise ValueError(f"unsupported wire type {wire_type} for field {field} at byte {pos}")
    if stop > end:
        raise ValueError(f"truncated field {field} at byte {pos}")
    return stop


def iter_fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field, wire type, start, stop) of each field in `buf[pos:end]`; a varint gives its value as `start`.

    Convenient, not fast: a generator step per field. Decoders on a hot path read keys inline instead.
    """
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if wt == WT_VARINT:
            value, pos = read_varint(buf, pos, end)
            yield field, wt, value, pos
        elif wt == WT_LEN:
            start, pos = read_len(buf, pos, end)
            yield field, wt, start, pos
        elif wt in (WT_I64, WT_I32):
            start, pos = pos, pos + (8 if wt == WT_I64 else 4)
            if pos > end:
                raise ValueError(f"truncated field {field} at byte {start}")
            yield field, wt, start, pos
        else:
            raise ValueError(f"unsupported wire type {wt} for field {field} at byte {pos}")
