"""observe's exposition readers against a real Prometheus 2.42 scrape, on generated bodies.

Shape: one Prometheus scrapes every generated body, each from its own target (one in-test HTTP server on
127.0.0.1, a path per body), so all bodies are judged in one or two scrape rounds. A scrape fails as a
whole on one bad line, and observe skips bad lines one by one, so the verdicts compared are per body:
Prometheus' target is up (`/api/v1/targets`, `lastError` kept for the message) exactly when observe's
parser finds no bad line, and observe's hot path (SeriesCache, cold and warm) agrees with the parser on
every line. Each body holds ordinary lines and at most one odd line (tests/exposition_cases.py), so each
odd spelling gets a verdict of its own.

Two jobs, because storage has its own window: job `parse` scrapes every body and drops every sample by
metric_relabel_configs (after parsing, so parse errors still fail the scrape), which lets bodies carry
timestamps a TSDB head would refuse (0, int64's maximum); job `store` scrapes the bodies whose
timestamps are absent or in the last 10 minutes, and for those that pass, what Prometheus stored
(`{job="store"}[1h]`: labels, value bits via the API's text, timestamps) must equal what observe read.
Storage checks duplicate label names (a `store` scrape fails on them), so those lines go in `store`
bodies only.

The shapes where observe differs on purpose (see observe/protocol/exposition.py) are left out of the
generated bodies and pinned one by one in KNOWN_DIFFERENCES, with Prometheus' verdict.
"""

from __future__ import annotations

import http.server
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from observe.protocol.exposition import parse_text
from tests.exposition_cases import (
    WARM_TS,
    hot_path_view,
    parser_view,
    random_line,
    value_key,
)
from tests.servers import Server, get_json, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

BODIES = 500  # ~3,000 lines, ~1,000 of them odd; the whole test takes ~15 s on 2 shared cores
SEED = 20250611

# (body, Prometheus 2.42 takes it, observe takes it): where observe is lenient or strict on purpose.
KNOWN_DIFFERENCES = [
    ("up 1\r\n", False, True),  # CRLF: 2.42 reads the value as '1\r'
    ("  up 1\n", False, True),  # blanks before the name: 2.42 keeps them in the name
    ("\tup 1\n", False, True),
    ("up 1 -1000\n", False, True),  # signed timestamps: promlex.l takes digits only
    ("up 1 +5\n", False, True),
    ('up{a="1" b="2"} 1\n', True, False),  # no comma between label pairs: promparse.go takes it
    ('up{a="x\ny"} 1\n', True, False),  # a raw newline in a label value: promlex.l takes it
]


@dataclass
class Body:
    text: str
    storable: bool  # timestamps absent or recent: the `store` job scrapes it too


def _generate(rng: random.Random, now_ms: int) -> list[Body]:
    bodies = []
    for b in range(BODIES):
        storable = rng.random() < 0.5
        near = now_ms if storable else None
        n = rng.randrange(1, 9)
        lines = [random_line(rng, i, odd=False, compatible=True, near_ms=near) for i in range(n)]
        if rng.random() < 0.7:
            odd = random_line(rng, n, odd=True, compatible=True, near_ms=near)
            if storable or not _fails_in_storage(odd):
                lines.insert(rng.randrange(len(lines) + 1), odd)
        # The last line may lack its newline (Prometheus takes that); the generator never ends a line
        # in `\r` or starts one with a blank in this mode.
        bodies.append(Body("\n".join(lines) + ("" if b % 10 == 0 else "\n"), storable))
    return bodies


def _fails_in_storage(line: str) -> bool:
    """Duplicate label names (`__name__` in the braces too): Prometheus' TSDB refuses them, its parser
    does not, so only a `store` body can show them."""
    return any("duplicate label name" in m or "'__name__' in the braces" in m for _, m in parse_text(line)[1])


@pytest.fixture(scope="module")
def body_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 serving `bodies[i]` at `/b/<i>` as text format 0.0.4; yields
    (host:port, bodies), the list filled in by the test."""
    bodies: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = bodies[int(self.path.rsplit("/", 1)[1])].encode("utf-8")
            self.send_response(200)
            # This content type selects promparse.go (not OpenMetrics, not protobuf).
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _config(address: str, parse_ids: list[int], store_ids: list[int]) -> str:
    def groups(ids: list[int]) -> str:
        return "".join(
            f'      - {{targets: ["{address}"], labels: {{__metrics_path__: "/b/{i}", zz_body: "{i}"}}}}\n'
            for i in ids
        )

    return f"""global: {{scrape_interval: 2s, scrape_timeout: 2s}}
