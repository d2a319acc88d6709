"""One cluster's federation body -> remote-write request bodies, remembering each series across cycles.

The label set of a series does not change between cycles, so the work that depends only on it —
parsing the labels, stamping the cluster, relabelling, sorting and protobuf-encoding them — is done
once, when the series first appears, and cached under the hash of the series' exact text in the
exposition (`name{labels}`). A steady-state cycle then costs, per line: one split, one hash, one
look-up, two more (value and timestamp text) and one concatenation of cached label bytes with the sample.

A cycle reads the body a piece at a time, as it arrives (`begin`, `Cycle.feed`, `Cycle.finish`), so no
whole body needs to be held; `process` is the same over a body already in memory.

The same memory gives staleness for free: a cached series not seen in this cycle has vanished, so it
gets Prometheus' staleness marker (a NaN with bits 0x7ff0000000000002) and leaves the cache; when the
whole pull fails every cached series gets one, as Prometheus does on a failed scrape. The cache thus
holds exactly the series of the last successful cycle: bounded by the source, never growing past it.

Not thread-safe: each cluster's cache is used by one task at a time (the cluster's pull loop, and the
parsing thread it hands the pieces to; see `Cycle`).
"""

from __future__ import annotations

import struct
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from operator import length_hint
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

# Series are keyed by `hash()` of their text, not by the text: the text was 40% of what the cache held.
# The price is a collision risk: bytes hash with SipHash-1-3 under a per-process random key (never set
# PYTHONHASHSEED for the collector), so a new series matches one of the n cached ones with probability
# n / 2**64 (5e-15 at 100k series); the two would then share one label set until one of them vanishes.
#
# Layout: one slot per series, in the order the series first appeared, in flat arrays rather than an
# object per series (a dict entry, its key int and a list of five fields took ~180 B a series more:
# 603 B against 422 B, `tracemalloc` after a 100k-series body; the encoded labels are ~385 B of it):
#   _hashes[slot]    hash of the series text; _FREE for a slot whose series left (one _FREE guard
#                    follows the last slot)
#   _last[slot]      timestamp (ms) of the last sample sent, to skip one the source has not renewed;
#                    int64's maximum for a series relabel dropped, so it always lands on that branch
#   _prefixes[slot]  the `timeseries` field's tag and length (for a sample of the usual size, see
#                    `series_prefix`), the encoded labels and the sample's bytes before its value (the
#                    same for every sample of that size); b"" when relabel dropped it; None when free
# and an open-addressing index from hash to slot (`_index`, linear probing, -1 empty). Federation
# writes the series in the same order every cycle, so a line's series is nearly always the slot after
# the previous line's: that guess is checked against `_hashes` first and the index is read only when
# it misses (new series, vanished ones). The slots are then read in order, as they lie in memory: the
# dict lookup this replaces cost ~230 ns a line on a 100k-series cache, mostly cache misses.
_FREE: Final = -1  # hash() never returns -1 (CPython turns it into -2)
_INT64_MAX: Final = (1 << 63) - 1
_USUAL_BEFORE, _, _USUAL_FRAME_LEN = sample_frame(1_700_000_000_000)  # every ms timestamp from 2001 to 2286
_MIN_INDEX: Final = 1024

# Timestamp text (bytes) -> (ms, sample bytes before the value, after it, sample field length). Federation
# stamps every series of a scrape target with that scrape's time, so a cycle holds a few hundred
# distinct texts; values repeat a lot too (0, 1, constants of kube-state-metrics). Caching both by
# their text replaces an int()/float() parse and a pack per line with a dict lookup. Values are cleared
# when full: a miss costs ~0.3 µs, and 4096 texts catch as many repeats as 65536 did on the simulated
# fleet (74% against 75%) in a tenth of the memory. Timestamps of past cycles never come back, so the
# frames are cleared at the start of a cycle once they hold more than one cycle needs.
_VALUES_MAX: Final = 4096
_FRAMES_MAX: Final = 65536
_FRAMES_KEEP: Final = 4096

# `process` hands a body over 1 MiB at a time: a list of all 100k lines of a body would hold another
# ~35 MiB per cluster at the peak, for no speed gain over splitting slices.
_SLICE_CHARS: Final = 1 << 20  # bytes (the name predates reading bytes; tests patch it)
_HASH, _SP, _TAB = 35, 32, 9  # b"#", b" ", b"\t"

