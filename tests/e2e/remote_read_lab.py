"""The pieces of the remote-read end-to-end tests: an exporter whose every scrape differs, real cluster and
central Prometheus servers, and a raw reader that compares what the source holds with what the centre holds
sample by sample (timestamp and value bits, staleness markers included).

Both sides are read with Prometheus' own remote-read API (the query API drops staleness markers and
rounds nothing, but cannot show a marker); VictoriaMetrics is read with its `/api/v1/export`.
"""

from __future__ import annotations

import json
import struct
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from observe.model import Labels
from observe.protocol.remote_read import (
    REQUEST_HEADERS,
    STREAMED_XOR_CHUNKS,
    Query,
    decode_chunked_body,
    encode_read_request,
)
from observe.protocol.series_selector import parse_selector
from observe.protocol.xor_chunk import ENCODING_XOR, decode_xor
from tests.servers import Server, free_port, open_path, start_prometheus

Samples = dict[Labels, list[tuple[int, int]]]
"""Series -> [(timestamp ms, value bits)] in time order."""

SELECTOR = '{__name__=~"lab_.+"}'


@dataclass
class Exporter:
    """`/metrics` whose values change on every scrape; `drop` series vanish (Prometheus marks them stale)."""

    series: int = 20
    drop: set[int] = field(default_factory=set)
    scrapes: int = 0
    port: int = field(default_factory=free_port)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # guards scrapes and drop
    _server: ThreadingHTTPServer | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def body(self) -> bytes:
        with self._lock:
            self.scrapes += 1
            n, dropped = self.scrapes, set(self.drop)
        lines = [f"lab_scrapes_total {n}"]
        lines += [f'lab_value{{i="{i}"}} {n * 0.5 + i}' for i in range(self.series) if i not in dropped]
        return ("\n".join(lines) + "\n").encode()

    def start(self) -> Exporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def cluster_prometheus(
    workdir: Path, exporter: Exporter, *, external: dict[str, str], port: int | None = None, name: str = "cluster"
) -> Server:
    """A cluster's Prometheus scraping `exporter` every second, with `external` labels."""
    ext = "".join(f"    {k}: {v}\n" for k, v in external.items())
    config = (
        f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  external_labels:\n{ext}"
        f"scrape_configs:\n  - job_name: lab\n    static_configs: [{{targets: ['{exporter.target}']}}]\n"
    )
    return start_prometheus(workdir, config, name=name, port=port)


def central_prometheus(workdir: Path, *, port: int | None = None) -> Server:
    return start_prometheus(workdir, remote_write_receiver=True, name="centre", port=port)


def raw(server: Server, end_ms: int, selector: str = SELECTOR, start_ms: int = 0) -> Samples:
    """Every sample of `selector` with start_ms <= t <= end_ms, read through remote-read."""
    body = encode_read_request([Query(start_ms, end_ms, parse_selector(selector))], [STREAMED_XOR_CHUNKS])
    request = urllib.request.Request(
        server.url + "/api/v1/read", data=body, headers=dict(REQUEST_HEADERS), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        data = resp.read()
    out: dict[Labels, dict[int, int]] = {}
    for frame in decode_chunked_body(data):
        for series in frame.series:
            points = out.setdefault(series.labels, {})
            for chunk in series.chunks:
                assert chunk.type == ENCODING_XOR
                for ts, value in zip(*decode_xor(chunk.data), strict=True):
                    if start_ms <= ts <= end_ms:
                        points.setdefault(ts, _bits(value))
    return {labels: sorted(points.items()) for labels, points in out.items() if points}


def victoria_export(server: Server, selector: str = SELECTOR) -> dict[Labels, list[tuple[int, float]]]:
    """Every sample VictoriaMetrics holds for `selector` (its JSON-lines export)."""
    from urllib.parse import urlencode

    with open_path(server, "/api/v1/export?" + urlencode({"match[]": selector})) as resp:
        text = resp.read().decode()
    out: dict[Labels, list[tuple[int, float]]] = {}
    for line in text.splitlines():
        doc = json.loads(line)
        labels = tuple(sorted(doc["metric"].items()))
        out.setdefault(labels, []).extend(zip(doc["timestamps"], map(float, doc["values"]), strict=True))
    return {k: sorted(v) for k, v in out.items()}


def as_centre(samples: Samples, *, cluster: str, drop: tuple[str, ...] = ()) -> Samples:
    """The source's series as the centre must hold them: ours `cluster`, theirs `exported_cluster`."""
    out: Samples = {}
    for labels, points in samples.items():
        d = {k: v for k, v in labels if k not in drop}
        if "cluster" in d:
            d["exported_cluster"] = d["cluster"]
        d["cluster"] = cluster
        out[tuple(sorted(d.items()))] = points
    return out


def cursor_ms(data_dir: Path, cluster: str) -> int:
    return int(json.loads((data_dir / "read_cursors" / f"{cluster}.json").read_text())["end_ms"])


def receiver_errors(centre: Server) -> float:
    """Remote-write requests the central Prometheus refused (4xx: out of order, out of bounds, bad data).
    A 503 while it starts up is not counted: the collector retries it, and the comparison shows nothing
    was lost."""
    from prometheus_client.parser import text_string_to_metric_families

    with open_path(centre, "/metrics") as resp:
        text = resp.read().decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if (
                s.name == "prometheus_http_requests_total"
                and s.labels.get("handler") == "/api/v1/write"
                and s.labels.get("code", "").startswith("4")
            ):
                total += s.value
    return total


def diff(want: Samples, got: Samples) -> list[str]:
    """Human-readable differences, at most a few per series."""
    problems: list[str] = []
    for labels in sorted(set(want) | set(got)):
        w, g = want.get(labels, []), got.get(labels, [])
        if w == g:
            continue
        missing = sorted(set(w) - set(g))
        extra = sorted(set(g) - set(w))
        problems.append(f"{dict(labels)}: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}")
    return problems


def stale_bits() -> int:
    return 0x7FF0000000000002


def _bits(value: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", value))[0])


@contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for s in servers:
            s.stop()
