"""Prometheus remote-read wire format: encode a `ReadRequest`, decode both kinds of response.

Docs: https://prometheus.io/docs/prometheus/latest/querying/remote_read_api/
Schema (package `prometheus`, as compiled into Prometheus 2.42): `prompb/remote.proto`, `prompb/types.proto`;
framing: `storage/remote/chunked.go`; server: `storage/remote/read_handler.go`, `storage/remote/codec.go`.

    ReadRequest   { repeated Query queries = 1; repeated ResponseType accepted_response_types = 2; }
                  // ResponseType: SAMPLES = 0, STREAMED_XOR_CHUNKS = 1 (packed, as proto3 writes it)
    Query         { int64 start_timestamp_ms = 1; int64 end_timestamp_ms = 2;
                    repeated LabelMatcher matchers = 3; ReadHints hints = 4; }
    LabelMatcher  { Type type = 1; string name = 2; string value = 3; }   // EQ 0, NEQ 1, RE 2, NRE 3
    ReadHints     { int64 step_ms = 1; string func = 2; int64 start_ms = 3; int64 end_ms = 4;
                    repeated string grouping = 5; bool by = 6; int64 range_ms = 7; }
    ReadResponse  { repeated QueryResult results = 1; }            // SAMPLES: one per query, in order
    QueryResult   { repeated TimeSeries timeseries = 1; }          // TimeSeries as in remote write
    ChunkedReadResponse { repeated ChunkedSeries chunked_series = 1; int64 query_index = 2; }
    ChunkedSeries { repeated Label labels = 1; repeated Chunk chunks = 2; }
    Chunk         { int64 min_time_ms = 1; int64 max_time_ms = 2;  // inclusive
                    Encoding type = 3; bytes data = 4; }           // UNKNOWN 0, XOR 1, HISTOGRAM 2 (2.42)

The request body is snappy *block* compressed. A SAMPLES reply (`application/x-protobuf`, `Content-Encoding:
snappy`) is one snappy-compressed ReadResponse. A STREAMED_XOR_CHUNKS reply (`STREAMED_CONTENT_TYPE`) is not
compressed: a sequence of frames, each a uvarint length, the big-endian CRC32-Castagnoli of the data, then
the data, one ChunkedReadResponse holding (part of) one series. A series may span consecutive frames when
its chunks pass `--storage.remote.read-max-bytes-in-frame`; the series of a query come sorted by labels,
and the source's external labels are merged into every series of either reply. Checked against 2.42: the
streamed reply carries values bit for bit; SAMPLES turns -0.0 into +0.0 (gogo's proto3 marshaller omits a
double that == 0) but keeps NaN payloads, the staleness marker included.

`FrameReader`/`ChunkedReadDecoder` take the body as it arrives and keep at most one frame buffered, so a
collector decodes while it streams. Every malformed input raises `RemoteReadFormatError` saying which
frame, at which byte of the body, and what; XOR chunk data itself is decoded by `xor_chunk`.
The encoders of the responses exist for test servers and round trips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, TypeVar

import google_crc32c

from observe.model import Labels
from observe.protocol.protobuf_wire import (
    UINT64,
    WT_LEN,
    WT_VARINT,
    iter_fields,
    read_len,
    read_varint,
    skip_field,
    varint,
)
from observe.protocol.remote_write import (
    compress,
    decode_labels,
    decode_write_request,
    decompress,
    encode_labels,
    encode_series_samples,
)
from observe.protocol.series_selector import Matcher

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "REQUEST_HEADERS",
    "SAMPLES",
    "SAMPLES_CONTENT_TYPE",
    "STREAMED_CONTENT_TYPE",
    "STREAMED_XOR_CHUNKS",
    "Chunk",
    "ChunkedReadDecoder",
    "ChunkedReadResponse",
    "ChunkedReadScanner",
    "ChunkedSeries",
    "FrameReader",
    "Query",
    "RawChunkedReadResponse",
    "RawSeries",
    "ReadHints",
    "RemoteReadFormatError",
    "decode_chunked_body",
    "decode_chunked_read_response",
    "decode_read_request",
    "decode_read_response",
    "decode_series_labels",
    "encode_chunked_read_response",
    "encode_frame",
    "encode_read_request",
    "encode_read_response",
    "scan_chunked_body",
    "scan_chunked_read_response",
]

SAMPLES: Final = 0
STREAMED_XOR_CHUNKS: Final = 1

STREAMED_CONTENT_TYPE: Final = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
SAMPLES_CONTENT_TYPE: Final = "application/x-protobuf"
REQUEST_HEADERS: Final[Mapping[str, str]] = {
    # What Prometheus' own remote-read client sends (storage/remote/client.go).
    "Content-Encoding": "snappy",
    "Accept-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Read-Version": "0.1.0",
}

DEFAULT_MAX_FRAME_BYTES: Final = 2 << 20
"""2 MiB. The server fills a frame until its chunks pass `read-max-bytes-in-frame` (1 MiB by default), so a
frame overshoots by at most one chunk (an XOR chunk of 120 samples is under 2.5 KB) plus the series'
labels; twice the default leaves room for big label sets and costs 1 MiB per stream at worst."""

_INT64_MAX: Final = (1 << 63) - 1
_MAX_VARINT_BYTES: Final = 10


_M = TypeVar("_M")


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))  # its pure-Python fallback is untyped


class RemoteReadFormatError(ValueError):
    """A remote-read body or frame that is not what the protocol says; the message says where."""


class ReadHints(NamedTuple):
    """prompb.ReadHints: what the querier may use to plan (Prometheus' server passes them to its storage)."""

    step_ms: int = 0
    func: str = ""
    start_ms: int = 0
    end_ms: int = 0
    grouping: tuple[str, ...] = ()
    by: bool = False
    range_ms: int = 0


@dataclass(frozen=True)
class Query:
    """One query of a ReadRequest: samples with `start_ms <= t <= end_ms` of the series all `matchers` match."""

    start_ms: int
    end_ms: int
    matchers: tuple[Matcher, ...]
    hints: ReadHints | None = None


class Chunk(NamedTuple):
    """prompb.Chunk; `type` as `xor_chunk.ENCODING_*`, times inclusive. A tuple: one per ~120 samples."""

    min_time_ms: int
    max_time_ms: int
    type: int
    data: bytes


class ChunkedSeries(NamedTuple):
    labels: Labels
    chunks: list[Chunk]


class RawSeries(NamedTuple):
    """A ChunkedSeries with its labels as on the wire: `label_bytes` is its run of `labels` fields, the same
    Label messages in the same field (1) as a remote-write TimeSeries, so a collector can key a cache on
    the bytes and decode them (`decode_series_labels`) only for a series it has not seen."""

    label_bytes: bytes
    chunks: list[Chunk]


class RawChunkedReadResponse(NamedTuple):
    query_index: int
    series: list[RawSeries]


class ChunkedReadResponse(NamedTuple):
    """One frame's message: the series (Prometheus sends one, or part of one) of query `query_index`."""

    query_index: int
    series: list[ChunkedSeries]


# -- request ---------------------------------------------------------------------------------------


def _tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _tag(field, WT_LEN) + varint(len(payload)) + payload


def _int_field(field: int, value: int) -> bytes:
    # proto3 omits zero scalars; a negative int64 is its 10-byte two's complement (varint() does that).
    return _tag(field, WT_VARINT) + varint(value) if value else b""


def _str_field(field: int, value: str) -> bytes:
    return _len_field(field, value.encode("utf-8")) if value else b""


def _encode_query(q: Query) -> bytes:
    for what, ms in (("start_ms", q.start_ms), ("end_ms", q.end_ms)):
        if not -(1 << 63) <= ms <= _INT64_MAX:
            raise ValueError(f"query {what} {ms} does not fit in an int64")
    if q.start_ms > q.end_ms:
        raise ValueError(f"query start_ms {q.start_ms} is after end_ms {q.end_ms}")
    parts = [_int_field(1, q.start_ms), _int_field(2, q.end_ms)]
    for m in q.matchers:
        if m.type not in (0, 1, 2, 3):
            raise ValueError(f"matcher {m.name!r}: type {m.type} is not EQ 0, NEQ 1, RE 2 or NRE 3")
        parts.append(_len_field(3, _int_field(1, m.type) + _str_field(2, m.name) + _str_field(3, m.value)))
    if q.hints is not None:
        h = q.hints
        body = b"".join(
            (
                _int_field(1, h.step_ms),
                _str_field(2, h.func),
                _int_field(3, h.start_ms),
                _int_field(4, h.end_ms),
                *(_len_field(5, g.encode("utf-8")) for g in h.grouping),
                _int_field(6, int(h.by)),
                _int_field(7, h.range_ms),
            )
        )
        parts.append(_len_field(4, body))  # present even when empty: the server checks for nil
    return b"".join(parts)


def encode_read_request(queries: Sequence[Query], accepted: Sequence[int]) -> bytes:
    """The POST body for /api/v1/read: a ReadRequest, snappy block-compressed.

    `accepted` lists response types in preference order (the server takes the first it supports; none
    means SAMPLES). Send `REQUEST_HEADERS` with it.
    """
    parts = [_len_field(1, _encode_query(q)) for q in queries]
    if accepted:
        for t in accepted:
            if t not in (SAMPLES, STREAMED_XOR_CHUNKS):
                raise ValueError(f"accepted response type {t} is not SAMPLES 0 or STREAMED_XOR_CHUNKS 1")
        parts.append(_len_field(2, b"".join(varint(t) for t in accepted)))  # packed repeated enum
    return compress(b"".join(parts))


def decode_read_request(body: bytes) -> tuple[list[Query], list[int]]:
    """Inverse of `encode_read_request` (snappy body in), for test servers; accepts packed or unpacked types."""
    raw = _unsnappy(body, "ReadRequest")
    queries: list[Query] = []
    accepted: list[int] = []
    try:
        for field, wt, start, stop in iter_fields(raw, 0, len(raw)):
            if field == 1 and wt == WT_LEN:
                queries.append(_decode_query(raw, start, stop))
            elif field == 2 and wt == WT_LEN:
                pos = start
                while pos < stop:
                    t, pos = read_varint(raw, pos, stop)
                    accepted.append(t)
            elif field == 2 and wt == WT_VARINT:
                accepted.append(start)
    except ValueError as exc:
        raise RemoteReadFormatError(f"ReadRequest: {exc}") from None
    return queries, accepted


def _decode_query(buf: bytes, pos: int, end: int) -> Query:
    start_ms = end_ms = 0
    matchers: list[Matcher] = []
    hints: ReadHints | None = None
    for field, wt, start, stop in iter_fields(buf, pos, end):
        if field in (1, 2) and wt == WT_VARINT:
            if field == 1:
                start_ms = _int64(start)
            else:
                end_ms = _int64(start)
        elif field == 3 and wt == WT_LEN:
            mtype, name, value = 0, "", ""
            for f, w, a, b in iter_fields(buf, start, stop):
                if f == 1 and w == WT_VARINT:
                    mtype = a
                elif f == 2 and w == WT_LEN:
                    name = _text(buf, a, b, "matcher name")
                elif f == 3 and w == WT_LEN:
                    value = _text(buf, a, b, "matcher value")
            matchers.append(Matcher(mtype, name, value))
        elif field == 4 and wt == WT_LEN:
            ints = {1: 0, 3: 0, 4: 0, 6: 0, 7: 0}
            func = ""
            grouping: list[str] = []
            for f, w, a, b in iter_fields(buf, start, stop):
                if f in ints and w == WT_VARINT:
                    ints[f] = _int64(a)
                elif f == 2 and w == WT_LEN:
                    func = _text(buf, a, b, "hints func")
                elif f == 5 and w == WT_LEN:
                    grouping.append(_text(buf, a, b, "hints grouping"))
            hints = ReadHints(ints[1], func, ints[3], ints[4], tuple(grouping), bool(ints[6]), ints[7])
    return Query(start_ms, end_ms, tuple(matchers), hints)


# -- streamed response: frames ---------------------------------------------------------------------


def encode_frame(data: bytes) -> bytes:
    """One frame as `ChunkedWriter.Write` sends it: uvarint length, big-endian CRC32-C, data."""
    return varint(len(data)) + _crc32c(data).to_bytes(4, "big") + data


class FrameReader:
    """Split a streamed body into frame payloads as bytes arrive, checking each CRC32-C.

    `feed` returns the frames completed by the new bytes; `close` (at the end of the body) raises if a frame
    was cut short. Only the unfinished frame is kept, and a length over `max_frame_bytes` is rejected
    from its header, before any of it is buffered.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.frames = 0
        """Frames returned so far; the next one's 0-based index."""
        self.offset = 0
        """Body offset of the first byte not yet returned as part of a frame (where the next frame starts)."""
        self._buf = bytearray()
        self._need = 0  # bytes the pending frame needs in `_buf` (header + data), 0 when unknown

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        pos = 0
        size = len(buf)
        while pos < size:
            if self._need and size - pos < self._need:
                break  # the common partial-frame case: no re-parsing of the header
            length, data_at = self._header(buf, pos, size)
            if data_at < 0:
                break  # the length varint or the CRC is still incomplete
            end = data_at + length
            if end > size:
                self._need = end - pos
                break
            self._need = 0
            payload = bytes(buf[data_at:end])
            want = int.from_bytes(buf[data_at - 4 : data_at], "big")
            got = _crc32c(payload)
            if got != want:
                raise RemoteReadFormatError(
                    f"frame {self.frames} at byte {self.offset}: CRC32-C mismatch over its {length} bytes "
                    f"(header says {want:#010x}, data has {got:#010x})"
                )
            frames.append(payload)
            self.frames += 1
            self.offset += end - pos
            pos = end
        if pos:
            del buf[:pos]
        return frames

    def _header(self, buf: bytearray, pos: int, size: int) -> tuple[int, int]:
        """(data length, where the data starts) of the frame at `pos`; (n, -1) while the length varint
        (n = 0) or the CRC (n = 1) is not all here yet."""
        length = shift = 0
        i = pos
        while True:
            if i >= size:
                return 0, -1
            b = buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if i - pos >= _MAX_VARINT_BYTES:
                raise RemoteReadFormatError(
                    f"frame {self.frames} at byte {self.offset}: length varint longer than 10 bytes"
                )
        if length > self.max_frame_bytes:
            raise RemoteReadFormatError(
                f"frame {self.frames} at byte {self.offset}: length {length} bytes is over the "
                f"{self.max_frame_bytes}-byte frame limit"
            )
        if i + 4 > size:
            return 1, -1
        return length, i + 4

    def close(self) -> None:
        """The body has ended: raise if it stopped inside a frame."""
        left = len(self._buf)
        if not left:
            return
        length, data_at = self._header(self._buf, 0, left)
        if data_at < 0:
            part = "length varint" if length == 0 else "CRC32-C"
            raise RemoteReadFormatError(
                f"frame {self.frames} at byte {self.offset}: body ends inside its {part} "
                f"({left} bytes of header)"
            )
        raise RemoteReadFormatError(
            f"frame {self.frames} at byte {self.offset}: body ends after {left - data_at} of its "
            f"{length} data bytes"
        )


# -- streamed response: messages -------------------------------------------------------------------


def _int64(raw: int) -> int:
    raw &= UINT64 - 1
    return raw - UINT64 if raw > _INT64_MAX else raw


def _text(buf: bytes, start: int, stop: int, what: str) -> str:
    try:
        return buf[start:stop].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} at byte {start} is not UTF-8: {exc.reason}") from None


