"""Read a cluster's Prometheus raw samples for a time window through its remote-read API.

API: `POST <url>/api/v1/read`, a snappy `ReadRequest` (observe/protocol/remote_read.py), one query per
`match` selector over the same window; https://prometheus.io/docs/prometheus/latest/querying/remote_read_api/
We accept `STREAMED_XOR_CHUNKS` first (`application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse`:
CRC-checked frames of whole TSDB chunks, about half the bytes of SAMPLES and cheaper for the source to
serve) and `SAMPLES` (a snappy `ReadResponse`) for servers that only speak that. The source adds its
external labels to every series, as federation does; the caller applies the collision rule.

A read returns each series once (merged across queries, frames and chunks: chunks may overlap, from the
head and from compacted blocks), its samples in time order, one per timestamp, within the window
`(start_ms, end_ms]`: a chunk is sent whole, so samples outside the window are cut here. Values keep their
bits (staleness markers included). Chunks in an encoding we cannot decode (native histograms) are counted
per encoding and skipped, never misread.

Failures raise `SourceError` (`reason` a FAIL_* constant), with two kinds the pipeline acts on:
    RemoteReadUnsupported   404, 405, 501, or a 2xx that is not protobuf (an HTML page, JSON): this server
                            (or a proxy in front that lets only GET through) does not serve remote-read
    WindowTooLarge          400 naming the sample limit (`--storage.remote.read-sample-limit`, SAMPLES
                            only): the same window will never fit; a smaller one may
Limits on the source, respected here: one request at a time per cluster (the pipeline's loop), so one
collector takes at most one of `--storage.remote.read-concurrent-limit` (10); frames up to
`DEFAULT_MAX_FRAME_BYTES` (the server aims at `read-max-bytes-in-frame`, 1 MiB); the whole reply at most
`max_response_bytes`.

Through a Kubernetes API server (`prometheus.service`) the POST goes to the service (or pod) proxy with the
cluster's `kubernetes:` credentials (`via`): RBAC `create` on `services/proxy`; the API server passes the
body and the streamed reply's Content-Type through unchanged. A 404 or 503 that is the API server's own
(a `Status` body: no such service, no endpoint) is a plain failure, never "remote-read unsupported".
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import aiohttp
from yarl import URL

from observe.config import ClusterConfig, PrometheusSourceConfig
from observe.errors import SourceError
from observe.http import Response, TransportError, body_snippet, fetch, redact, safe_url
from observe.model import Labels
from observe.protocol.remote_read import (
    DEFAULT_MAX_FRAME_BYTES,
    REQUEST_HEADERS,
    SAMPLES,
    STREAMED_XOR_CHUNKS,
    Chunk,
    Query,
    RemoteReadFormatError,
    decode_read_response,
    decode_series_labels,
    encode_read_request,
    scan_chunked_body,
)
from observe.protocol.remote_write import encode_labels
from observe.protocol.series_selector import Matcher, parse_selector
from observe.protocol.xor_chunk import (
    ENCODING_FLOAT_HISTOGRAM,
    ENCODING_HISTOGRAM,
    ENCODING_XOR,
    XorChunkError,
    decode_xor_bits,
)
from observe.reasons import FAIL_BAD_RESPONSE, FAIL_TOO_LARGE
from observe.replies import classify

try:  # built from remote_read_native.c at install; without a C compiler there, Python does it all
    from observe.protocol import _remote_read_native as native
except ImportError:  # pragma: no cover - depends on the install
    native = None  # type: ignore[assignment]  # the module or None; mypy sees the module (the .pyi)

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # observe.kube is imported only for a cluster that uses it
    from observe.kube.api_server import APIServer

__all__ = [
    "ACCEPTED",
    "PrometheusRemoteReadSource",
    "ReadResult",
    "RemoteReadUnsupported",
    "WindowTooLarge",
    "native",
    "python_streamed_window",
    "remote_read_sources",
    "samples_window",
    "streamed_window",
]

ACCEPTED: Final = (STREAMED_XOR_CHUNKS, SAMPLES)
_UNSUPPORTED_STATUS: Final = frozenset({404, 405, 501})  # no such endpoint, POST refused, not implemented
_SAMPLE_LIMIT = re.compile(rb"sample limit", re.IGNORECASE)  # 2.42: "exceeded sample limit (50000000)"
_ENCODING_NAMES: Final = {ENCODING_HISTOGRAM: "histogram", ENCODING_FLOAT_HISTOGRAM: "float_histogram"}
_SNIPPET_CHARS: Final = 200
_READY_MAX_BYTES: Final = 64 * 1024  # "Prometheus Server is Ready.\n"; a page from a proxy at most


class RemoteReadUnsupported(SourceError):
    """The server does not serve remote-read: fall back to federation (protocol: auto) or fail."""


class WindowTooLarge(SourceError):
    """The server refused the window's size (its sample limit): read a smaller one."""


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A window's samples as columns: series i has labels `label_bytes[i]` and the samples
    `[ends[i - 1], ends[i])` (from 0 for the first) of `timestamps` (ms) and `values` (the 64-bit patterns
    of the doubles), in time order, one per timestamp, inside the window.

    `label_bytes` are remote-write `TimeSeries.labels` fields as the source sent them (a streamed reply's
    own bytes, undecoded): the same bytes for the same series every window, a cache key that costs no
    decoding; `decode_series_labels` reads them.
    """

    label_bytes: list[bytes]
    ends: list[int]
    timestamps: array[int]  # "q"
    values: array[int]  # "Q"
    response_type: str  # "streamed_xor_chunks" | "samples": the metric label
    body_bytes: int
    chunks_skipped: dict[str, int] = field(default_factory=dict)  # encoding name -> chunks not decoded

    @property
    def samples(self) -> int:
        return len(self.timestamps)

    @property
    def series_count(self) -> int:
        return len(self.label_bytes)

    @classmethod
    def of(
        cls, series: Iterable[tuple[Labels, Sequence[tuple[float, int]]]], response_type: str, body_bytes: int
    ) -> ReadResult:
        """From `(labels, [(value, ts), ...])` per series (samples in time order): the SAMPLES reply, tests."""
        out = _Columns()
        for labels, points in series:
            if points:
                out.add(encode_labels(labels), [ts for _, ts in points], _bits([v for v, _ in points]))
        return out.result(response_type, body_bytes, {})

    def series(self) -> Iterator[tuple[Labels, list[tuple[float, int]]]]:
        """Each series decoded, `(labels, [(value, ts), ...])`: for checks and tests, not the hot path."""
        start = 0
        values = _floats(self.values)
        for label_bytes, end in zip(self.label_bytes, self.ends, strict=True):
            yield (
                decode_series_labels(label_bytes),
                list(zip(values[start:end], self.timestamps[start:end], strict=True)),
            )
            start = end


class _Columns:
    """Builds a ReadResult a series at a time."""

    def __init__(self) -> None:
        self.label_bytes: list[bytes] = []
        self.ends: list[int] = []
        self.timestamps = array("q")
        self.values = array("Q")

    def add(self, label_bytes: bytes, timestamps: list[int], values: list[int]) -> None:
        self.label_bytes.append(label_bytes)
        self.timestamps.extend(timestamps)
        self.values.extend(values)
        self.ends.append(len(self.timestamps))

    def result(self, response_type: str, body_bytes: int, skipped: dict[str, int]) -> ReadResult:
        return ReadResult(
            self.label_bytes, self.ends, self.timestamps, self.values, response_type, body_bytes, skipped
        )


def _bits(values: list[float]) -> list[int]:
    return array("Q", array("d", values).tobytes()).tolist()  # reinterpreted: NaN payloads kept


def _floats(bits: array[int]) -> list[float]:
    return array("d", bits.tobytes()).tolist()


class PrometheusRemoteReadSource:
    """One replica of a cluster's Prometheus, read through /api/v1/read with the cluster's HTTP settings."""

    name = "prometheus"

    def __init__(
        self,
        cluster: str,
        cfg: PrometheusSourceConfig,
        session: aiohttp.ClientSession,
        *,
        url: str | None = None,
        via: APIServer | None = None,
    ) -> None:
        self.cluster = cluster
        self._cfg = cfg
        self._session = session
        self._via = via
        self._credentials = via.credentials if via is not None else None
        self.set_base_url(url or cfg.url or "")
        self._ready_served = True  # until GET /-/ready says otherwise
        # Checked at load (config/fleet.py); a selector given twice is one query.
        self._matchers: list[tuple[Matcher, ...]] = [parse_selector(s) for s in dict.fromkeys(cfg.match)]

    def set_base_url(self, url: str) -> None:
        if not url:
            raise ValueError("a Prometheus source needs a URL")
        self.base_url = url
        base = URL(url)
        # A path prefix (a proxy at /prometheus, the API server's service proxy) is kept.
        self.url = base.with_path(base.path.rstrip("/") + "/api/v1/read")

    async def read(self, start_ms: int, end_ms: int) -> ReadResult:
        """Every sample with `start_ms < t <= end_ms` of the series the `match` selectors select."""
        # Query bounds are inclusive on both sides (tsdb's Select(mint, maxt)): start after the cursor.
        queries = [Query(start_ms + 1, end_ms, matchers) for matchers in self._matchers]
        try:
            resp = await fetch(
                self._session, "POST", self.url, cfg=self._cfg, max_bytes=self._cfg.max_response_bytes,
                headers=REQUEST_HEADERS, data=encode_read_request(queries, ACCEPTED), credentials=self._credentials,
                batch_reads=True,  # Prometheus writes one frame per series
            )  # fmt: skip
        except TransportError as exc:
            raise SourceError(f"cluster {self.cluster!r}: {exc}", reason=exc.reason) from exc
        self._check(resp)
        # Off the event loop: a backfill window is millions of samples (~0.07 us each in C, ~1 us in Python).
        return await asyncio.to_thread(self._decode, resp, start_ms, end_ms)

    async def alive(self) -> bool:
        """Whether the source answers `GET /-/ready` with a 2xx: what a cycle that waits for `min_window`
        asks instead of reading, so that an outage is seen within an interval. True, without asking again,
        where that path is not served (404, 405, 501: a proxy that lets only the API through, a Mimir):
        reads alone tell then."""
        if not self._ready_served:
            return True
        base = URL(self.base_url)
        url = base.with_path(base.path.rstrip("/") + "/-/ready")
        try:
            resp = await fetch(
                self._session, "GET", url, cfg=self._cfg, max_bytes=_READY_MAX_BYTES, credentials=self._credentials
            )
        except TransportError:
            return False
        if resp.status in _UNSUPPORTED_STATUS:
            self._ready_served = False
            log.info(
                "the source does not serve /-/ready: cycles between remote-reads do not check it is up",
                extra={"cluster": self.cluster, "url": safe_url(url), "status": resp.status},
            )
            return True
        return 200 <= resp.status < 300

    # -- the answer, checked ----------------------------------------------------------------------
    def _fail(self, what: str, reason: str, kind: type[SourceError] = SourceError) -> SourceError:
        message = f"cluster {self.cluster!r}: POST {safe_url(self.url)}: {what}"
        return kind(redact(message, self._cfg, self._credentials), reason=reason)

    def _check(self, resp: Response) -> None:
        status = resp.status
        if 200 <= status < 300:
            return
        kube = self._via.refusal("POST", self.url, status, resp.body) if self._via is not None else None
        if kube is not None:
            raise self._fail(f"HTTP {status}: {kube}", classify(status).reason)
        snippet = body_snippet(resp.body, _SNIPPET_CHARS)
        text = repr(redact(snippet, self._cfg, self._credentials)) if resp.body.strip() else "empty body"
        if status in _UNSUPPORTED_STATUS:
            raise self._fail(
                f"HTTP {status}: remote-read is not served here ({text})", classify(status).reason,
                RemoteReadUnsupported,
            )  # fmt: skip
        if status == 400 and _SAMPLE_LIMIT.search(resp.body[:4096]):
            raise self._fail(
                f"HTTP 400: the window holds more samples than the server's --storage.remote.read-sample-limit "
                f"allows ({text})",
                FAIL_TOO_LARGE,
                WindowTooLarge,
            )
        reply = classify(status)  # the decision and reason are observe.replies'; the words are ours
        raise self._fail(f"HTTP {status}: {text}", reply.reason)

    def _decode(self, resp: Response, start_ms: int, end_ms: int) -> ReadResult:
        ctype = resp.headers.get("Content-Type", "").lower()
        body = bytes(resp.body)
        try:
            if ctype.startswith("application/x-streamed-protobuf"):
                return streamed_window(body, start_ms, end_ms)
            if ctype.startswith("application/x-protobuf"):
                return samples_window(body, start_ms, end_ms)
        except (RemoteReadFormatError, XorChunkError) as exc:
            raise self._fail(f"malformed remote-read response: {exc}", FAIL_BAD_RESPONSE) from exc
        shown = ctype.split(";", 1)[0] or "no Content-Type"
        raise self._fail(
            f"the reply is {shown}, not protobuf: remote-read is not served here "
            f"({body_snippet(body, 80)!r})",
            FAIL_BAD_RESPONSE,
            RemoteReadUnsupported,
        )


def streamed_window(body: bytes, start_ms: int, end_ms: int) -> ReadResult:
    """A STREAMED_XOR_CHUNKS reply's samples with `start_ms < t <= end_ms`, each series once.

    The C accelerator takes the regular case (what Prometheus sends: see remote_read_native.c) and
    answers None for anything else, which `python_streamed_window` then reads, raising its precise errors.
    """
    if native is not None:
        got = native.streamed_window(body, start_ms, end_ms, DEFAULT_MAX_FRAME_BYTES)
        if got is not None:
            label_bytes, ends, ts, vs, skipped = got
            timestamps, values = array("q"), array("Q")
            timestamps.frombytes(ts)
            values.frombytes(vs)
            names = {_ENCODING_NAMES.get(k, f"unknown_{k}"): n for k, n in skipped.items()}
            return ReadResult(label_bytes, ends, timestamps, values, "streamed_xor_chunks", len(body), names)
    return python_streamed_window(body, start_ms, end_ms)


def python_streamed_window(body: bytes, start_ms: int, end_ms: int) -> ReadResult:
    """`streamed_window` in Python: every case, and the reference the accelerator is tested against."""
    # A series' chunks, in the order they came; a series may span frames, or come in two queries.
    by_series: dict[bytes, list[Chunk]] = {}
    for frame in scan_chunked_body(body):
        for series in frame.series:
            chunks = by_series.get(series.label_bytes)
            if chunks is None:
                by_series[series.label_bytes] = series.chunks
            else:
                chunks.extend(series.chunks)
    skipped: dict[str, int] = {}
    out = _Columns()
    for label_bytes, chunks in by_series.items():
        kept = []
        for chunk in chunks:
            if chunk.max_time_ms <= start_ms or chunk.min_time_ms > end_ms:
                continue
            if chunk.type != ENCODING_XOR:  # the only float encoding
                name = _ENCODING_NAMES.get(chunk.type, f"unknown_{chunk.type}")
                skipped[name] = skipped.get(name, 0) + 1
                continue
            kept.append(chunk)
        if kept:
            timestamps, values = _window(kept, start_ms, end_ms, label_bytes)
            if timestamps:
                out.add(label_bytes, timestamps, values)
    return out.result("streamed_xor_chunks", len(body), skipped)


def samples_window(body: bytes, start_ms: int, end_ms: int) -> ReadResult:
    """A SAMPLES reply's samples with `start_ms < t <= end_ms`, each series once."""
    merged: dict[Labels, dict[int, float]] = {}
    for result in decode_read_response(body):
        for labels, samples in result:
            points = merged.setdefault(labels, {})
            for value, ts in samples:
                if start_ms < ts <= end_ms:
                    points.setdefault(ts, value)
    series = ((labels, [(points[ts], ts) for ts in sorted(points)]) for labels, points in merged.items())
    return ReadResult.of(series, "samples", len(body))