scrape_configs:
  - job_name: parse
    honor_timestamps: true
    metric_relabel_configs: [{{source_labels: [__name__], regex: ".*", action: drop}}]
    static_configs:
{groups(parse_ids)}
  - job_name: store
    honor_timestamps: true
    static_configs:
{groups(store_ids)}
"""


def _scrape_all(
    tmp: Path, address: str, bodies: list[Body]
) -> tuple[dict[int, list[str]], list[dict[str, Any]]]:
    """Prometheus' errors per body ([] when every target of it is up) and what job `store` stored."""
    store_ids = [i for i, b in enumerate(bodies) if b.storable]
    prometheus = start_prometheus(tmp, _config(address, list(range(len(bodies))), store_ids))
    try:
        expected_targets = len(bodies) + len(store_ids)

        def judged(target: dict[str, Any]) -> bool:
            # A scrape that never got the body (`Get "...": dial tcp ...: i/o timeout` on a loaded machine)
            # says nothing about parsing: wait for one that did. Parse errors never start so.
            return target["health"] == "up" or (
                target["health"] == "down" and not target["lastError"].startswith('Get "')
            )

        def all_scraped() -> list[dict[str, Any]] | None:
            targets = get_json(f"{prometheus.url}/api/v1/targets?state=active")["data"]["activeTargets"]
            done = len(targets) == expected_targets and all(judged(t) for t in targets)
            return targets if done else None

        targets = wait_until(all_scraped, timeout=90, interval=0.5, message="every target scraped and judged")
        errors: dict[int, list[str]] = {i: [] for i in range(len(bodies))}
        for t in targets:
            if t["health"] != "up":
                errors[int(t["labels"]["zz_body"])].append(f"{t['labels']['job']}: {t['lastError']}")
        return errors, _stored(prometheus)
    finally:
        prometheus.stop()


def _stored(prometheus: Server) -> list[dict[str, Any]]:
    query = urlencode(
        {"query": '{job="store",__name__!~"up|scrape_.+"}[1h]', "time": f"{time.time() + 1:.3f}"}
    )
    body = get_json(f"{prometheus.url}/api/v1/query?{query}")
    assert body["status"] == "success", body
    return list(body["data"]["result"])


Key = tuple[tuple[tuple[str, str], ...], str]
"""(labels sorted, `__name__` included; the value's bits in hex, or 'NaN')."""


def _prometheus_view(stored: list[dict[str, Any]]) -> dict[int, dict[Key, set[int]]]:
    """Per body: each stored series and value, with the timestamps of its samples."""
    out: dict[int, dict[Key, set[int]]] = {}
    for series in stored:
        metric = dict(series["metric"])
        body = int(metric.pop("zz_body"))
        del metric["job"], metric["instance"]
        for ts, text in series["values"]:
            key = (tuple(sorted(metric.items())), _value(float(text)))  # the API's text round-trips
            out.setdefault(body, {}).setdefault(key, set()).add(round(float(ts) * 1000))
    return out


def _observe_view(text: str) -> dict[Key, int | None]:
    """What observe's parser read: each series and value, with its timestamp or None."""
    samples, _ = parse_text(text)
    return {
        (tuple(sorted([*((k, v) for k, v in labels if v), ("__name__", name)])), _value(value)): ts
        for name, labels, value, ts in samples
    }


def _value(value: float) -> str:
    # The TSDB holds any NaN read from text as NormalNaN and the API writes 'NaN'; the bits of ours are
    # checked by the unit tests.
    return "NaN" if math.isnan(value) else value_key(value)


def test_observe_reads_every_body_as_a_real_prometheus_scrape_does(
    tmp_path: Path, body_server: tuple[str, list[str]]
) -> None:
    started = time.monotonic()
    address, served = body_server
    now_ms = int(time.time() * 1000)
    bodies = _generate(random.Random(SEED), now_ms)
    # Both jobs: 2.42 refuses a name with blanks only after metric relabelling, which `parse` drops.
    known = [Body(text, storable=True) for text, _, _ in KNOWN_DIFFERENCES]
    served.extend(b.text for b in [*bodies, *known])
    errors, stored = _scrape_all(tmp_path, address, [*bodies, *known])
    by_body = _prometheus_view(stored)

    mismatches: list[str] = []
    accepted = rejected = compared = 0
    for i, body in enumerate(bodies):
        ours, bad = parser_view(body.text, now_ms)
        for warm in (False, True):
            want = parser_view(body.text, now_ms, newer_than=WARM_TS) if warm else (ours, bad)
            if hot_path_view(body.text, now_ms, warm=warm) != want:
                mismatches.append(
                    f"body {i}: the hot path ({'warm' if warm else 'cold'}) differs from the parser"
                )
        prometheus_ok = not errors[i]
        if prometheus_ok != (not bad):
            _, our_errors = parse_text(body.text)
            mismatches.append(
                f"body {i} {body.text[:400]!r}: Prometheus {errors[i] or 'took it'}, observe {our_errors or 'took it'}"
            )
            continue
        accepted += prometheus_ok
        rejected += not prometheus_ok
        if prometheus_ok and body.storable:
            compared += 1
            theirs = by_body.get(i, {})
            mine = _observe_view(body.text)
            if set(mine) != set(theirs) or any(
                theirs[key] != {ts} if ts is not None else min(theirs[key]) < now_ms - 60_000
                for key, ts in mine.items()
            ):
                mismatches.append(f"body {i} {body.text[:400]!r}: stored {theirs} != read {mine}")
    for j, (text, prometheus_takes, observe_takes) in enumerate(KNOWN_DIFFERENCES, len(bodies)):
        assert (not errors[j]) == prometheus_takes, (text, errors[j])
        assert (not parse_text(text)[1]) == observe_takes, text
    assert not mismatches, f"{len(mismatches)} of {len(bodies)} bodies differ:\n" + "\n".join(mismatches[:10])
    assert accepted > BODIES // 4 and rejected > BODIES // 8 and compared > BODIES // 8, (
        accepted,
        rejected,
        compared,
    )
    assert time.monotonic() - started < 60