def _expect(got: int, want: int, what: str, pos: int) -> None:
    if got != want:
        raise ValueError(f"{what} has wire type {got}, expected {want}, at byte {pos}")


def _chunk(buf: bytes, pos: int, end: int) -> Chunk:
    # Keys read inline (one byte each: fields 1-4): this runs once per chunk of every series.
    mint = maxt = ctype = 0
    data = b""
    while pos < end:
        key = buf[pos]
        if key >= 0x80:  # a field number over 15: none of ours; skip it whole
            key, pos = read_varint(buf, pos, end)
            pos = skip_field(buf, pos, end, key & 7, key >> 3)
            continue
        pos += 1
        field, wt = key >> 3, key & 7
        if field in (1, 2, 3):
            _expect(wt, WT_VARINT, f"Chunk field {field}", pos)
            raw, pos = read_varint(buf, pos, end)
            if field == 1:
                mint = _int64(raw)
            elif field == 2:
                maxt = _int64(raw)
            else:
                ctype = raw
        elif field == 4:
            _expect(wt, WT_LEN, "Chunk.data", pos)
            start, pos = read_len(buf, pos, end, "Chunk.data")
            data = buf[start:pos]
        else:
            pos = skip_field(buf, pos, end, wt, field)
    return Chunk(mint, maxt, ctype, data)


