"""One cluster's federation body -> remote-write request bodies, remembering each series across cycles.

The label set of a series does not change between cycles, so the work that depends only on it —
parsing the labels, stamping the cluster, relabelling, sorting and protobuf-encoding them — is done
once, when the series first appears, and cached under the series' exact text in the exposition
(`name{labels}`). A steady-state cycle then costs, per line: one split, one dict lookup, one float
parse and one concatenation of cached label bytes with 11 bytes of sample.

The same memory gives staleness for free: a cached series not seen in this cycle has vanished, so it
gets Prometheus' staleness marker (a NaN with bits 0x7ff0000000000002) and leaves the cache; when the
whole pull fails every cached series gets one, as Prometheus does on a failed scrape. The cache thus
holds exactly the series of the last successful cycle: bounded by the source, never growing past it.

Not thread-safe: each cluster's cache is used by one task at a time (the cluster's pull loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from observe.protocol.remote_write import (
    append_series,
    compress,
    encode_labels,
    encode_stale_series,
    encode_write_request,
)
from observe.sources.exposition import ExpositionError, parse_series, parse_timestamp, parse_value, split_line
from observe.transform.normalize import Normalizer

# Entry layout, a list for speed (attribute access on a slotted object costs ~2x an index here):
#   [0] encoded label bytes, or None when relabel_configs dropped the series
#   [1] timestamp (ms) of the last sample taken, to skip a sample the source has not renewed
#   [2] number of the last cycle the series was seen in
_LABELS, _LAST_TS, _SEEN = 0, 1, 2


# Lines are split 1 MiB at a time: a list of all 100k lines of a body would hold another ~35 MiB per
# cluster at the peak, for no speed gain over splitting slices (one extra copy of the slice, ~2%).
_SLICE_CHARS: Final = 1 << 20


def _numbered_lines(body: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of every line, without materialising them all at once."""
    lineno = 0
    pos, end_of_body = 0, len(body)
    while pos < end_of_body:
        end = body.find("\n", pos + _SLICE_CHARS)
        if end < 0:
            end = end_of_body
        for line in body[pos:end].split("\n"):
            lineno += 1
            yield lineno, line
        pos = end + 1


def _value(text: str) -> float:
    """`parse_value`'s semantics at `float()`'s speed: float() alone also takes `1_000`, and takes
    out-of-range numbers as ±Inf where Prometheus refuses them, so those shapes go to the strict parser."""
    if "_" in text:
        return parse_value(text)
    value = float(text)
    if value - value != 0.0:  # NaN or ±Inf: let the strict parser decide what the text really was
        return parse_value(text)
    return value


def _timestamp(text: str) -> int:
    return parse_timestamp(text) if "_" in text else int(text)


@dataclass(frozen=True, slots=True)
class CycleBatch:
    """What one cycle produced, ready for the queue."""

    payloads: list[tuple[bytes, int]]  # (snappy-compressed WriteRequest, samples inside)
    series: int  # series lines read from the source
    samples: int  # samples encoded (fresh + stale)
    stale: int  # staleness markers among them
    unchanged: int  # series whose timestamp the source had not renewed since the last cycle
    dropped_by_relabel: int  # series relabel_configs dropped on purpose
    bad_lines: int  # lines skipped as malformed


