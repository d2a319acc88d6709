"""Serve simulated clusters over HTTP on 127.0.0.1 free ports, for tests.

Each cluster gets its own port with `/federate`, `/metrics`, `/-/healthy` (see `observe/demo/serve.py`).
Its `/federate` is a SIMULATION of Prometheus' federation endpoint: it honours `match[]` only for simple
selectors (a metric name and/or `{label op "value"}` matchers; `{__name__=~".+"}`, `{__name__="x"}`,
`{job="x"}` are the forms the tests use). A test that needs real federation semantics starts a real
Prometheus (tests/servers.py) scraping the cluster's `/metrics` with `scrape_config(...)` below, and
pulls that Prometheus' `/federate`.

- `serve_fleet(...)`: async context manager, for async tests whose event loop stays free;
- `ThreadedFleet(...)`: the same servers on their own loop in a thread, for tests that block (starting
  a real Prometheus, `subprocess.run`, `time.sleep`) while the servers must keep answering.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from observe.demo.fleet import SimulatedCluster
from observe.demo.serve import SimulatedFleet, SimulatedPrometheus

DEMO_NAMES = ("prod-eu-1", "prod-us-1", "edge-onprem-1")
FEDERATE: dict[str, str] = {"protocol": "federate"}
"""For a cluster's `prometheus:` in tests about the federation path (the default, auto, reads raw samples)."""


def demo_clusters(names: Sequence[str] = DEMO_NAMES, **kwargs: object) -> list[SimulatedCluster]:
    """Small simulated clusters (~1.8k series each) that see each other as Istio peers."""
    return [
        SimulatedCluster(name, seed=i, peers=[n for n in names if n != name], **kwargs)  # type: ignore[arg-type]
        for i, name in enumerate(names)
    ]


@asynccontextmanager
async def serve_fleet(
    clusters: Sequence[SimulatedCluster],
    *,
    external_labels: Mapping[str, Mapping[str, str]] | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[SimulatedFleet]:
    """Serve `clusters` on the running loop until the block exits; `fleet.url(name)` is each base URL."""
    async with SimulatedFleet(clusters, external_labels=external_labels, clock=clock) as fleet:
        yield fleet


class ThreadedFleet:
    """`SimulatedFleet` on a private event loop in a daemon thread; a sync context manager."""

    def __init__(
        self,
        clusters: Sequence[SimulatedCluster],
        *,
        external_labels: Mapping[str, Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
        start_timeout: float = 10.0,
    ) -> None:
        self.fleet = SimulatedFleet(clusters, external_labels=external_labels, clock=clock)
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> ThreadedFleet:
        self._thread = threading.Thread(target=self._serve, name="simulated-fleet", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError(f"simulated fleet did not start within {self._start_timeout}s")
        if self._error is not None:
            raise RuntimeError("simulated fleet failed to start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self.fleet.start())
            except BaseException as exc:  # reported to the starting thread by __enter__
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.fleet.stop())
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def __getitem__(self, name: str) -> SimulatedPrometheus:
        return self.fleet[name]

    def url(self, name: str) -> str:
        return self.fleet.url(name)

    def target(self, name: str) -> str:
        """`host:port` of a cluster's exporter, for a scrape config's static target."""
        return self.fleet[name].instance

    def set_available(self, name: str, available: bool) -> None:
        """Make a cluster's endpoints answer 503 (False) or serve again (True); a bool store is atomic."""
        self.fleet[name].available = available

    def scrape_config(self, name: str, *, scrape_interval: str = "1s", job: str = "kubernetes") -> str:
        """A prometheus.yml `scrape_configs` entry (a YAML list item) for one cluster's `/metrics`.

        `honor_labels: true` keeps the simulated series' own `job`/`instance` (kube-state-metrics,
        node-exporter...), so the real Prometheus holds what a cluster's Prometheus would.
        """
        return (
            f"  - job_name: {job}-{name}\n"
            f"    honor_labels: true\n"
            f"    scrape_interval: {scrape_interval}\n"
            f"    static_configs:\n"
            f"      - targets: ['{self.target(name)}']\n"
        )
