"""One cluster's federation body -> remote-write request bodies, remembering each series across cycles.

The label set of a series does not change between cycles, so the work that depends only on it —
parsing the labels, stamping the cluster, relabelling, sorting and protobuf-encoding them — is done
once, when the series first appears, and cached under the hash of the series' exact text in the
exposition (`name{labels}`). A steady-state cycle then costs, per line: one split, one hash, one dict
lookup, two more (value and timestamp text) and one concatenation of cached label bytes with the sample.

The body is read as bytes, a 1 MiB slice at a time: no decoded copy of a whole body is ever held.

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

from observe.protocol.exposition import (
    ExpositionError,
    parse_series,
    parse_timestamp,
    parse_value,
    split_line,
)
from observe.protocol.remote_write import (
    compress,
    encode_labels,
    encode_stale_series,
    encode_write_request,
    pack_double,
    sample_frame,
    series_prefix,
)
from observe.transform.normalize import Normalizer

# Series are keyed by `hash()` of their text, not by the text: the text was 40% of what the cache holds
# (~340 B of ~890 B per series, `tracemalloc` on a 100k-series body) and the key int is 36 B. Peak RSS of
# `python -m bench.federate_vs_vmagent` fell by ~60 MiB for 2 x 100k series. The price is a collision
# risk: bytes hash with SipHash-1-3 under a per-process random key (never set PYTHONHASHSEED for the
# collector), so a new series matches one of the n cached ones with probability n / 2**64 (5e-15 at
# 100k series); the two would then share one label set until one of them vanishes.
#
# Entry layout, a list for speed (attribute access on a slotted object costs ~2x an index here):
#   [0] the series' encoded `timeseries` prefix (tag, length, labels), or None when relabel dropped it
#   [1] timestamp (ms) of the last sample taken, to skip a sample the source has not renewed
#   [2] number of the last cycle the series was seen in
#   [3] length of the tag+length head at the start of [0] (the labels follow it)
#   [4] the sample-field length [0]'s length was computed for (see `series_prefix`)
_PREFIX, _LAST_TS, _SEEN, _HEAD_LEN, _FRAME_LEN = 0, 1, 2, 3, 4
_NEVER: Final = -(2**63) - 1  # older than every int64 timestamp: a sample at int64's minimum is news
_USUAL_FRAME_LEN: Final = sample_frame(1_700_000_000_000)[2]  # every ms timestamp from 2001 to 2286

# Timestamp text (bytes) -> (ms, sample bytes before the value, after it, sample field length). Federation
# stamps every series of a scrape target with that scrape's time, so a cycle holds a few hundred
# distinct texts; values repeat a lot too (0, 1, constants of kube-state-metrics). Caching both by
# their text replaces an int()/float() parse and a pack per line with a dict lookup: warm cycles went
# from 2.1 to 1.8 µs per sample (`python -m bench.hot_path`). Cleared when full: a miss costs ~0.3 µs.
_TEXT_CACHE_MAX: Final = 65536


# Lines are split 1 MiB at a time: a list of all 100k lines of a body would hold another ~35 MiB per
# cluster at the peak, for no speed gain over splitting slices (one extra copy of the slice, ~2%).
_SLICE_CHARS: Final = 1 << 20  # bytes (the name predates reading bytes; tests patch it)
_HASH, _SP, _TAB = 35, 32, 9  # b"#", b" ", b"\t"


def _numbered_lines(body: bytes | bytearray) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) of every line, without materialising them all at once."""
    view = memoryview(body)
    lineno = 0
    pos, end_of_body = 0, len(body)
    while pos < end_of_body:
        end = body.find(b"\n", pos + _SLICE_CHARS)
        if end < 0:
            end = end_of_body
        for line in bytes(view[pos:end]).split(b"\n"):
            lineno += 1
            yield lineno, line
        pos = end + 1


def _set_prefix(entry: list[object], labels: bytes, frame_len: int) -> bytes:
    prefix = series_prefix(labels, frame_len)
    entry[_PREFIX], entry[_HEAD_LEN], entry[_FRAME_LEN] = prefix, len(prefix) - len(labels), frame_len
    return prefix


