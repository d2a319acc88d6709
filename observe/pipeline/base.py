"""What every pipeline shares: the protocol the collector drives, the outcome of a cycle, and the one way
to open a pipeline's queue, build its normalizer and append a cycle.

A pipeline is one (cluster, signal): `source -> normalize/relabel -> encode -> DurableQueue`. The queue is
drained by a `Delivery` into the pipeline's sink (`centre.py` opens it), and the collector runs `cycle()`
once per interval. A new source kind or signal is one new module beside this one that satisfies
`Pipeline`; nothing else changes shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

from observe.config import ClusterConfig, Config
from observe.errors import QueueError
from observe.model import Signal
from observe.queue.durable import DurableQueue, Record
from observe.reasons import DROP_CORRUPT, DROP_QUEUE_ERROR
from observe.telemetry import Telemetry
from observe.transform.normalize import Normalizer
from observe.transform.relabel import Relabeler

__all__ = [
    "LOCAL_STORE_MAX_SAMPLES",
    "DeliveryPlan",
    "Key",
    "Outcome",
    "Pipeline",
    "append_cycle",
    "append_cycle_or_drop",
    "build_normalizer",
    "max_samples_per_record",
    "open_queue",
]

log = logging.getLogger("observe.pipeline")

Key = tuple[str, Signal]
"""(cluster, signal): a pipeline's identity, its queue's directory, its row in reports and `/status`."""

# Samples per queue record when the sink is the embedded store: one Parquet row group per record, and
# 50k rows (~1 MiB of Parquet) amortise a file's fixed cost without holding much in memory.
LOCAL_STORE_MAX_SAMPLES: Final = 50_000


@dataclass
class Outcome:
    """The outcome of one pipeline's last cycle, as `/status`, `run --once` and the demo report it.

    The fields every signal has are here; a signal's own figures are in its subclass.
    """

    ok: bool = False
    error: str | None = None
    reason: str | None = None  # a FAIL_* constant when the cycle failed
    duration: float = 0.0
    finished_at: float | None = None

    def figures(self) -> dict[str, int | float | None]:
        """The signal's own counts, by name, for tables (`run --once`, the demo's live view)."""
        return {}

    def status(self) -> dict[str, object]:
        """The fields of a pipeline's `/status` section that every signal has."""
        return {
            "up": self.ok,
            "last_finished": self.finished_at,
            "last_error": self.error,
            "last_reason": self.reason,
            "pull_seconds": round(self.duration, 3),
        }


@dataclass(frozen=True)
class DeliveryPlan:
    """How a pipeline's queue must be drained: the parts of the retry policy that depend on the signal."""

    max_in_flight: int | None  # None: the central sink's setting (records of one group may go together)
    on_sent: Callable[[Record], None] | None  # counts what an acknowledged record held


class Pipeline(Protocol):
    """One (cluster, signal) as the collector drives it."""

    cluster: str
    signal: Signal
    source: str  # the `source` metric label and the `/status` section: `prometheus`, `loki`, `self`
    queue: DurableQueue

    @property
    def last(self) -> Outcome:
        """The last cycle's outcome (a fresh `Outcome` before the first)."""
        ...

    def delivery_plan(self, sink: str) -> DeliveryPlan:
        """How the queue is drained into the sink named `sink`."""
        ...

    async def cycle(self) -> Outcome:
        """Pull once and queue what came back; never raises for a source's or the disk's failure."""
        ...

    def status(self) -> dict[str, object]:
        """This pipeline's section of `/status` (no secrets: URLs through `observe.http.safe_url`)."""
        ...

    async def retire(self) -> None:
        """The cluster left the fleet: queue what tells the centre its series ended (staleness markers,
        where the signal has them); no more cycles follow."""
        ...

    async def close(self) -> None:
        """Release sessions and files (the queue is closed by the collector, after the last flush)."""
        ...


def open_queue(
    cfg: Config,
    cluster: str,
    signal: Signal,
    telemetry: Telemetry,
    *,
    max_age: float,
    fsync: Literal["segment", "always", "never"],
) -> DurableQueue:
    """The pipeline's queue under `data_dir/queue/<cluster>/<signal>`; its drops counted by reason."""

    def on_drop(reason: str, count: int) -> None:
        telemetry.dropped(cluster, signal, reason, count)
        if reason == DROP_CORRUPT:
            log.error("corrupt queue record skipped", extra={"cluster": cluster, "signal": signal})

    q = cfg.queue
    return DurableQueue(
        Path(cfg.data_dir) / "queue" / cluster / signal,
        max_bytes=q.max_bytes, segment_bytes=q.segment_bytes, max_age=max_age, fsync=fsync, on_drop=on_drop,
    )  # fmt: skip


def build_normalizer(cfg: Config, cluster: ClusterConfig, telemetry: Telemetry) -> Normalizer:
    """The cluster's stamping (cluster and static labels, Prometheus' collision rule) and relabel_configs."""
    name = cluster.name
    return Normalizer(
        cluster_label=cfg.cluster_label,
        cluster=name,
        static_labels=cluster.labels,
        relabeler=Relabeler(cfg.relabel_configs) if cfg.relabel_configs else None,
        on_collision=lambda label: telemetry.label_collision(name, label),
    )


def append_cycle(queue: DurableQueue, payloads: list[tuple[bytes, int]]) -> None:
    """Append one cycle's (or one log page's) payloads as one group; raises QueueError if the disk refused.

    The group number only has to differ from the previous append's (the queue keeps groups apart by a change
    of number), also across restarts: `last_seq + 1` does.
    """
    if payloads:
        queue.append_many(payloads, group=queue.last_seq + 1)


def append_cycle_or_drop(
    queue: DurableQueue, payloads: list[tuple[bytes, int]], *, telemetry: Telemetry, cluster: str, signal: Signal
) -> QueueError | None:
    """`append_cycle`, for a pipeline that cannot re-read what the disk refused (a federation pull is a
    snapshot): the payloads are lost, counted (`queue_error`) and said once per cycle; the next cycle tries
    again. Returns the error, or None."""
    try:
        append_cycle(queue, payloads)
    except QueueError as exc:
        telemetry.dropped(cluster, signal, DROP_QUEUE_ERROR, sum(n for _, n in payloads), detail=str(exc))
        return exc
    return None


def max_samples_per_record(cfg: Config) -> int:
    """Samples per queue record: the receiver's request size when there is one, else the store's."""
    rw = cfg.central.remote_write
    return rw.max_samples_per_send if rw is not None else LOCAL_STORE_MAX_SAMPLES
