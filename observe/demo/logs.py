"""The log lines a simulated cluster's pods write: what its Loki would hold, as a pure function of time.

Every pod of the topology is one stream, labelled as Promtail / the Grafana Agent label Kubernetes pods
(`namespace`, `pod`, `container`, `app`, `job="<namespace>/<app>"`, `node_name`). Each stream writes one
line every 1, 2, 3 or 5 seconds (drawn per pod) at a fixed offset, so the entries of any window are
known exactly: `entries(start_ns, end_ns)` is what the cluster logged, whoever asks and whenever.

Lines are logfmt (`ts=... level=... msg=...`) of several levels, and follow the workload's state
(`Timeline`, shared with the metrics):
- healthy: mostly `info` request lines (with a `trace_id` as structured metadata), some `debug`, a few
  `warn` (slow upstream) and the odd `error`;
- during an outage, the crash-looping container of each namespace logs its crash (`error`, `fatal`,
  then its restart), the other pods warn about 503s from their upstreams, and the pods on the NotReady
  node write nothing (the node is gone, its kubelet and container runtime with it).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from observe.demo.series import Timeline
from observe.demo.topology import Pod, Topology
from observe.model import Labels

__all__ = ["NS", "LogLine", "SimulatedLogs"]

NS: Final = 1_000_000_000
_PERIODS_S: Final = (1, 2, 3, 5)
_PATHS: Final = (
    "/api/v1/orders",
    "/api/v1/items",
    "/healthz",
    "/api/v1/users/me",
    "/api/v1/search",
    "/metrics",
)

LogLine = tuple[int, Labels, str, Labels]
"""(timestamp ns, stream labels, line, structured metadata): what Loki's query_range returns per entry."""
StreamSelector = Callable[[Labels], bool]


@dataclass(frozen=True)
class _Stream:
    labels: Labels
    period_ns: int
    offset_ns: int  # first entry after the Unix epoch, in [0, period_ns)
    pod: Pod
    app: str


class SimulatedLogs:
    """The streams of one simulated cluster; `entries()` and `count()` answer for any window."""

    def __init__(self, topology: Topology, timeline: Timeline) -> None:
        self.topology = topology
        self.timeline = timeline
        self.streams: list[_Stream] = []
        for d in topology.deployments:
            for p in d.pods:
                h = _digest(f"{topology.name}/{p.name}")
                period = _PERIODS_S[h[0] % len(_PERIODS_S)] * NS
                labels: Labels = tuple(
                    sorted(
                        {
                            "namespace": d.namespace, "pod": p.name, "container": p.container, "app": d.name,
                            "job": f"{d.namespace}/{d.name}", "node_name": p.node.name,
                        }.items()
                    )
                )  # fmt: skip
                offset = int.from_bytes(h[1:9], "big") % period
                self.streams.append(_Stream(labels, period, offset, p, d.name))

    def entries(
        self,
        start_ns: int,
        end_ns: int,
        *,
        select: StreamSelector | None = None,
        limit: int | None = None,
        backward: bool = False,
    ) -> list[LogLine]:
        """The entries in [start_ns, end_ns) of the streams `select` keeps, oldest first (newest first when
        `backward`), at most `limit`. Ties (same ns) are ordered by stream labels."""
        streams = [s for s in self.streams if select is None or select(s.labels)]
        runs = [self._run(s, start_ns, end_ns, backward) for s in streams]
        merged = heapq.merge(*runs, key=(lambda e: (-e[0], e[1])) if backward else None)
        out: list[LogLine] = []
        for entry in merged:
            if limit is not None and len(out) >= limit:
                break
            out.append(entry)
        return out

    def count(self, start_ns: int, end_ns: int) -> int:
        """How many entries every stream wrote in [start_ns, end_ns)."""
        return sum(1 for s in self.streams for _ in self._run(s, start_ns, end_ns, False))

    # -- one stream -------------------------------------------------------------------------------------
    def _run(self, s: _Stream, start_ns: int, end_ns: int, backward: bool) -> Iterator[LogLine]:
        if end_ns <= start_ns:
            return
        first = -(-(start_ns - s.offset_ns) // s.period_ns)  # the first k with offset + k*period >= start
        last = (end_ns - 1 - s.offset_ns) // s.period_ns
        ks = range(last, first - 1, -1) if backward else range(first, last + 1)
        for k in ks:
            ts = s.offset_ns + k * s.period_ns
            entry = self._entry(s, k, ts)
            if entry is not None:
                yield entry

    def _entry(self, s: _Stream, k: int, ts: int) -> LogLine | None:
        healthy = self.timeline.healthy_at(ts / NS)
        if not healthy and s.pod.node.failing:
            return None  # NotReady node: nothing runs there to log
        h = _digest(f"{self.topology.name}/{s.pod.name}/{k}")
        roll = h[0] % 100
        when = datetime.fromtimestamp(ts / NS, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        metadata: Labels = ()
        if not healthy and s.pod.crashes:
            step = k % 3
            if step == 0:
                level, msg = (
                    "error",
                    f"cannot connect to postgres at 10.{self.topology.net}.0.5:5432: connection refused",
                )
            elif step == 1:
                level, msg = "fatal", "giving up after 3 attempts, exiting with code 1"
            else:
                level, msg = "info", f"starting {s.pod.container} (restart after CrashLoopBackOff)"
            return ts, s.labels, f'ts={when} level={level} msg="{msg}"', metadata
        if not healthy and roll < 40:
            peer = self.topology.peers[0] if self.topology.peers else "upstream"
            line = f'ts={when} level=warn msg="upstream answered 503" upstream={peer} retry_in=1s'
            return ts, s.labels, line, metadata
        if roll < 70:
            path = _PATHS[h[1] % len(_PATHS)]
            status = 200 if h[2] % 50 else 404
            metadata = (("trace_id", h[3:11].hex()),)
            line = f'ts={when} level=info msg="request served" method=GET path={path} status={status} duration_ms={1 + h[4] % 120}'
        elif roll < 85:
            line = (
                f'ts={when} level=debug msg="cache lookup" hit={"true" if h[5] % 3 else "false"} key=k{h[6]}'
            )
        elif roll < 97:
            line = f'ts={when} level=warn msg="slow upstream" duration_ms={500 + h[7] * 4}'
        else:
            line = f'ts={when} level=error msg="request failed" path={_PATHS[h[1] % len(_PATHS)]} status=500'
        return ts, s.labels, line, metadata


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