def _window(
    chunks: list[Chunk], start_ms: int, end_ms: int, label_bytes: bytes
) -> tuple[list[int], list[int]]:
    """A series' samples with `start_ms < t <= end_ms` from its XOR chunks: (timestamps, value bits).

    Chunks come whole, so the first and last are cut to the window. The usual case is one chunk, or
    chunks one after the other in time: their samples are concatenated. Overlapping chunks (the head and
    a block holding the same range) are merged per timestamp, the first chunk's sample winning.
    """
    if len(chunks) == 1:
        timestamps, values = decode_xor_bits(chunks[0].data)
    else:
        ordered = sorted(chunks, key=lambda c: c.min_time_ms)
        if all(b.min_time_ms > a.max_time_ms for a, b in itertools.pairwise(ordered)):
            timestamps, values = [], []
            for chunk in ordered:
                chunk_ts, chunk_values = decode_xor_bits(chunk.data)
                timestamps += chunk_ts
                values += chunk_values
        else:
            merged: dict[int, int] = {}
            for chunk in chunks:
                for t, v in zip(*decode_xor_bits(chunk.data), strict=True):
                    merged.setdefault(t, v)
            timestamps = sorted(merged)
            values = [merged[t] for t in timestamps]
    if timestamps and (timestamps[0] <= start_ms or timestamps[-1] > end_ms):
        first, last = bisect.bisect_right(timestamps, start_ms), bisect.bisect_right(timestamps, end_ms)
        timestamps, values = timestamps[first:last], values[first:last]
    for a, b in itertools.pairwise(timestamps):  # what the receiver needs; a chunk could lie about it
        if b <= a:
            raise RemoteReadFormatError(
                f"series {_shown(label_bytes)}: samples out of time order in its chunks ({b} ms after {a} ms)"
            )
    return timestamps, values