_pack_double: Final = struct.Struct("<d").pack  # the bytes of remote_write.pack_double, one call less
Frame = tuple[int, bytes, bytes, int]
Piece = tuple[bytes, bytes, bytes]  # a sample's part of a request: prefix, value, timestamp


def _text(raw: bytes) -> str:
    """A line or part of one as text; invalid UTF-8 is a malformed line (the source checked the body)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExpositionError(f"invalid UTF-8 at byte {exc.start} of the line") from None


def _labels_of(prefix: bytes) -> bytes:
    """The encoded labels of a cached prefix: between its tag and length varint and the sample's start."""
    i = 1
    while prefix[i] & 0x80:
        i += 1
    return prefix[i + 1 : -len(_USUAL_BEFORE)]


class _Miss(ValueError):
    """The hot path cannot take a line: the careful path will."""


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
        self._frames: dict[bytes, Frame] = {}  # of the usual field length only: the hot path's
        self._values: dict[bytes, bytes] = {}
        self._reset()

    def _reset(self) -> None:
        self._hashes = array("q", [_FREE])
        self._last = array("q")
        self._prefixes: list[bytes | None] = []
        self._seen = bytearray()  # slot -> 1 once seen in the current cycle (free slots start at 1)
        self._vacant = bytearray()  # slot -> 1 when free: what `_seen` starts from
        self._index = array("i", [-1]) * _MIN_INDEX
        self._mask = _MIN_INDEX - 1
        self._live = 0
        self._freed = 0  # free slots, until the next compaction

    def __len__(self) -> int:
        return self._live

    def process(self, body: bytes | bytearray | str, now_ms: int) -> CycleBatch:
        """Encode every sample of a successful pull, and stale markers for series that vanished.

        `body` is the UTF-8 text exposition, as bytes (what the source hands over) or as text.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        cycle = self.begin(now_ms)
        view = memoryview(body)
        for pos in range(0, len(body), _SLICE_CHARS):
            cycle.feed(bytes(view[pos : pos + _SLICE_CHARS]))
        return cycle.finish(now_ms)

    def begin(self, now_ms: int) -> Cycle:
        """A new cycle: feed it the body as it arrives, then `finish` it (or `abort` it if the pull fails).

        `now_ms` stamps the samples that come without a timestamp.
        """
        self._seen = bytearray(self._vacant)
        if len(self._frames) > _FRAMES_KEEP:
            self._frames.clear()
        return Cycle(self, now_ms)

    def fail(self, now_ms: int) -> CycleBatch:
        """The pull failed: every series of the last cycle goes stale now, as on a failed Prometheus scrape."""
        out: list[bytes] = []
        last = self._last
        for slot, prefix in enumerate(self._prefixes):
            if prefix:  # not free, not dropped by relabel (nothing to mark stale at the receiver)
                # The marker must be newer than the series' last sample, or the receiver rejects it.
                out.append(encode_stale_series(_labels_of(prefix), max(now_ms, last[slot] + 1)))
        self._reset()  # nothing is left: start again small
        return CycleBatch(self._pack(out), 0, len(out), len(out), 0, 0, 0)

    # -- the caches of texts ----------------------------------------------------------------------
    def _usual_frame(self, ts_text: bytes) -> Frame:
        """The hot path's frame for a timestamp text not cached yet; raises ValueError if the text is not
        one parse_timestamp takes or the sample field has an unusual length (the careful path handles
        both)."""
        frame = self._frame(ts_text)
        if frame[3] != _USUAL_FRAME_LEN:
            raise _Miss
        return frame

    def _frame(self, ts_text: bytes) -> Frame:
        frame = self._frames.get(ts_text)
        if frame is not None:
            return frame
        ts = parse_timestamp(_text(ts_text))
        before, after, frame_len = sample_frame(ts)
        frame = (ts, before, after, frame_len)
        if frame_len == _USUAL_FRAME_LEN:
            if len(self._frames) >= _FRAMES_MAX:
                self._frames.clear()
            self._frames[ts_text] = frame
        return frame

    def _value_or_raise(self, value_text: bytes) -> bytes:
        """The hot path's packed value for a text not cached yet; raises ValueError if parse_value would
        refuse it.

        A quarter of the lines miss (counters only grow), so the usual finite number is read here
        without parse_value's calls: float() of the bytes takes what it takes of the text, save the
        blanks it strips (refused below, as parse_value refuses them) and non-ASCII digits (which it
        does not take from bytes); NaN and infinities go through parse_value.
        """
        v = float(value_text)
        if (
            v - v != 0.0
            or b"_" in value_text
            or not value_text.isascii()
            or value_text.strip() is not value_text
        ):
            return self._value(value_text)
        packed = _pack_double(v)
        if len(self._values) >= _VALUES_MAX:
            self._values.clear()
        self._values[value_text] = packed
        return packed

    def _value(self, value_text: bytes) -> bytes:
        packed = pack_double(parse_value(_text(value_text)))
        if len(self._values) >= _VALUES_MAX:
            self._values.clear()
        self._values[value_text] = packed
        return packed

    # -- slots and the index ----------------------------------------------------------------------
    def _find(self, h: int) -> int:
        """The slot of the series whose text hashes to `h`, or -1."""
        index, hashes, mask = self._index, self._hashes, self._mask
        p = h & mask
        while True:
            slot = index[p]
            if slot < 0 or hashes[slot] == h:
                return slot
            p = (p + 1) & mask

    def _find_known(self, h: int) -> int:
        """`_find` for the hot path: raises ValueError when the series is not cached."""
        slot = self._find(h)
        if slot < 0:
            raise _Miss
        return slot

    def _add(self, h: int, prefix: bytes, last: int) -> int:
        """A new slot, after every other one (so slots stay in the order series appeared)."""
        slot = len(self._prefixes)
        self._hashes[slot] = h  # over the guard, which moves one further
        self._hashes.append(_FREE)
        self._last.append(last)
        self._prefixes.append(prefix)
        self._seen.append(1)
        self._vacant.append(0)
        self._live += 1
        if self._live * 4 > len(self._index) * 3:
            self._rebuild_index()
        else:
            self._place(h, slot)
        return slot

    def _place(self, h: int, slot: int) -> None:
        index, mask = self._index, self._mask
        p = h & mask
        while index[p] >= 0:
            p = (p + 1) & mask
        index[p] = slot

    def _rebuild_index(self) -> None:
        size = _MIN_INDEX
        while self._live * 2 > size:  # at most half full after a rebuild
            size *= 2
        self._index = array("i", [-1]) * size
        self._mask = size - 1
        hashes = self._hashes
        for slot, prefix in enumerate(self._prefixes):
            if prefix is not None:
                self._place(hashes[slot], slot)

    def _remove(self, slot: int) -> None:
        """Free `slot` and take it out of the index (backward-shift deletion: no tombstones)."""
        index, hashes, mask = self._index, self._hashes, self._mask
        p = hashes[slot] & mask
        while index[p] != slot:
            p = (p + 1) & mask
        q = p
        while True:
            q = (q + 1) & mask
            other = index[q]
            if other < 0:
                break
            home = hashes[other] & mask
            if (q - home) & mask >= (q - p) & mask:  # `other` may move back to the hole at p
                index[p] = other
                p = q
        index[p] = -1
        hashes[slot] = _FREE
        self._prefixes[slot] = None
        self._vacant[slot] = 1
        self._live -= 1
        self._freed += 1

    def _compact(self) -> None:
        """Drop the free slots, keeping the others in order, once they are a quarter of all."""
        keep = [slot for slot, prefix in enumerate(self._prefixes) if prefix is not None]
        hashes, last, prefixes = self._hashes, self._last, self._prefixes
        self._hashes = array("q", [hashes[s] for s in keep])
        self._hashes.append(_FREE)
        self._last = array("q", [last[s] for s in keep])
        self._prefixes = [prefixes[s] for s in keep]
        self._seen = bytearray(b"\x01") * len(keep)
        self._vacant = bytearray(len(keep))
        self._freed = 0
        self._rebuild_index()

    # -- series -----------------------------------------------------------------------------------
    def _prepare(self, key: str) -> bytes:
        """The cached prefix of a new series (b"" when relabel drops it)."""
        name, labels = parse_series(key)
        merged = dict(labels)
        merged["__name__"] = name
        final = self._normalizer.apply(merged)
        if final is None or not final.get("__name__"):
            return b""
        ordered = tuple(sorted((k, v) for k, v in final.items() if v != ""))  # empty value == absent label
        return series_prefix(encode_labels(ordered), _USUAL_FRAME_LEN) + _USUAL_BEFORE

    def _expire(self, out: list[bytes], now_ms: int) -> int:
        """Every series not seen in this cycle leaves the cache, with a staleness marker if it was sent."""
        seen = self._seen
        prefixes, last = self._prefixes, self._last
        stale = 0
        slot = seen.find(0)  # free slots started as seen: only series that vanished are visited
        while slot >= 0:
            prefix = prefixes[slot]
            if prefix:  # not dropped by relabel (nothing to mark stale at the receiver)
                # The marker must be newer than the series' last sample, or the receiver rejects it.
                out.append(encode_stale_series(_labels_of(prefix), max(now_ms, last[slot] + 1)))
                stale += 1
            self._remove(slot)
            slot = seen.find(0, slot + 1)
        if self._freed * 4 > len(prefixes):
            self._compact()
        return stale

    def _pack(self, series: list[bytes]) -> list[tuple[bytes, int]]:
        n = self._max_samples
        return [
            (compress(encode_write_request(series[i : i + n])), len(series[i : i + n]))
            for i in range(0, len(series), n)
        ]


class Cycle:
    """One cycle of a cache, fed the body a piece at a time (`SeriesCache.begin`).

    `feed` and `finish` may run in a worker thread (the event loop stays free) while `abort` comes from
    the loop, as the pull fails or is cancelled: a lock makes `abort` wait for a piece being read.
    """

    def __init__(self, cache: SeriesCache, now_ms: int) -> None:
        self._cache = cache
        self._now_text = str(now_ms).encode()
        self._payloads: list[tuple[bytes, int]] = []
        self._parts: list[bytes] = []  # pieces of the request being built: one join per request
        self._in_request = 0
        self._unchanged = self._dropped = 0
        self._bad: list[tuple[int, str]] = []  # reported when the cycle finishes, not if it is aborted
        self._carry = b""  # the start of a line whose end has not arrived
        self._lineno = 0  # lines before the current piece
        self._next = 0  # the slot the next line's series is expected in
        # To undo an aborted cycle: the timestamps as they were, and the slots it added.
        self._last_before = array("q", cache._last)
        self._born = len(cache._prefixes)
        self._done = False
        self._lock = threading.Lock()

    def lines(self) -> int:
        """The newlines fed so far."""
        return self._lineno

    def feed(self, data: bytes) -> None:
        """The next piece of the body: any number of bytes, cut anywhere."""
        with self._lock:
            if self._done:
                return  # aborted meanwhile
            lines = data.split(b"\n")
            if self._carry:
                lines[0] = self._carry + lines[0]
            self._carry = lines.pop()
            self._run(lines)

    def finish(self, now_ms: int) -> CycleBatch:
        """The body is complete: its last line, then stale markers (at `now_ms`) for what vanished."""
        with self._lock:
            if self._done:
                raise RuntimeError("the cycle was finished or aborted already")
            self._done = True
            return self._finish(now_ms)

    def _finish(self, now_ms: int) -> CycleBatch:
        if self._carry:
            self._run([self._carry])
            self._carry = b""
        cache = self._cache
        payloads = self._payloads
        if self._in_request:
            payloads.append((compress(b"".join(self._parts)), self._in_request))
            self._parts = []
        fresh = sum(n for _, n in payloads)
        if cache._on_bad_line is not None:
            for lineno, message in self._bad:
                cache._on_bad_line(lineno, message)
        stale_series: list[bytes] = []
        stale = cache._expire(stale_series, now_ms)
        payloads += cache._pack(stale_series)
        unchanged, dropped = self._unchanged, self._dropped
        return CycleBatch(
            payloads, fresh + unchanged + dropped, fresh + stale, stale, unchanged, dropped, len(self._bad)
        )

    def abort(self) -> None:
        """The pull failed after part of the body was fed: the cache is left as before the cycle."""
        with self._lock:
            if self._done:
                return
            self._done = True
            self._undo()

    def _undo(self) -> None:
        cache, born = self._cache, self._born
        cache._live -= len(cache._prefixes) - born  # slots are only ever added during a cycle
        del cache._hashes[born:-1]
        del cache._last[born:]
        del cache._prefixes[born:]
        del cache._seen[born:]
        del cache._vacant[born:]
        cache._last[:] = self._last_before
        cache._rebuild_index()

    def _run(self, lines: list[bytes]) -> None:
        """The hot loop over complete lines; anything unusual goes to `_careful`."""
        cache = self._cache
        hashes, last, prefixes, seen = cache._hashes, cache._last, cache._prefixes, cache._seen
        find = cache._find_known
        frames_get, values_get = cache._frames.get, cache._values.get
        usual_frame, value_of = cache._usual_frame, cache._value_or_raise
        careful = self._careful
        max_samples = cache._max_samples
        parts = self._parts
        in_request, unchanged, dropped, nxt = self._in_request, self._unchanged, self._dropped, self._next
        end_lineno = self._lineno + len(lines)  # a line's number is this less the lines left after it
        it = iter(lines)
        for line in it:
            # Federation writes `series value timestamp` with single spaces. A hit means the series
            # text is one the careful path took (up to a hash collision, see above), and the value and
            # timestamp caches hold only texts parse_value and parse_timestamp took, so a line passing
            # all three reads exactly as split_line would read it. Comments and blank lines miss.
            # Every miss raises ValueError (an exception costs nothing until raised).
            try:
                key, value_text, ts_text = line.rsplit(b" ", 2)
                h = hash(key)
                slot = nxt if hashes[nxt] == h else find(h)
                frame = frames_get(ts_text) or usual_frame(ts_text)
                packed = values_get(value_text) or value_of(value_text)
            except ValueError:
                # The careful path: the exposition parser splits the line and is the judge of it.
                self._unchanged, self._dropped = unchanged, dropped
                slot, piece = careful(line, end_lineno - length_hint(it))
                unchanged, dropped = self._unchanged, self._dropped
                hashes, last, prefixes, seen = cache._hashes, cache._last, cache._prefixes, cache._seen
                if slot >= 0:
                    nxt = slot + 1
                if piece is None:
                    continue
                parts += piece
            else:
                nxt = slot + 1
                seen[slot] = 1
                ts = frame[0]
                if ts <= last[slot]:
                    if prefixes[slot]:
                        unchanged += 1  # the source has not scraped it again: no duplicate
                    else:
                        dropped += 1
                    continue
                last[slot] = ts
                parts += (prefixes[slot], packed, frame[2])  # type: ignore[arg-type]
            in_request += 1
            if in_request == max_samples:
                self._payloads.append((compress(b"".join(parts)), in_request))
                parts.clear()
                in_request = 0
        self._lineno = end_lineno
        self._in_request, self._unchanged, self._dropped, self._next = in_request, unchanged, dropped, nxt

    def _careful(self, line: bytes, lineno: int) -> tuple[int, Piece | None]:
        """(slot or -1, the sample's pieces or None) for a line the hot path did not take."""
        if not line:
            return -1, None
        if line[0] == _HASH:
            if len(line) > 6 and (line[1] == _SP or line[1] == _TAB):  # maybe HELP or TYPE: check it
                try:
                    split_line(_text(line))
                except ExpositionError as exc:
                    self._bad.append((lineno, str(exc)))
            return -1, None
        cache = self._cache
        try:
            split = split_line(_text(line))
            if split is None:
                return -1, None
            key_text, value_str, ts_or_none = split
            frame = cache._frame(ts_or_none.encode() if ts_or_none is not None else self._now_text)
            value_text = value_str.encode()
            packed = cache._values.get(value_text) or cache._value(value_text)
            h = hash(key_text.encode())
            slot = cache._find(h)
            if slot < 0:
                prefix = cache._prepare(key_text)
                slot = cache._add(h, prefix, frame[0] if prefix else _INT64_MAX)
                if not prefix:
                    self._dropped += 1
                    return slot, None
            else:
                cache._seen[slot] = 1
                cached = cache._prefixes[slot]
                if not cached:
                    self._dropped += 1
                    return slot, None
                prefix = cached
                if frame[0] <= cache._last[slot]:
                    self._unchanged += 1
                    return slot, None
                cache._last[slot] = frame[0]
            if frame[3] != _USUAL_FRAME_LEN:  # a timestamp of another varint size: rare
                prefix = series_prefix(_labels_of(prefix), frame[3]) + frame[1]
            return slot, (prefix, packed, frame[2])
        except (ExpositionError, ValueError) as exc:
            self._bad.append((lineno, str(exc)))
            return -1, None