def _text(raw: bytes) -> str:
    """A line or part of one as text; invalid UTF-8 is a malformed line (the source checked the body)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExpositionError(f"invalid UTF-8 at byte {exc.start} of the line") from None


def _labels_of(entry: list[object]) -> bytes:
    return entry[_PREFIX][entry[_HEAD_LEN] :]  # type: ignore[index,no-any-return]


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
        self._entries: dict[int, list[object]] = {}  # hash of the series text -> entry
        self._frames: dict[bytes, tuple[int, bytes, bytes, int]] = {}
        self._values: dict[bytes, bytes] = {}
        self._cycle = 0

    def __len__(self) -> int:
        return len(self._entries)

    def process(self, body: bytes | bytearray | str, now_ms: int) -> CycleBatch:
        """Encode every sample of a successful pull, and stale markers for series that vanished.

        `body` is the UTF-8 text exposition, as bytes (what the source hands over) or as text.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        self._cycle += 1
        cycle = self._cycle
        entries_get = self._entries.get
        frames_get = self._frames.get
        values_get = self._values.get
        max_samples = self._max_samples
        payloads: list[tuple[bytes, int]] = []
        parts: list[bytes] = []  # pieces of the request being built: one join per request, not per series
        in_request = 0
        series = unchanged = dropped = bad = 0
        for lineno, line in _numbered_lines(body):
            if not line:
                continue
            if line[0] == _HASH:
                if len(line) > 6 and (line[1] == _SP or line[1] == _TAB):  # maybe HELP or TYPE: check it
                    try:
                        split_line(_text(line))
                    except ExpositionError as exc:
                        bad += 1
                        if self._on_bad_line is not None:
                            self._on_bad_line(lineno, str(exc))
                continue
            # Hot path: federation writes `series value timestamp` with single spaces. A cache hit means
            # the series text is one the careful path took (up to a hash collision, see above), and the
            # value and timestamp caches hold only texts parse_value and parse_timestamp took, so a line
            # passing all three reads exactly as split_line would read it. Texts are parsed only on a miss.
            head, _, ts_text = line.rpartition(b" ")
            key, _, value_text = head.rpartition(b" ")
            entry = entries_get(hash(key))
            if entry is not None:
                try:
                    frame = frames_get(ts_text) or self._frame(ts_text)
                    packed = values_get(value_text) or self._value(value_text)
                except ExpositionError:
                    entry = None  # a tab or a CR after all (`1 2\t`): the careful path decides
            try:
                if entry is None:
                    # The careful path: the exposition parser splits the line and is the judge of it.
                    split = split_line(_text(line))
                    if split is None:
                        continue
                    key_text, value_str, ts_or_none = split
                    ts_text = ts_or_none.encode() if ts_or_none is not None else str(now_ms).encode()
                    frame = frames_get(ts_text) or self._frame(ts_text)
                    value_text = value_str.encode()
                    packed = values_get(value_text) or self._value(value_text)
                    h = hash(key_text.encode())
                    entry = entries_get(h)
                    if entry is None:
                        entry = self._prepare(key_text)
                        self._entries[h] = entry
                series += 1
                entry[_SEEN] = cycle
                prefix = entry[_PREFIX]
                if prefix is None:
                    dropped += 1
                    continue
                if frame[0] <= entry[_LAST_TS]:  # type: ignore[operator]
                    unchanged += 1  # the source has not scraped it again: re-sending would be a duplicate
                    continue
                if entry[_FRAME_LEN] != frame[3]:  # a timestamp of another varint size: rare
                    prefix = _set_prefix(entry, _labels_of(entry), frame[3])
                parts += (prefix, frame[1], packed, frame[2])  # type: ignore[arg-type]
                entry[_LAST_TS] = frame[0]
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

    def _frame(self, ts_text: bytes) -> tuple[int, bytes, bytes, int]:
        ts = parse_timestamp(_text(ts_text))
        before, after, frame_len = sample_frame(ts)
        if len(self._frames) >= _TEXT_CACHE_MAX:
            self._frames.clear()
        frame = self._frames[ts_text] = (ts, before, after, frame_len)
        return frame

    def _value(self, value_text: bytes) -> bytes:
        packed = pack_double(parse_value(_text(value_text)))
        if len(self._values) >= _TEXT_CACHE_MAX:
            self._values.clear()
        self._values[value_text] = packed
        return packed

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
            return [None, _NEVER, 0, 0, -1]
        ordered = tuple(sorted((k, v) for k, v in final.items() if v != ""))  # empty value == absent label
        entry: list[object] = [None, _NEVER, 0, 0, -1]
        _set_prefix(entry, encode_labels(ordered), _USUAL_FRAME_LEN)
        return entry

    def _expire(self, out: list[bytes], now_ms: int, *, keep_cycle: int | None) -> int:
        gone = [k for k, e in self._entries.items() if e[_SEEN] != keep_cycle]
        stale = 0
        for key in gone:
            entry = self._entries.pop(key)
            if entry[_PREFIX] is None or entry[_LAST_TS] == _NEVER:
                continue  # dropped by relabel, or never sent: nothing to mark stale at the receiver
            # The marker must be newer than the series' last sample, or the receiver rejects it as out of order.
            ts = max(now_ms, entry[_LAST_TS] + 1)  # type: ignore[operator]
            out.append(encode_stale_series(_labels_of(entry), ts))
            stale += 1
        return stale

    def _pack(self, series: list[bytes]) -> list[tuple[bytes, int]]:
        n = self._max_samples
        return [
            (compress(encode_write_request(series[i : i + n])), len(series[i : i + n]))
            for i in range(0, len(series), n)
        ]