def _scan_series(buf: bytes, pos: int, end: int) -> RawSeries:
    # Prometheus writes the labels first: walk that run in a tight loop while lengths take one byte.
    labels_at = pos
    while pos + 1 < end and buf[pos] == 0x0A and buf[pos + 1] < 0x80:
        pos += 2 + buf[pos + 1]
    if pos > end:
        raise ValueError(f"truncated Label ending at byte {pos}, {end} in all")
    labels_end = pos
    pieces: list[bytes] = []  # label fields after a chunk, if an encoder interleaved them
    chunks: list[Chunk] = []
    while pos < end:
        at = pos
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 1:
            _expect(wt, WT_LEN, "ChunkedSeries.labels", pos)
            _, pos = read_len(buf, pos, end, "Label")
            if at == labels_end:  # still the first run (a label of 128 bytes or more)
                labels_end = pos
            else:
                pieces.append(buf[at:pos])
        elif field == 2:
            _expect(wt, WT_LEN, "ChunkedSeries.chunks", pos)
            start, pos = read_len(buf, pos, end, "Chunk")
            chunks.append(_chunk(buf, start, pos))
        else:
            pos = skip_field(buf, pos, end, wt, field)
    label_bytes = buf[labels_at:labels_end]
    if pieces:
        label_bytes = b"".join((label_bytes, *pieces))
    return RawSeries(label_bytes, chunks)


