"""A plain XOR chunk decoder, a line-by-line reading of Prometheus' `tsdb/chunkenc/xor.go` iterator.

https://github.com/prometheus/prometheus/blob/v2.42.0/tsdb/chunkenc/xor.go

One bit at a time, Go's uint64/int64 wrapping spelled out: the oracle `observe.protocol.xor_chunk`'s
word-at-a-time decoder is tested against, and the "before" of its benchmark
(`python -m tests.xor_reference`). Returns value *bits*, so NaN payloads compare exactly.
"""

from __future__ import annotations

import time

U64 = (1 << 64) - 1


def _int64(x: int) -> int:
    x &= U64
    return x - (1 << 64) if x >> 63 else x


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0  # in bits

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError(f"EOF at bit {self.pos}")
        b = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return b

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def uvarint(self) -> int:
        x = shift = 0
        while True:
            b = self.bits(8)
            x |= (b & 0x7F) << shift
            if b < 0x80:
                return x & U64
            shift += 7


def decode_reference(data: bytes) -> list[tuple[int, int]]:
    """[(timestamp_ms, value_bits), ...]; ValueError on truncation."""
    total = int.from_bytes(data[:2], "big")
    br = _Bits(data[2:])
    out: list[tuple[int, int]] = []
    t = val = 0
    leading = trailing = 0
    t_delta = 0
    for i in range(total):
        if i == 0:
            raw = br.uvarint()
            t = _int64((raw >> 1) ^ -(raw & 1))
            val = br.bits(64)
            out.append((t, val))
            continue
        if i == 1:
            t_delta = br.uvarint()
            t = _int64(t + t_delta)
        else:
            d = 0
            for _ in range(4):
                d <<= 1
                if br.bit() == 0:
                    break
                d |= 1
            sz = {0b0: 0, 0b10: 14, 0b110: 17, 0b1110: 20, 0b1111: 64}[d]
            dod = 0
            if sz:
                bits = br.bits(sz)
                if sz != 64 and bits > (1 << (sz - 1)):
                    bits -= 1 << sz
                dod = _int64(bits)
            t_delta = (_int64(t_delta) + dod) & U64
            t = _int64(t + t_delta)
        if br.bit() == 1:
            if br.bit() == 1:
                leading = br.bits(5)
                mbits = br.bits(6) or 64
                trailing = 64 - leading - mbits
            mbits = 64 - leading - trailing
            val ^= br.bits(mbits) << trailing
        out.append((t, val))
    return out


def _bench(rounds: int = 3) -> float:
    from observe.protocol.xor_chunk import num_samples, realistic_chunks

    chunks = realistic_chunks()
    total = sum(num_samples(c) for c in chunks)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for c in chunks:
            decode_reference(c)
        best = min(best, time.perf_counter() - t0)
    return total / best


if __name__ == "__main__":
    print(f"decode_reference (bit at a time): {_bench():,.0f} samples/s (same chunks as xor_chunk._bench)")
