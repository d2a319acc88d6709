"""Prometheus' XOR (Gorilla) chunk encoding: decode a chunk into timestamps and values, and encode one.

Spec: https://github.com/prometheus/prometheus/blob/v2.42.0/tsdb/docs/format/chunks.md ("XOR chunk data")
and the code it describes, `tsdb/chunkenc/xor.go` and `tsdb/chunkenc/bstream.go` (v2.42.0):

    uint16 BE sample count | varint (zigzag) t0 | 64 bits v0 | uvarint t1-t0 | v1 | then per sample:
    delta-of-delta   '0' (0) | '10' + 14 bits | '110' + 17 bits | '1110' + 20 bits | '1111' + 64 bits
    value XOR prev   '0' (same) | '10' + meaningful bits in the previous window |
                     '11' + 5 bits leading zeros + 6 bits meaningful-bit count (0 means 64) + those bits

Bits are written most significant first; the last byte is zero-padded. An n-bit delta-of-delta `b` is
two's complement with an off-by-one range, -(2**(n-1) - 1) .. 2**(n-1) (`bitRange`): `b > 2**(n-1)`
means negative. The encoder clamps leading zeros to 31 (5 bits). Timestamps are int64 milliseconds and
the deltas wrap at 64 bits as in Go; values are carried as their 64 bits end to end and only turned into
floats at the very end (`memoryview.cast("d")`, no arithmetic), so NaN payloads such as the staleness
marker 0x7ff0000000000002 come out bit for bit.

Speed (one core, CPython 3.11, `python -m observe.protocol.xor_chunk`): see `_bench`; the decoder reads
the bit stream as 64-bit words (`struct.unpack` over the buffer) into an int of at most 128 bits and
takes the common "delta-of-delta 0" cases from a single 3-bit peek.

Only XOR chunks are decoded here. The remote-read `Chunk.Encoding` enum mirrors `chunkenc.Encoding`;
Prometheus 2.42 has UNKNOWN=0, XOR=1, HISTOGRAM=2 (FLOAT_HISTOGRAM=3 came later); a caller counts and
skips the chunks `is_decodable` says no to.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "ENCODING_FLOAT_HISTOGRAM",
    "ENCODING_HISTOGRAM",
    "ENCODING_NONE",
    "ENCODING_XOR",
    "XorChunkError",
    "decode_xor",
    "encode_xor",
    "is_decodable",
    "num_samples",
]

ENCODING_NONE: Final = 0
"""prompb `Chunk.UNKNOWN`, chunkenc `EncNone`."""
ENCODING_XOR: Final = 1
ENCODING_HISTOGRAM: Final = 2
"""Native histograms (2.40+); not decoded."""
ENCODING_FLOAT_HISTOGRAM: Final = 3
"""Not in 2.42's enum (later releases); not decoded."""

_UINT64: Final = 1 << 64
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_MASK: Final = [(1 << i) - 1 for i in range(129)]
_MAX_SAMPLES: Final = 0xFFFF  # the count header is a uint16


class XorChunkError(ValueError):
    """A truncated or corrupt XOR chunk; the message says at which bit or byte and what."""


def is_decodable(encoding: int) -> bool:
    """Whether `decode_xor` can read chunks of this `Chunk.type` (only XOR)."""
    return encoding == ENCODING_XOR


def num_samples(data: bytes) -> int:
    """The sample count in the chunk's 2-byte header."""
    if len(data) < 2:
        raise XorChunkError(f"XOR chunk of {len(data)} bytes is shorter than its 2-byte sample count")
    return data[0] << 8 | data[1]


# -- decoder ---------------------------------------------------------------------------------------