def scan_chunked_read_response(frame: bytes) -> RawChunkedReadResponse:
    """One frame's ChunkedReadResponse with each series' labels left undecoded (`RawSeries`)."""
    buf = bytes(frame)
    series: list[RawSeries] = []
    query_index = 0
    pos, end = 0, len(buf)
    try:
        while pos < end:
            key, pos = read_varint(buf, pos, end)
            field, wt = key >> 3, key & 7
            if field == 1:
                _expect(wt, WT_LEN, "ChunkedReadResponse.chunked_series", pos)
                start, pos = read_len(buf, pos, end, "ChunkedSeries")
                series.append(_scan_series(buf, start, pos))
            elif field == 2:
                _expect(wt, WT_VARINT, "ChunkedReadResponse.query_index", pos)
                raw, pos = read_varint(buf, pos, end)
                query_index = _int64(raw)
            else:
                pos = skip_field(buf, pos, end, wt, field)
    except ValueError as exc:
        raise RemoteReadFormatError(f"ChunkedReadResponse: {exc}") from None
    return RawChunkedReadResponse(query_index, series)


def decode_series_labels(label_bytes: bytes) -> Labels:
    """The labels of a `RawSeries` (wire order; Prometheus sends them sorted); RemoteReadFormatError if
    they are malformed or not UTF-8."""
    try:
        return decode_labels(label_bytes)
    except ValueError as exc:
        raise RemoteReadFormatError(f"ChunkedSeries.labels: {exc}") from None


