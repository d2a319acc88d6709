"""Shared pieces of the logs end-to-end tests: fake Lokis (tests/loki_api_fake.py, following Loki's
documented API) for two clusters and the centre, live log writers, the collector's config, and the
expected central content computed independently of observe's own transform."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.loki_api_fake import NS, FakeLoki, LokiThread
from tests.servers import wait_until

Labels = tuple[tuple[str, str], ...]
Entry = tuple[int, Labels, str, Labels]  # (ts, labels, line, structured metadata)

TENANT = "fleet"


def logs_config(data_dir: Path, clusters: list[dict[str, Any]], push_url: str, **logs: Any) -> dict[str, Any]:
    """A collector config for the logs path only (no metrics), fast cycles for tests."""
    return {
        "interval": "1s",
        "data_dir": str(data_dir),
        "self_cluster": "mgmt",
        "self_metrics": False,
        "shutdown_timeout": "10s",
        "clusters": clusters,
        "central": {"loki": {"url": push_url, "tenant": TENANT, "timeout": "5s"}},
        "logs": {"start_from": "1h", "safety_lag": "1s", **logs},
    }


def loki_cluster(name: str, fake: FakeLoki, selectors: list[str], **extra: Any) -> dict[str, Any]:
    loki = {"url": fake.url, "selectors": selectors, "timeout": "800ms", **extra.pop("loki", {})}
    return {"name": name, "loki": loki, **extra}


def stamped(labels: Labels, cluster: str, static: dict[str, str]) -> Labels:
    """What the centre must hold as a stream's labels: ours win, a source's own `cluster` (or static
    label) moves to exported_<name>, as Prometheus does with honor_labels: false."""
    src = dict(labels)
    out = {**src, "cluster": cluster, **static}
    for name in sorted(("cluster", *static), key=lambda n: (len(n), n)):
        if src.get(name):
            out["exported_" + name] = src[name]
    return tuple(sorted(out.items()))


def expected(source: list[Entry], cluster: str, static: dict[str, str], select: Any) -> Counter[Entry]:
    return Counter(
        (ts, stamped(labels, cluster, static), line, md)
        for ts, labels, line, md in source
        if select(dict(labels))
    )


def central_fleet_entries(loop: LokiThread, central: FakeLoki) -> list[Entry]:
    """The centre's entries of the monitored clusters (the collector's own log stream left out)."""
    return [e for e in loop.call(lambda: central.entries(TENANT)) if ("app", "observe") not in e[1]]


def wait_for_centre(
    loop: LokiThread, central: FakeLoki, want: Counter[Entry], timeout: float, what: str
) -> Counter[Entry]:
    """The centre's fleet entries, counted, once they are the same set as `want`'s. Counts are left to
    the caller to compare, so an entry stored twice fails with a diff rather than a timeout."""
    got: Counter[Entry] = wait_until(
        lambda: (held := Counter(central_fleet_entries(loop, central))) and set(held) == set(want) and held,
        timeout,
        message=what,
    )
    return got


@dataclass
class Writer:
    """Appends log lines to streams of a fake cluster Loki, in its loop, every `every` seconds."""

    loop: LokiThread
    fake: FakeLoki
    streams: list[dict[str, str]]
    every: float = 0.02
    tenant: str = "fake"
    written: list[Entry] = field(default_factory=list)
    _task: Any = None
    _stop: asyncio.Event | None = None

    async def _run(self) -> None:
        assert self._stop is not None
        i = 0
        while not self._stop.is_set():
            ts = time.time_ns()
            for n, labels in enumerate(self.streams):
                line = f"live {i} of stream {n}: GET /api/items/{i % 97} 200 {i % 13}ms"
                md = (("trace_id", f"t{i}"),) if i % 5 == 0 else ()
                self.fake.add(labels, [(ts, line, dict(md))], tenant=self.tenant)
                self.written.append((ts, tuple(sorted(labels.items())), line, md))
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)

    def start(self) -> Writer:
        async def begin() -> None:
            self._stop = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())

        self.loop.run(begin())
        return self

    def stop(self) -> list[Entry]:
        async def end() -> None:
            assert self._stop is not None
            self._stop.set()
            await self._task

        self.loop.run(end())
        return list(self.written)


def seed(fake: FakeLoki, labels: dict[str, str], n: int, *, span: float = 1800.0, prefix: str = "seed",
         tenant: str = "fake", metadata_every: int = 0) -> list[Entry]:  # fmt: skip
    """`n` entries over the last `span` seconds (ending a minute ago); returns them as the centre will see."""
    end = time.time_ns() - 60 * NS
    step = int(span * NS / max(n, 1))
    out: list[Entry] = []
    rows: list[tuple[int, str] | tuple[int, str, dict[str, str]]] = []
    for i in range(n):
        ts = end - (n - i) * step
        line = (
            f'{prefix} {i} level=info msg="request served" path=/api/v1/items/{i % 101} bytes={i * 7 % 5000}'
        )
        md = (("trace_id", f"{prefix}-{i}"),) if metadata_every and i % metadata_every == 0 else ()
        rows.append((ts, line, dict(md)))
        out.append((ts, tuple(sorted(labels.items())), line, md))
    fake.add(labels, rows, tenant=tenant)
    return out