def _varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    result = shift = 0
    size = len(data)
    while True:
        if pos >= size:
            raise XorChunkError(f"XOR chunk truncated in the {what} varint at byte {pos} of {size}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise XorChunkError(f"XOR chunk: {what} varint longer than 10 bytes ending at byte {pos}")


def decode_xor(data: bytes) -> tuple[list[int], list[float]]:
    """(timestamps in ms, values) of an XOR chunk's samples, exactly as Prometheus wrote them.

    Raises XorChunkError when the chunk ends before its declared sample count or a value window is
    impossible (leading zeros + meaningful bits > 64). Bytes after the last sample are ignored, as Go does.
    """
    n = num_samples(data)
    if n == 0:
        return [], []
    size = len(data)
    raw, pos = _varint(data, 2, "first timestamp")
    raw &= _UINT64 - 1
    t = (raw >> 1) ^ -(raw & 1)  # zigzag (Go's binary.PutVarint)
    if pos + 8 > size:
        raise XorChunkError(f"XOR chunk truncated in the first value at byte {pos} of {size}")
    vbits = int.from_bytes(data[pos : pos + 8], "big")
    pos += 8
    ts = [t]
    vs = [vbits]
    if n > 1:
        delta, pos = _varint(data, pos, "second timestamp delta")
        delta &= _UINT64 - 1
        if delta > _INT64_MAX:  # a negative delta: keep the ints small (and signed) for the loop
            delta -= _UINT64
        t += delta
        ts.append(t)
        _decode_bits(data, pos, n - 1, t, delta, vbits, ts, vs)
    if ts[0] < _INT64_MIN or ts[-1] > _INT64_MAX or min(ts) < _INT64_MIN or max(ts) > _INT64_MAX:
        # Go's int64 additions wrap; ours are exact, so reduce mod 2**64 (the sums are congruent).
        ts = [(x - _INT64_MIN) % _UINT64 + _INT64_MIN for x in ts]
    return ts, _floats(vs)


def _floats(bits: list[int]) -> list[float]:
    # Reinterpret, never compute: a float built from its bytes keeps its NaN payload.
    return memoryview(struct.pack(f"={len(bits)}Q", *bits)).cast("d").tolist()


def _decode_bits(
    data: bytes, pos: int, remaining: int, t: int, delta: int, vbits: int, ts: list[int], vs: list[int]
) -> None:
    """Decode `remaining` samples from byte `pos` on: the second value, then dod + value per sample.

    The bit reader: `buf` holds `nbuf` unread bits in its low end (plus consumed bits above them, masked
    off at each refill, so it stays under 2**128); a refill appends the next 64-bit word. Every read
    `n <= 64` first makes sure `nbuf >= n`. The words are the remaining bytes zero-padded to whole words
    plus 3 spare zero words (a sample reads at most 145 bits), so a truncated chunk reads zeros; the
    bits used are checked against the real length at the end. 8 bytes of zeros decode to 32 samples at
    most, so a truncated chunk cannot make the loop read far past the padding: an IndexError there
    is also truncation.
    """
    tail = data[pos:]
    real_bits = len(tail) * 8
    nwords = (len(tail) + 7) // 8 + 3
    words = struct.unpack(f">{nwords}Q", tail + bytes(nwords * 8 - len(tail)))
    wi = 0
    buf = 0
    nbuf = 0
    leading = trailing = 0
    mask = _MASK
    append_t = ts.append
    append_v = vs.append
    first = True  # the second sample has no delta-of-delta, only a value
    try:
        for _ in range(remaining):
            if nbuf < 64:
                buf = ((buf & mask[nbuf]) << 64) | words[wi]
                wi += 1
                nbuf += 64
            if first:
                first = False
            else:
                peek = (buf >> (nbuf - 3)) & 7
                if peek < 4:  # '0' delta-of-delta 0, then the value's first bits
                    t += delta
                    append_t(t)
                    if peek < 2:  # '0 0': same value
                        nbuf -= 2
                        append_v(vbits)
                        continue
                    nbuf -= 3
                    if peek == 2:  # '0 1 0': XOR within the previous window
                        mbits = 64 - leading - trailing
                        if nbuf < mbits:
                            buf = ((buf & mask[nbuf]) << 64) | words[wi]
                            wi += 1
                            nbuf += 64
                        nbuf -= mbits
                        vbits ^= ((buf >> nbuf) & mask[mbits]) << trailing
                        append_v(vbits)
                        continue
                    # '0 1 1': a new window, below
                else:
                    # '1...': a delta-of-delta bucket; the prefix is 10, 110, 1110 or 1111.
                    peek = (buf >> (nbuf - 4)) & 15
                    if peek < 12:
                        nbuf -= 2
                        sz = 14
                    elif peek < 14:
                        nbuf -= 3
                        sz = 17
                    else:
                        nbuf -= 4
                        sz = 20 if peek == 14 else 64
                    if nbuf < sz:
                        buf = ((buf & mask[nbuf]) << 64) | words[wi]
                        wi += 1
                        nbuf += 64
                    nbuf -= sz
                    dod = (buf >> nbuf) & mask[sz]
                    if sz == 64:
                        if dod > _INT64_MAX:
                            dod -= _UINT64
                    elif dod > 1 << (sz - 1):
                        dod -= 1 << sz
                    delta += dod
                    t += delta
                    append_t(t)
                    if nbuf < 2:
                        buf = ((buf & mask[nbuf]) << 64) | words[wi]
                        wi += 1
                        nbuf += 64
                    nbuf -= 1
                    if not (buf >> nbuf) & 1:  # '0': same value
                        append_v(vbits)
                        continue
                    nbuf -= 1
                    if not (buf >> nbuf) & 1:  # '1 0': previous window
                        mbits = 64 - leading - trailing
                        if nbuf < mbits:
                            buf = ((buf & mask[nbuf]) << 64) | words[wi]
                            wi += 1
                            nbuf += 64
                        nbuf -= mbits
                        vbits ^= ((buf >> nbuf) & mask[mbits]) << trailing
                        append_v(vbits)
                        continue
                    # '1 1': a new window, below
                if nbuf < 64:  # 11 bits of window plus up to 64 meaningful bits
                    buf = ((buf & mask[nbuf]) << 64) | words[wi]
                    wi += 1
                    nbuf += 64
            # The second sample arrives here for its value; the others only for a new window.
            if ts[-1] is not t:
                pass
            if len(vs) < len(ts):
                pass
            nbuf, buf, wi, vbits, leading, trailing = _read_value(
                buf, nbuf, words, wi, vbits, leading, trailing, len(vs) == 1, real_bits
            )
            append_v(vbits)
    except IndexError:
        raise XorChunkError(
            f"XOR chunk truncated: {len(tail)} bytes of samples after byte {pos} end before sample "
            f"{len(vs) + 1} of {len(vs) + remaining - (len(vs) - 1)}"
        ) from None
    used = wi * 64 - nbuf
    if used > real_bits:
        raise XorChunkError(
            f"XOR chunk truncated: its {len(vs)} samples need {used} bits after byte {pos}, "
            f"it has {real_bits}"
        )