def _shown(label_bytes: bytes) -> str:
    try:
        labels = decode_series_labels(label_bytes)
    except RemoteReadFormatError:
        return "(labels unreadable)"
    return "{" + ", ".join(f"{k}={v!r}" for k, v in labels) + "}"


def remote_read_sources(
    cluster: ClusterConfig, session: aiohttp.ClientSession
) -> list[PrometheusRemoteReadSource]:
    """The cluster's Prometheus replicas in the order they are tried: `url` then `replica_urls`; or its
    Service through the API server's service proxy; or, with `pin_pod`, one source that pins a ready pod
    of the Service and fails over between them (observe/kube/pinned.py)."""
    prom = cluster.prometheus
    assert prom is not None
    ref = prom.service_ref()
    if ref is None:
        return [PrometheusRemoteReadSource(cluster.name, prom, session, url=url) for url in prom.urls()]
    from observe.kube.api_server import APIServer  # only for a cluster reached through its API server

    api = APIServer.shared(cluster)
    if prom.pin_pod:
        from observe.kube.pinned import PinnedRemoteReadSource

        return [PinnedRemoteReadSource(cluster.name, prom, session, api=api, ref=ref)]
    return [PrometheusRemoteReadSource(cluster.name, prom, session, url=api.service_url(ref), via=api)]