def decode_chunked_read_response(frame: bytes) -> ChunkedReadResponse:
    """One frame's ChunkedReadResponse; labels in wire order (Prometheus sends them sorted)."""
    raw = scan_chunked_read_response(frame)
    try:
        series = [ChunkedSeries(decode_series_labels(s.label_bytes), s.chunks) for s in raw.series]
    except RemoteReadFormatError as exc:
        raise RemoteReadFormatError(f"ChunkedReadResponse: {exc}") from None
    return ChunkedReadResponse(raw.query_index, series)


class _FrameDecoder(Generic[_M]):
    """`FrameReader` plus a decoder of each frame's message: feed body bytes, get messages."""

    def __init__(self, decode: Callable[[bytes], _M], max_frame_bytes: int) -> None:
        self.frames = FrameReader(max_frame_bytes)
        self._decode = decode

    def feed(self, data: bytes) -> list[_M]:
        first = self.frames.frames
        out = []
        for i, frame in enumerate(self.frames.feed(data)):
            try:
                out.append(self._decode(frame))
            except RemoteReadFormatError as exc:
                raise RemoteReadFormatError(f"frame {first + i}: {exc}") from None
        return out

    def close(self) -> None:
        self.frames.close()


class ChunkedReadScanner(_FrameDecoder[RawChunkedReadResponse]):
    """Messages with raw labels (`scan_chunked_read_response`)."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(scan_chunked_read_response, max_frame_bytes)


class ChunkedReadDecoder(_FrameDecoder[ChunkedReadResponse]):
    """Messages with decoded labels (`decode_chunked_read_response`)."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(decode_chunked_read_response, max_frame_bytes)


