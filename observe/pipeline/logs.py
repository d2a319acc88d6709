"""One cluster's logs path: tail its Loki, stamp the cluster, queue push payloads, advance the cursors.

    LokiSource.pages(selector, cursor, now - safety_lag)        observe/sources/loki.py (query_range)
      -> Normalizer.apply(stream labels)                       cluster + static labels, collisions, relabel
      -> Loki's limits (label count and lengths, line size)    reported and counted, never truncated
      -> encode_payload(...)                                   observe/protocol/loki_push.py (PushRequest)
      -> append_cycle(queue, payloads)                         data_dir/queue/<cluster>/logs, one group a page
      -> CursorStore.save(selector, page.cursor)               only after the append returned

The cursor moves only once its page is in the queue, and the queue's acknowledged position only after
the central Loki's 2xx (`observe/sinks/delivery.py`), so delivery is at-least-once end to end. A crash
between the append and the cursor save re-reads that page and queues it again; the repeat is
byte-identical (same stream labels, timestamps and lines), and Loki drops an entry identical to one it
has, so the centre stores each entry once.

Back-pressure: while the logs queue holds more than `BACKPRESSURE_FRACTION` of its bound (the central
Loki is down or throttling), no new pages are pulled: the backlog waits in the cluster's own Loki, which
keeps it for its retention, instead of pushing the queue into dropping its oldest records.

Each page's payloads are appended as one group; the service delivers logs one record at a time, so each
stream reaches the centre in time order (Loki rejects an entry more than ~1h older than its stream's
newest: `entry too far behind`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import aiohttp

from observe.config import ClusterConfig, Config
from observe.errors import ConfigError, QueueError, SourceError
from observe.http import new_session, safe_url
from observe.model import LOGS, Labels, Signal
from observe.pipeline.base import DeliveryPlan, Outcome, append_cycle, build_normalizer, open_queue
from observe.protocol.loki_push import Entry, encode_payload, format_labels
from observe.queue.durable import DurableQueue
from observe.reasons import (
    DROP_LABEL_LIMITS,
    DROP_LINE_TOO_LONG,
    DROP_RELABEL,
    FAIL_BAD_SELECTOR,
    FAIL_THROTTLED,
)
from observe.sources.log_cursors import Cursor, CursorStore
from observe.sources.loki import NS, LogEntry, LokiSource, Page, loki_source
from observe.telemetry import Telemetry
from observe.transform.normalize import Normalizer
from observe.units import parse_duration

__all__ = ["BACKPRESSURE_FRACTION", "LOGS_QUEUE_MAX_AGE", "LogsOutcome", "LogsPipeline"]

# Loki itself refuses entries older than 7 days (reject_old_samples_max_age), and says so with a 400: the
# queue need not guess earlier. Back-pressure keeps the queue small; the backlog waits in the cluster's Loki.
LOGS_QUEUE_MAX_AGE: Final = 7 * 86400.0
BACKPRESSURE_FRACTION: Final = 0.5  # half the queue bound: the other half absorbs pages already pulled
_ENTRY_OVERHEAD: Final = 24  # protobuf framing + timestamp per entry, for batching by bytes
_MAX_STREAM_CACHE: Final = 100_000  # source label sets remembered with their normalized form (~1 KiB each)
_MAX_REPORTED: Final = 1000  # distinct streams whose label-limit violation was logged (log once each)

log = logging.getLogger("observe.pipeline.logs")

_DROPPED: Final = object()  # cache value: relabel_configs dropped the stream


@dataclass
class LogsOutcome(Outcome):
    entries: int = 0
    pages: int = 0
    body_bytes: int = 0
    lag_seconds: float | None = None
    backpressure: bool = False
    bad_selectors: dict[str, str] = field(default_factory=dict)

    def figures(self) -> dict[str, int | float | None]:
        lag = None if self.lag_seconds is None else round(self.lag_seconds)
        return {"entries": self.entries, "pages": self.pages, "lag s": lag}


class LogsPipeline:
    """One cluster's Loki, tailed: `await cycle()` once per interval."""

    signal: Signal = LOGS
    source = "loki"

    def __init__(
        self,
        cfg: Config,
        cluster: ClusterConfig,
        *,
        source: LokiSource,
        normalizer: Normalizer,
        queue: DurableQueue,
        cursors: CursorStore,
        telemetry: Telemetry,
        encoding: Literal["protobuf", "json"] = "protobuf",
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        assert cluster.loki is not None
        self.cluster = self.name = cluster.name
        self.url = source.base_url  # cluster.loki.url, or the API server's service proxy
        self._session = session  # owned: closed with the pipeline
        self.logs = cfg.logs
        # a selector given twice would share one cursor: keep it once
        self.selectors = list(dict.fromkeys(cluster.loki.selectors))
        self.puller = source
        self.normalizer = normalizer
        self.queue = queue
        self.cursors = cursors
        self.telemetry = telemetry
        self.encoding: Literal["protobuf", "json"] = encoding
        self.clock = clock
        self.budget = cfg.interval  # a cycle returns after this long, so /status and the lag stay fresh
        self._last = LogsOutcome()
        self._cursor: dict[str, Cursor] = {}
        # source labels -> their normalized Labels, _DROPPED, or a str naming the broken limit
        self._streams: dict[Labels, object] = {}
        self._reported: set[Labels] = set()
        self._in_backpressure = False
        self._turn = 0  # which selector goes first: rotates, so one selector's backlog cannot starve the rest

    @classmethod
    def wanted(cls, cluster: ClusterConfig) -> bool:
        return cluster.loki is not None

    @classmethod
    def open(cls, cfg: Config, cluster: ClusterConfig, *, telemetry: Telemetry, sink: str) -> LogsPipeline:
        """The pipeline as the service runs it: its own session, queue (replaying what is left) and cursors.

        The queue fsyncs every append (unless queue.fsync is "never"): the cursor is fsynced right after
        the append, and a cursor that survives a power cut while the entries it passed do not loses them.
        """
        loki = cluster.loki
        assert loki is not None
        session = new_session(loki)
        queue = open_queue(
            cfg, cluster.name, LOGS, telemetry, max_age=LOGS_QUEUE_MAX_AGE,
            fsync="never" if cfg.queue.fsync == "never" else "always",
        )  # fmt: skip
        telemetry.init_logs(cluster.name, source=cls.source)
        return cls(
            cfg, cluster, source=loki_source(cluster, session, page_limit=cfg.logs.page_limit),
            normalizer=build_normalizer(cfg, cluster, telemetry), queue=queue,
            cursors=CursorStore(Path(cfg.data_dir) / "log_cursors", cluster.name), telemetry=telemetry,
            encoding=cfg.central.loki.encoding if cfg.central.loki is not None else "protobuf", session=session,
        )  # fmt: skip

    @property
    def last(self) -> LogsOutcome:
        return self._last

    def delivery_plan(self, sink: str) -> DeliveryPlan:
        # One record in flight, so each stream reaches the centre in time order (Loki rejects an entry far
        # behind its stream's newest).
        telemetry, cluster = self.telemetry, self.cluster
        return DeliveryPlan(
            max_in_flight=1,
            on_sent=lambda r: telemetry.logs_sent(cluster, entries=r.count, body_bytes=len(r.payload) - 1),
        )

    def status(self) -> dict[str, object]:
        last = self._last
        return {
            "url": safe_url(self.url),
            **last.status(),
            "bad_selectors": last.bad_selectors,
            "entries_last_cycle": last.entries,
            "lag_seconds": None if last.lag_seconds is None else round(last.lag_seconds, 3),
            "backpressure": last.backpressure,
        }

    async def retire(self) -> None:
        """Nothing to send: log streams have no staleness marker."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- the cycle ------------------------------------------------------------------------------------------
    async def cycle(self) -> LogsOutcome:
        """Pull every selector from its cursor up to now - safety_lag (or until the time budget is spent)."""
        started = time.monotonic()
        end_ns = int((self.clock() - self.logs.safety_lag) * NS)
        result = LogsOutcome()
        first = self._turn % len(self.selectors)
        self._turn += 1
        try:
            for i, selector in enumerate(self.selectors[first:] + self.selectors[:first]):
                if (i and time.monotonic() - started > self.budget) or self._backpressure(result):
                    break
                try:
                    await self._pull(selector, end_ns, started, result)
                except ConfigError as exc:
                    # one bad selector must not stop the others; it is retried (and reported) every cycle
                    result.bad_selectors[selector] = str(exc)
                    self.telemetry.pull_failed(
                        self.name, self.source, duration=time.monotonic() - started, reason=FAIL_BAD_SELECTOR,
                        message=str(exc),
                    )  # fmt: skip
        except QueueError as exc:
            # the disk under the queue or the cursors failed: nothing was lost (the cursor did not move
            # past what is queued); the next cycle tries again
            result.error, result.reason = str(exc), "queue"
            log.error(
                "logs cycle stopped: queue or cursor write failed",
                extra={"cluster": self.name, "error": str(exc)},
            )
        except SourceError as exc:
            if exc.reason == FAIL_THROTTLED:
                self.telemetry.log_throttled_429(self.name, "query")
            result.error, result.reason = str(exc), exc.reason
            self.telemetry.pull_failed(
                self.name,
                self.source,
                duration=time.monotonic() - started,
                reason=exc.reason,
                message=str(exc),
            )
        result.duration = time.monotonic() - started
        result.finished_at = self.clock()
        result.lag_seconds = self._lag()
        if result.lag_seconds is not None:
            self.telemetry.log_lag_seconds(self.name, result.lag_seconds)
        result.ok = result.error is None and not result.bad_selectors
        if result.ok:
            self.telemetry.pull_succeeded(
                self.name, self.source, duration=result.duration, at=result.finished_at
            )
        self._last = result
        return result

    async def _pull(self, selector: str, end_ns: int, started: float, result: LogsOutcome) -> None:
        cursor = self._load(selector)
        async with contextlib.aclosing(self.puller.pages(selector, cursor, end_ns)) as pages:
            async for page in pages:
                self._enqueue(page)
                self.cursors.save(
                    selector, page.cursor
                )  # after the append returned: never ahead of the queue
                self._cursor[selector] = page.cursor
                result.pages += 1
                result.entries += len(page.entries)
                result.body_bytes += page.body_bytes
                self.telemetry.logs_pulled(self.name, entries=len(page.entries), body_bytes=page.body_bytes)
                if page.gaps:
                    self.telemetry.log_pagination_gap(self.name, page.gaps)
                if time.monotonic() - started > self.budget or self._backpressure(result):
                    return  # the saved cursor is where the next cycle resumes

    def _load(self, selector: str) -> Cursor:
        cursor = self._cursor.get(selector) or self.cursors.load(selector)
        if cursor is None:
            back = (
                self.logs.safety_lag
                if self.logs.start_from == "now"
                else parse_duration(self.logs.start_from)
            )
            cursor = Cursor(int((self.clock() - back) * NS))
            log.info(
                "log selector starts",
                extra={"cluster": self.name, "selector": selector, "from": self.logs.start_from},
            )
        self._cursor[selector] = cursor
        return cursor

    def _lag(self) -> float | None:
        if not self._cursor:
            return None
        oldest = min(c.start_ns for c in self._cursor.values())
        return self.clock() - oldest / NS

    def _backpressure(self, result: LogsOutcome) -> bool:
        full = self.queue.stats().bytes > BACKPRESSURE_FRACTION * self.queue.max_bytes
        if full != self._in_backpressure:
            self._in_backpressure = full
            log.warning(
                "logs queue over half full: pulling paused until the central Loki catches up"
                if full else "logs queue drained: pulling resumed",
                extra={"cluster": self.name, "queue_bytes": self.queue.stats().bytes},
            )  # fmt: skip
        result.backpressure = result.backpressure or full
        return full

    # -- one page -------------------------------------------------------------------------------------------
    def _enqueue(self, page: Page) -> None:
        """Normalize, check Loki's limits, batch by bytes, and append the page's payloads as one group."""
        if not page.entries:
            return
        append_cycle(self.queue, self._encode(page.entries))  # a QueueError stops the cycle: cursor stays

    def _encode(self, entries: list[LogEntry]) -> list[tuple[bytes, int]]:
        max_line = self.logs.max_line_bytes
        batch_bytes = self.logs.push_batch_bytes
        payloads: list[tuple[bytes, int]] = []
        streams: dict[Labels, list[Entry]] = {}
        # source labels -> their target's entries in this batch: one lookup per entry instead of two (the
        # normalized labels, then the target's bucket); several source streams may share a target
        slots: dict[Labels, list[Entry]] = {}
        size = 0
        overhead = _ENTRY_OVERHEAD
        dropped: dict[str, int] = {}
        long_example: tuple[Labels, int] | None = None
        for ts, labels, line, md in entries:  # time order, so each stream's entries stay in order
            bucket = slots.get(labels)
            if bucket is None:  # the stream's first entry in this batch, or a dropped stream
                target = self._streams.get(labels)
                if target is None:
                    target = self._normalize(labels)
                if type(target) is not tuple:
                    reason = DROP_RELABEL if target is _DROPPED else DROP_LABEL_LIMITS
                    dropped[reason] = dropped.get(reason, 0) + 1
                    continue
            n = len(line)
            if n * 4 > max_line and (n := len(line.encode("utf-8", "surrogatepass"))) > max_line:
                dropped[DROP_LINE_TOO_LONG] = dropped.get(DROP_LINE_TOO_LONG, 0) + 1
                long_example = long_example or (labels, n)
                continue
            entry_size = n + overhead
            if md:
                entry_size += sum(len(k) + len(v) + 4 for k, v in md)
            if size + entry_size > batch_bytes and streams:
                payloads.append(self._payload(streams))
                streams, size = {}, 0
                slots.clear()
                if bucket is not None:  # its target was looked up in an earlier batch: again
                    target = self._streams.get(labels) or self._normalize(labels)
                    bucket = None
            if bucket is None:
                assert type(target) is tuple
                bucket = streams.get(target)
                if bucket is None:
                    bucket = streams[target] = []
                    size += sum(len(k) + len(v) + 4 for k, v in target)
                slots[labels] = bucket
            bucket.append((ts, line, md))
            size += entry_size
        if streams:
            payloads.append(self._payload(streams))
        for reason, n in dropped.items():
            if reason == DROP_LINE_TOO_LONG and long_example is not None:
                detail = (
                    f"lines over logs.max_line_bytes ({max_line} bytes), e.g. {long_example[1]} bytes in "
                    f"stream {_show(long_example[0])}; the central Loki would reject them"
                )
                self.telemetry.dropped(self.name, self.signal, reason, n, detail=detail)
            else:  # relabel drops are on purpose; label-limit problems were logged once per stream
                self.telemetry.dropped(self.name, self.signal, reason, n, quiet=True)
        return payloads

    def _payload(self, streams: dict[Labels, list[Entry]]) -> tuple[bytes, int]:
        """A queue payload of a batch's streams, and how many entries it holds."""
        return encode_payload(streams.items(), self.encoding), sum(map(len, streams.values()))

    def _normalize(self, labels: Labels) -> object:
        """The normalized labels of a source stream (cached), _DROPPED, or a str naming the broken limit."""
        out = self.normalizer.apply(dict(labels))
        result: object
        if out is None:
            result = _DROPPED
        else:
            normalized: Labels = tuple(sorted((k, v) for k, v in out.items() if v != ""))
            problem = self._limit_problem(normalized)
            result = normalized if problem is None else problem
            if problem is not None and len(self._reported) < _MAX_REPORTED and labels not in self._reported:
                self._reported.add(labels)
                log.error(
                    "log stream breaks Loki's label limits: its entries are dropped, not truncated",
                    extra={"cluster": self.name, "stream": _show(normalized), "problem": problem},
                )
        if len(self._streams) >= _MAX_STREAM_CACHE:
            self._streams.clear()
        self._streams[labels] = result
        return result

    def _limit_problem(self, labels: Labels) -> str | None:
        """Loki's ValidateLabels: the label count (not counting service_name, as Loki) and lengths."""
        if not labels:
            return "no labels left (relabel_configs removed them all)"
        count = len(labels) - any(name == "service_name" for name, _ in labels)
        if count > self.logs.max_label_names:
            return (
                f"{count} label names, over the limit of {self.logs.max_label_names} (logs.max_label_names)"
            )
        for name, value in labels:
            if len(name) > self.logs.max_label_name_length:
                return (
                    f"label name {name[:64]!r}... is {len(name)} characters, over logs.max_label_name_length"
                )
            if len(value) > self.logs.max_label_value_length:
                return (
                    f"value of {name!r} is {len(value)} characters, over logs.max_label_value_length "
                    f"({self.logs.max_label_value_length})"
                )
        return None


def _show(labels: Labels) -> str:
    text = format_labels(labels)
    return text if len(text) <= 300 else text[:297] + "..."