class SeriesCache:
    """Turns one cluster's federation bodies into remote-write payloads; see the module docstring."""

    def __init__(
        self,
        normalizer: Normalizer,
        *,
        max_samples_per_send: int,
        on_bad_line: Callable[[int, str], None] | None = None,
    ) -> None:
        self._normalizer = normalizer
        self._max_samples = max_samples_per_send
        self._on_bad_line = on_bad_line
        self._entries: dict[str, list[object]] = {}
        self._cycle = 0

    def __len__(self) -> int:
        return len(self._entries)

    def process(self, body: str, now_ms: int) -> CycleBatch:
        """Encode every sample of a successful pull, and stale markers for series that vanished."""
        self._cycle += 1
        cycle = self._cycle
        entries = self._entries
        max_samples = self._max_samples
        payloads: list[tuple[bytes, int]] = []
        parts: list[bytes] = []  # pieces of the request being built: one join per request, not per series
        in_request = 0
        series = unchanged = dropped = bad = 0
        for lineno, line in _numbered_lines(body):
            if not line or line[0] == "#":
                continue
            # Hot path: federation writes `series value timestamp` with single spaces, and a cache hit
            # proves the split right (a cached key is a whole, valid series text). Anything else takes
            # the careful path through the exposition parser.
            head, _, ts_text = line.rpartition(" ")
            key, _, value_text = head.rpartition(" ")
            entry = entries.get(key)
            try:
                if entry is None:
                    split = split_line(line)
                    if split is None:
                        continue
                    key, value_text, ts_text_or_none = split
                    ts_text = ts_text_or_none or ""
                    entry = entries.get(key)
                    if entry is None:
                        entry = self._prepare(key)
                        entries[key] = entry
                series += 1
                entry[_SEEN] = cycle
                label_bytes = entry[_LABELS]
                if label_bytes is None:
                    dropped += 1
                    continue
                ts = _timestamp(ts_text) if ts_text else now_ms
                if ts <= entry[_LAST_TS]:  # type: ignore[operator]
                    unchanged += 1  # the source has not scraped it again: re-sending would be a duplicate
                    continue
                value = _value(value_text)
                append_series(parts, label_bytes, value, ts)  # type: ignore[arg-type]
                entry[_LAST_TS] = ts
            except (ExpositionError, ValueError) as exc:
                bad += 1
                if self._on_bad_line is not None:
                    self._on_bad_line(lineno, str(exc))
                continue
            in_request += 1
            if in_request == max_samples:
                payloads.append((compress(b"".join(parts)), in_request))
                parts.clear()
                in_request = 0
        if in_request:
            payloads.append((compress(b"".join(parts)), in_request))
        fresh = sum(n for _, n in payloads)
        stale_series: list[bytes] = []
        stale = self._expire(stale_series, now_ms, keep_cycle=cycle)
        payloads += self._pack(stale_series)
        return CycleBatch(payloads, series, fresh + stale, stale, unchanged, dropped, bad)

    def fail(self, now_ms: int) -> CycleBatch:
        """The pull failed: every series of the last cycle goes stale now, as on a failed Prometheus scrape."""
        out: list[bytes] = []
        stale = self._expire(out, now_ms, keep_cycle=None)
        return CycleBatch(self._pack(out), 0, stale, stale, 0, 0, 0)

    def _prepare(self, key: str) -> list[object]:
        name, labels = parse_series(key)
        merged = dict(labels)
        merged["__name__"] = name
        final = self._normalizer.apply(merged)
        if final is None or not final.get("__name__"):
            return [None, 0, 0]
        ordered = tuple(sorted((k, v) for k, v in final.items() if v != ""))  # empty value == absent label
        return [encode_labels(ordered), -(2**63), 0]

    def _expire(self, out: list[bytes], now_ms: int, *, keep_cycle: int | None) -> int:
        gone = [k for k, e in self._entries.items() if e[_SEEN] != keep_cycle]
        stale = 0
        for key in gone:
            entry = self._entries.pop(key)
            label_bytes = entry[_LABELS]
            if label_bytes is None or entry[_LAST_TS] == -(2**63):
                continue  # dropped by relabel, or never sent: nothing to mark stale at the receiver
            # The marker must be newer than the series' last sample, or the receiver rejects it as out of order.
            ts = max(now_ms, entry[_LAST_TS] + 1)  # type: ignore[operator]
            out.append(encode_stale_series(label_bytes, ts))  # type: ignore[arg-type]
            stale += 1
        return stale

    def _pack(self, series: list[bytes]) -> list[tuple[bytes, int]]:
        n = self._max_samples
        return [
            (compress(encode_write_request(series[i : i + n])), len(series[i : i + n]))
            for i in range(0, len(series), n)
        ]
