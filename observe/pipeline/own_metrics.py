"""The collector's own metrics as one more metrics pipeline: the registry, encoded, queued, shipped.

    Telemetry registry -> SelfMetricsEncoder (labelled self_cluster) -> data_dir/queue/<self_cluster>/metrics

Shipped like any cluster's metrics (same sink, same delivery) so the centre learns that a cluster is
unreachable even when no Prometheus scrapes the collector (see observe/telemetry/own_metrics.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from observe.config import Config
from observe.model import METRICS, Signal
from observe.pipeline.base import (
    DeliveryPlan,
    Outcome,
    append_cycle_or_drop,
    max_samples_per_record,
    open_queue,
)
from observe.queue.durable import DurableQueue
from observe.telemetry import Telemetry
from observe.telemetry.own_metrics import SelfMetricsEncoder

__all__ = ["OwnMetricsPipeline"]


class OwnMetricsPipeline:
    """`cycle()` snapshots the registry; run it after the other pipelines' cycles, so it holds their counts."""

    signal: Signal = METRICS
    source = "self"

    def __init__(
        self,
        cfg: Config,
        *,
        queue: DurableQueue,
        telemetry: Telemetry,
        before_snapshot: Callable[[], None] = lambda: None,
    ) -> None:
        self.cluster = cfg.self_cluster
        self.queue = queue
        self.telemetry = telemetry
        self._before = before_snapshot  # e.g. refresh the queue gauges from the queues' live state
        self._encoder = SelfMetricsEncoder(
            telemetry.registry, self_label="self_cluster", self_cluster=cfg.self_cluster,
            max_samples=max_samples_per_record(cfg),
        )  # fmt: skip
        self._last = Outcome()
        self._series = 0

    @classmethod
    def open(
        cls, cfg: Config, *, telemetry: Telemetry, before_snapshot: Callable[[], None] = lambda: None
    ) -> OwnMetricsPipeline:
        queue = open_queue(
            cfg, cfg.self_cluster, METRICS, telemetry, max_age=cfg.queue.max_age, fsync=cfg.queue.fsync
        )
        return cls(cfg, queue=queue, telemetry=telemetry, before_snapshot=before_snapshot)

    @property
    def last(self) -> Outcome:
        return self._last

    def delivery_plan(self, sink: str) -> DeliveryPlan:
        return DeliveryPlan(max_in_flight=None, on_sent=None)  # not a cluster's samples: not counted as such

    async def cycle(self) -> Outcome:
        start = time.monotonic()
        self._before()
        payloads = self._encoder.encode(int(time.time() * 1000))
        error = append_cycle_or_drop(
            self.queue, payloads, telemetry=self.telemetry, cluster=self.cluster, signal=self.signal
        )
        if error is not None:
            self._last = Outcome(ok=False, error=str(error), reason="queue", duration=time.monotonic() - start)
        else:
            self._series = sum(n for _, n in payloads)
            self._last = Outcome(ok=True, duration=time.monotonic() - start, finished_at=time.time())
        return self._last

    def status(self) -> dict[str, object]:
        return {**self._last.status(), "series": self._series}

    async def retire(self) -> None:
        """The collector's own metrics never leave the fleet."""

    async def close(self) -> None:
        """Nothing held but the queue, which the collector closes."""
