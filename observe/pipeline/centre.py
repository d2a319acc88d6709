"""The centre every pipeline delivers to, and the one way a pipeline's queue gets its `Delivery`.

    metrics -> RemoteWriteSink (one session shared by every cluster)   or LocalStoreSink (per cluster)
    logs    -> LokiPushSink (one session shared by every cluster)      or LocalLogStoreSink (per cluster)

The local sinks are the embedded default, used when `central.remote_write` / `central.loki` is absent;
both write Parquet under `data_dir/store/` (observe/sinks/local_store.py).

The retry policy is the central sink's (`central.remote_write` / `central.loki`: backoff, in-flight
requests); the pipeline adds only what depends on its signal (`Pipeline.delivery_plan`): how many records
may be in flight and what to count once a record is acknowledged.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from observe.config import Config
from observe.http import new_session, safe_url
from observe.model import LOGS, METRICS, Signal
from observe.pipeline.base import Pipeline
from observe.sinks import Sink
from observe.sinks.delivery import Delivery
from observe.sinks.loki_push import LokiPushSink
from observe.sinks.remote_write import RemoteWriteSink
from observe.telemetry import Telemetry

__all__ = ["Centre"]


class Centre:
    """The central sinks, built on first use (sessions need a running loop) and closed once."""

    def __init__(self, cfg: Config, telemetry: Telemetry) -> None:
        self.cfg = cfg
        self.telemetry = telemetry
        self._sessions: list[aiohttp.ClientSession] = []
        self._remote_write: RemoteWriteSink | None = None
        self._loki_session: aiohttp.ClientSession | None = None
        self._sinks: list[Sink] = []

    def sink_name(self, signal: Signal) -> str:
        """The `sink` label the signal's records will be sent under (known before any sink is built)."""
        central = self.cfg.central.loki if signal == LOGS else self.cfg.central.remote_write
        if central is None:
            return "local_store"
        return LokiPushSink.name if signal == LOGS else RemoteWriteSink.name

    def sink(self, pipeline: Pipeline) -> Sink:
        """The sink `pipeline`'s records go to."""
        if pipeline.signal == METRICS:
            return self._metrics_sink(pipeline.cluster)
        if pipeline.signal == LOGS:
            return self._logs_sink(pipeline.cluster)
        raise ValueError(f"no central sink for signal {pipeline.signal!r}")

    def delivery(self, pipeline: Pipeline) -> Delivery:
        """The delivery draining `pipeline.queue` into its sink, with the centre's retry policy."""
        sink = self.sink(pipeline)
        plan = pipeline.delivery_plan(sink.name)
        options: dict[str, Any] = {}
        central = self.cfg.central.remote_write if pipeline.signal == METRICS else self.cfg.central.loki
        if central is not None:  # else (the embedded store) Delivery's own defaults
            options.update(min_backoff=central.min_backoff, max_backoff=central.max_backoff)
        in_flight = plan.max_in_flight
        if in_flight is None:
            rw = self.cfg.central.remote_write
            in_flight = rw.max_in_flight if rw is not None and pipeline.signal == METRICS else 1
        delivery = Delivery(
            pipeline.queue, sink, cluster=pipeline.cluster, signal=pipeline.signal, telemetry=self.telemetry,
            max_in_flight=in_flight, max_age=pipeline.queue.max_age, on_sent=plan.on_sent, **options,
        )  # fmt: skip
        delivery.update_gauges()
        return delivery

    def describe(self) -> dict[str, Any]:
        """The `sink` and `logs_sink` sections of `/status`."""
        rw, loki = self.cfg.central.remote_write, self.cfg.central.loki
        logs_sink: dict[str, str] | None = None  # no cluster has logs: there is no logs sink to describe
        if loki is not None:
            logs_sink = {"kind": "loki_push", "url": safe_url(loki.url)}
        elif any(c.loki is not None for c in self.cfg.clusters):
            logs_sink = {"kind": "local_store"}
        return {
            "sink": {"kind": "remote_write", "url": safe_url(rw.url)} if rw else {"kind": "local_store"},
            "logs_sink": logs_sink,
        }

    async def close(self) -> None:
        for sink in self._sinks:
            await sink.close()
        for session in self._sessions:
            await session.close()
        self._sinks.clear()
        self._sessions.clear()
        self._remote_write = self._loki_session = None

    # -- per signal -----------------------------------------------------------------------------------------
    def _metrics_sink(self, cluster: str) -> Sink:
        rw = self.cfg.central.remote_write
        if rw is None:
            # pyarrow is heavy: imported only when the embedded store is the sink
            from observe.sinks.local_store import STORE_SUBDIR, LocalStoreSink

            store = LocalStoreSink(self.cfg.data_dir / STORE_SUBDIR, cluster=cluster)
            self._sinks.append(store)
            return store
        if self._remote_write is None:
            session = new_session(rw)
            self._sessions.append(session)
            self._remote_write = RemoteWriteSink(rw, session)
            self._sinks.append(self._remote_write)
        return self._remote_write

    def _logs_sink(self, cluster: str) -> Sink:
        central = self.cfg.central.loki
        if central is None:
            from observe.sinks.local_store import STORE_SUBDIR, LocalLogStoreSink

            store = LocalLogStoreSink(self.cfg.data_dir / STORE_SUBDIR, cluster=cluster)
            self._sinks.append(store)
            return store
        if self._loki_session is None:
            self._loki_session = new_session(central)
            self._sessions.append(self._loki_session)
        telemetry = self.telemetry
        sink = LokiPushSink(
            central, self._loki_session, on_throttled=lambda: telemetry.log_throttled_429(cluster, "push")
        )
        self._sinks.append(sink)
        return sink
