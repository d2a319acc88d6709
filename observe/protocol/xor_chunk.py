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
floats at the very end (`array("d", ...)` over their bytes, no arithmetic), so NaN payloads such as the staleness
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
from array import array
from collections.abc import Sequence
from typing import Final

__all__ = [
    "ENCODING_FLOAT_HISTOGRAM",
    "ENCODING_HISTOGRAM",
    "ENCODING_NONE",
    "ENCODING_XOR",
    "XorChunkError",
    "decode_xor",
    "decode_xor_bits",
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
    ts, bits = decode_xor_bits(data)
    return ts, _floats(bits)


def decode_xor_bits(data: bytes) -> tuple[list[int], list[int]]:
    """Like `decode_xor`, the values as their 64-bit patterns (IEEE 754, as uint64): what a caller that
    only forwards them (remote-write wants the same 8 bytes) keeps, with no float made at all."""
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
    ts = [t]
    vs = [vbits]
    if n > 1:
        delta, pos = _varint(data, pos + 8, "second timestamp delta")
        delta &= _UINT64 - 1
        if delta > _INT64_MAX:  # negative: keep the ints small and signed in the loop
            delta -= _UINT64
        _decode_bits(data, pos, n - 1, t, delta, vbits, ts, vs)
        if min(ts) < _INT64_MIN or max(ts) > _INT64_MAX:
            # Go's int64 additions wrap; ours are exact and congruent mod 2**64, so reduce them.
            ts = [(x - _INT64_MIN) % _UINT64 + _INT64_MIN for x in ts]
    return ts, vs


def _floats(bits: list[int]) -> list[float]:
    # Reinterpret, never compute: a float made from its 8 bytes keeps its NaN payload.
    return array("d", struct.pack(f"={len(bits)}Q", *bits)).tolist()


def _decode_bits(
    data: bytes, pos: int, count: int, t: int, delta: int, vbits: int, ts: list[int], vs: list[int]
) -> None:
    """Append the `count` samples after the first, whose bits start at byte `pos`, to `ts` and `vs`.

    The second sample has no delta-of-delta (its delta came as a uvarint before `pos`): reading it as
    if a '0' bit (dod 0) preceded its value lets one loop decode every sample, with `t` still the first
    timestamp and `delta` the first delta.

    Bit reader: `buf` holds `nbuf` unread bits at its low end, above them bits already read, which
    each refill masks off before appending the next 64-bit word, so `buf` stays under 2**128. Every
    read of n <= 64 bits first makes `nbuf >= n`. The words are the bytes zero-padded to whole words
    plus 3 spare words (a sample is at most 4+64+2+11+64 = 145 bits): a truncated chunk reads zeros or
    runs off the list (IndexError), and the bits used are checked against the real length at the end.
    """
    tail = data[pos:]
    real_bits = len(tail) * 8 + 1  # and the virtual '0' before the second value
    nwords = (len(tail) + 7) // 8 + 3
    words = struct.unpack(f">{nwords}Q", tail + bytes(nwords * 8 - len(tail)))
    mask = _MASK
    append_t = ts.append
    append_v = vs.append
    wi = 0
    buf = 0
    nbuf = 1  # the virtual '0'
    leading = trailing = 0  # Go's iterator starts with both 0 too
    try:
        for _ in range(count):
            if nbuf < 64:
                buf = ((buf & mask[nbuf]) << 64) | words[wi]
                wi += 1
                nbuf += 64
            # One 3-bit peek covers the usual case, dod 0 ('0'), then the value's control bits.
            peek = (buf >> (nbuf - 3)) & 7
            if peek < 4:
                t += delta
                append_t(t)
                if peek < 2:  # '0 0': value unchanged
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
                # A dod bucket: prefix 10 (14 bits), 110 (17), 1110 (20) or 1111 (64).
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
                if nbuf < sz + 2:
                    buf = ((buf & mask[nbuf]) << 64) | words[wi]
                    wi += 1
                    nbuf += 64
                nbuf -= sz
                dod = (buf >> nbuf) & mask[sz]
                if sz == 64:
                    if dod > _INT64_MAX:
                        dod -= _UINT64
                elif dod > 1 << (sz - 1):  # bitRange: -(2**(sz-1) - 1) .. 2**(sz-1)
                    dod -= 1 << sz
                delta += dod
                t += delta
                append_t(t)
                nbuf -= 1
                if not (buf >> nbuf) & 1:  # '0': value unchanged
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
            # A new window: 5 bits leading zeros, 6 bits meaningful-bit count (0 means 64), the bits.
            if nbuf < 11:
                buf = ((buf & mask[nbuf]) << 64) | words[wi]
                wi += 1
                nbuf += 64
            nbuf -= 11
            window = (buf >> nbuf) & 0x7FF
            leading = window >> 6
            mbits = (window & 63) or 64
            trailing = 64 - leading - mbits
            if trailing < 0:
                raise XorChunkError(
                    f"XOR chunk corrupt: sample {len(vs) + 1} of {count + 1} has a value window of "
                    f"{leading} leading zeros and {mbits} meaningful bits, over 64"
                )
            if nbuf < mbits:
                buf = ((buf & mask[nbuf]) << 64) | words[wi]
                wi += 1
                nbuf += 64
            nbuf -= mbits
            vbits ^= ((buf >> nbuf) & mask[mbits]) << trailing
            append_v(vbits)
    except IndexError:
        raise XorChunkError(
            f"XOR chunk truncated: {len(tail)} bytes after byte {pos} end before sample {len(vs) + 1} "
            f"of {count + 1}"
        ) from None
    used = 1 + wi * 64 - nbuf  # the virtual bit plus the words loaded, less what is left unread
    if used > real_bits:
        raise XorChunkError(
            f"XOR chunk truncated: its {count + 1} samples need {used - 1} bits after byte {pos}, "
            f"it has {real_bits - 1} ({len(tail)} bytes)"
        )


# -- encoder ---------------------------------------------------------------------------------------


class _BitWriter:
    """Most-significant-bit-first writer; whole bytes move to `out` once 64 bits have gathered, so the
    accumulator stays under 2**128 however long the chunk."""

    __slots__ = ("acc", "nacc", "out")

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.nacc = 0

    def write(self, value: int, nbits: int) -> None:
        self.acc = (self.acc << nbits) | (value & _MASK[nbits])
        self.nacc += nbits
        if self.nacc >= 64:
            keep = self.nacc & 7
            self.out += (self.acc >> keep).to_bytes(self.nacc >> 3, "big")
            self.acc &= _MASK[keep]
            self.nacc = keep

    def getvalue(self) -> bytes:
        pad = -self.nacc % 8  # the last byte is zero-padded, as bstream leaves it
        return bytes(self.out) + (self.acc << pad).to_bytes((self.nacc + pad) >> 3, "big")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _fits(dod: int, nbits: int) -> bool:
    # xor.go's bitRange: one more positive value than two's complement holds, one fewer negative.
    return -((1 << (nbits - 1)) - 1) <= dod <= 1 << (nbits - 1)


def _to_int64(x: int) -> int:
    return (x - _INT64_MIN) % _UINT64 + _INT64_MIN


def encode_xor(timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    """An XOR chunk of these samples, byte for byte what Prometheus 2.42's `xorAppender` writes.

    For tests and round trips, not a hot path. Timestamps must be int64 milliseconds (Prometheus only
    appends them in increasing order, but the encoding, like Go's, wraps any difference at 64 bits);
    at most 65535 samples (the uint16 count).
    """
    n = len(timestamps)
    if n != len(values):
        raise ValueError(f"encode_xor: {n} timestamps but {len(values)} values")
    if n > _MAX_SAMPLES:
        raise ValueError(f"encode_xor: {n} samples do not fit the chunk's uint16 count (max {_MAX_SAMPLES})")
    for i, t in enumerate(timestamps):
        if not _INT64_MIN <= t <= _INT64_MAX:
            raise ValueError(f"encode_xor: timestamp {i} ({t}) does not fit in an int64")
    bits = [int.from_bytes(struct.pack(">d", v), "big") for v in values]  # bits, never arithmetic
    w = _BitWriter()
    w.write(n, 16)
    if n == 0:
        return w.getvalue()
    zigzag = ((timestamps[0] << 1) ^ (timestamps[0] >> 63)) & (_UINT64 - 1)
    for b in _uvarint(zigzag):
        w.write(b, 8)
    w.write(bits[0], 64)
    leading, trailing = 0xFF, 0  # 0xff: no window yet, so the first XOR always writes one
    t_delta = 0
    for i in range(1, n):
        new_delta = (timestamps[i] - timestamps[i - 1]) & (_UINT64 - 1)  # uint64(t - a.t)
        if i == 1:
            for b in _uvarint(new_delta):
                w.write(b, 8)
        else:
            dod = _to_int64(new_delta - t_delta)  # int64(tDelta - a.tDelta)
            if dod == 0:
                w.write(0, 1)
            elif _fits(dod, 14):
                w.write(0b10, 2)
                w.write(dod, 14)
            elif _fits(dod, 17):
                w.write(0b110, 3)
                w.write(dod, 17)
            elif _fits(dod, 20):
                w.write(0b1110, 4)
                w.write(dod, 20)
            else:
                w.write(0b1111, 4)
                w.write(dod, 64)
        t_delta = new_delta
        xor = bits[i] ^ bits[i - 1]
        if xor == 0:
            w.write(0, 1)
            continue
        w.write(1, 1)
        lead = min(64 - xor.bit_length(), 31)  # clamped to what 5 bits hold
        trail = (xor & -xor).bit_length() - 1
        if leading != 0xFF and lead >= leading and trail >= trailing:
            w.write(0, 1)
            w.write(xor >> trailing, 64 - leading - trailing)
        else:
            leading, trailing = lead, trail
            sig = 64 - lead - trail
            w.write(1, 1)
            w.write(lead, 5)
            w.write(sig, 6)  # 64 comes out as 0 in 6 bits; the decoder reads 0 as 64
            w.write(xor >> trail, sig)
    return w.getvalue()


# -- benchmark -------------------------------------------------------------------------------------


def realistic_chunks(series: int = 1000, per_chunk: int = 120, seed: int = 1) -> list[bytes]:
    """XOR chunks shaped like a 15s scrape: ms jitter on timestamps; a third each counters (integer
    increments), gauges (random floats) and constants. For the benchmark and tests."""
    import random

    rnd = random.Random(seed)
    chunks = []
    for s in range(series):
        t = 1_700_000_000_000 + rnd.randrange(15_000)
        ts: list[int] = []
        vs: list[float] = []
        v = float(rnd.randrange(1000))
        for _ in range(per_chunk):
            ts.append(t)
            vs.append(v)
            t += 15_000 + rnd.choice((0, 0, 0, 1, -1, 2, -3, 5))
            kind = s % 3
            if kind == 0:
                v += rnd.randrange(0, 50)
            elif kind == 1:
                v = rnd.random() * 100
        chunks.append(encode_xor(ts, vs))
    return chunks


def _bench(rounds: int = 5) -> float:
    """Samples/s of `decode_xor` over `realistic_chunks()` (best of `rounds`); run as `python -m`."""
    import time

    chunks = realistic_chunks()
    total = sum(num_samples(c) for c in chunks)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for c in chunks:
            decode_xor(c)
        best = min(best, time.perf_counter() - t0)
    return total / best


if __name__ == "__main__":
    print(f"decode_xor: {_bench():,.0f} samples/s (1000 chunks x 120 samples, 15s scrape, best of 5)")