def scan_chunked_body(
    body: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> list[RawChunkedReadResponse]:
    """Every message of a complete streamed body, labels undecoded."""
    scanner = ChunkedReadScanner(max_frame_bytes)
    out = scanner.feed(body)
    scanner.close()
    return out


def decode_chunked_body(
    body: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> list[ChunkedReadResponse]:
    """Every message of a complete streamed body."""
    decoder = ChunkedReadDecoder(max_frame_bytes)
    out = decoder.feed(body)
    decoder.close()
    return out


def encode_chunked_read_response(response: ChunkedReadResponse) -> bytes:
    """A ChunkedReadResponse message (not framed: see `encode_frame`), fields in number order."""
    parts = []
    for s in response.series:
        body = [_len_field(1, _str_field(1, name) + _str_field(2, value)) for name, value in s.labels]
        for c in s.chunks:
            body.append(
                _len_field(
                    2,
                    _int_field(1, c.min_time_ms)
                    + _int_field(2, c.max_time_ms)
                    + _int_field(3, c.type)
                    + (_len_field(4, c.data) if c.data else b""),
                )
            )
        parts.append(_len_field(1, b"".join(body)))
    parts.append(_int_field(2, response.query_index))
    return b"".join(parts)


# -- SAMPLES response ------------------------------------------------------------------------------


def _unsnappy(body: bytes, what: str) -> bytes:
    try:
        return decompress(body)
    except ValueError as exc:
        raise RemoteReadFormatError(f"{what}: {exc}") from None


def decode_read_response(body: bytes) -> list[list[tuple[Labels, list[tuple[float, int]]]]]:
    """A SAMPLES reply's snappy body: per query, `(labels, [(value, timestamp_ms), ...])` per series.

    A QueryResult has the same layout as a remote-write WriteRequest (`timeseries` = 1), so remote_write's
    decoder reads it; like there, histograms (TimeSeries field 4) are skipped.
    """
    raw = _unsnappy(body, "ReadResponse")
    results: list[list[tuple[Labels, list[tuple[float, int]]]]] = []
    try:
        for field, wt, start, stop in iter_fields(raw, 0, len(raw)):
            if field == 1:
                _expect(wt, WT_LEN, "ReadResponse.results", start)
                try:
                    results.append(decode_write_request(raw[start:stop]))
                except ValueError as exc:
                    raise ValueError(f"result {len(results)} at byte {start}: {exc}") from None
    except ValueError as exc:
        raise RemoteReadFormatError(f"ReadResponse: {exc}") from None
    return results


def encode_read_response(results: Iterable[Iterable[tuple[Labels, Sequence[tuple[float, int]]]]]) -> bytes:
    """A SAMPLES reply's snappy body, for test servers: per query, (labels, [(value, ts_ms)]) per series."""
    parts = []
    for result in results:
        body = b"".join(encode_series_samples(encode_labels(labels), samples) for labels, samples in result)
        parts.append(_len_field(1, body))
    return compress(b"".join(parts))
