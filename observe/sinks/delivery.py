"""Delivery: drains a DurableQueue into any Sink, with the one retry policy every sink shares.

A sink only sends and classifies the reply (`RetryableError` / `PermanentError`); queueing, retry,
backoff and drop accounting live here, as the OpenTelemetry Collector layers its queue and retry
senders around an exporter
(https://github.com/open-telemetry/opentelemetry-collector/tree/main/exporter/exporterhelper).
The policy follows the remote-write spec's "Retries & Backoff"
(https://prometheus.io/docs/specs/remote_write_spec/#retries--backoff): retry 5xx and 429 with
capped exponential backoff, `Retry-After` as a floor, never retry other 4xx. The backoff is capped
exponential with "full jitter" (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)
so many clusters' queues do not retry in lockstep after the centre comes back.

Ordering: records of one group (one pull cycle: at most one sample per series) go out concurrently,
up to `max_in_flight`; the queue hands out the next group only when the current one is fully acked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final

from observe.errors import PermanentError, RetryableError, SinkError
from observe.queue.durable import DurableQueue, Record
from observe.reasons import DROP_PERMANENT_ERROR, DROP_TOO_OLD, FAIL_INTERNAL
from observe.sinks import Sink
from observe.telemetry import Telemetry

# A receiver asking for more than 10 minutes is misconfigured; max_age bounds the wait anyway.
MAX_RETRY_AFTER: Final = 600.0
# When idle, look at the queue at least this often: expires old records, refreshes the queue gauges
# and persists the cursor even when nothing new arrives.
IDLE_TICK: Final = 1.0
# Distinct error messages remembered for log-once; a receiver varying its message per request would
# otherwise grow this set forever.
_MAX_LOGGED_KEYS: Final = 1000

log = logging.getLogger("observe.delivery")


class Delivery:
    """Drain one queue into one sink: `run()` for the service's life, then `drain()` at shutdown."""

    def __init__(
        self,
        queue: DurableQueue,
        sink: Sink,
        *,
        cluster: str,
        signal: str,
        telemetry: Telemetry,
        max_in_flight: int = 4,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_age: float,
        on_sent: Callable[[Record], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1 or min_backoff <= 0 or max_backoff < min_backoff:
            raise ValueError(
                f"delivery {cluster}/{signal}: need max_in_flight >= 1 and 0 < min_backoff <= max_backoff, "
                f"got {max_in_flight}, {min_backoff}, {max_backoff}"
            )
        self.queue = queue
        self.sink = sink
        self.cluster = cluster
        self.signal = signal
        self.telemetry = telemetry
        self.max_in_flight = max_in_flight
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.max_age = max_age
        self._on_sent = on_sent
        self._sleep = sleep
        self._clock = clock  # unix time, compared with Record.created
        self._monotonic = monotonic  # for drain deadlines
        self._rng = random.Random()
        self._logged: set[tuple[object, ...]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set. Then sends in progress finish; records waiting to retry are released."""
        await self._pump(stop, deadline=None)

    async def drain(self, deadline: float) -> bool:
        """Send everything queued until `deadline` (monotonic), then cancel and release what is still out.

        Call after `run()` returned. True if the queue is empty.
        """
        await self._pump(asyncio.Event(), deadline=deadline)
        return self.queue.stats().records == 0

    # -- the loop ---------------------------------------------------------------------------------
    async def _pump(self, stop: asyncio.Event, deadline: float | None) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                if deadline is not None and self._monotonic() >= deadline:
                    return  # the finally cancels what is still out; each task releases its record
                if not stop.is_set():
                    self._fill(tasks, stop, deadline)
                if not tasks:
                    self.update_gauges()
                    if stop.is_set() or (deadline is not None and self.queue.stats().records == 0):
                        return
                    await self._idle(stop, deadline)
                    continue
                timeout = None if deadline is None else max(0.0, deadline - self._monotonic())
                done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                tasks -= done
                for task in done:
                    task.result()  # _deliver handles every sink error; a QueueError (disk) ends the loop
                self.update_gauges()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.update_gauges()

    def _fill(self, tasks: set[asyncio.Task[None]], stop: asyncio.Event, deadline: float | None) -> None:
        while len(tasks) < self.max_in_flight:
            records = self.queue.peek_group(self.max_in_flight - len(tasks))
            if not records:
                return
            for record in records:
                tasks.add(asyncio.create_task(self._deliver(record, stop, deadline)))

    async def _idle(self, stop: asyncio.Event, deadline: float | None) -> None:
        """Wait for an append, `stop`, or the idle tick (capped at the deadline)."""
        tick = IDLE_TICK if deadline is None else max(0.0, min(IDLE_TICK, deadline - self._monotonic()))
        appended = asyncio.ensure_future(self.queue.wait(tick))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({appended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (appended, stopped):
                waiter.cancel()
            await asyncio.gather(appended, stopped, return_exceptions=True)

    # -- one record -------------------------------------------------------------------------------
    async def _deliver(self, record: Record, stop: asyncio.Event, deadline: float | None) -> None:
        """Send one record until it is acked or dropped; release it on stop, deadline or cancellation."""
        attempt = 0
        try:
            while True:
                if stop.is_set() or (deadline is not None and self._monotonic() >= deadline):
                    self.queue.release(record.seq)
                    return
                if self._clock() - record.created > self.max_age:
                    self._drop_too_old(record)
                    return
                retry_after = await self._attempt(record)
                if retry_after is None:
                    return
                delay = self._backoff(attempt, retry_after)
                attempt += 1
                await self._pause(delay, stop, deadline)
        except asyncio.CancelledError:
            self.queue.release(record.seq)  # a no-op once acked
            raise

    async def _attempt(self, record: Record) -> float | None:
        """One send. None when the record is done (acked); else the Retry-After floor (0 if none)."""
        sink = self.sink.name
        start = time.perf_counter()
        try:
            await self.sink.send(record.payload)
        except PermanentError as err:
            self.telemetry.send_attempted(sink, time.perf_counter() - start)
            self.queue.ack(record.seq)
            self._drop_permanent(record, err)
            return None
        except SinkError as err:  # RetryableError, or a SinkError without a decision: retry is the safe side
            self.telemetry.send_attempted(sink, time.perf_counter() - start)
            self.telemetry.send_failed(sink, err.reason)
            retry_after = err.retry_after if isinstance(err, RetryableError) else None
            return 0.0 if retry_after is None else retry_after
        except Exception as err:  # a bug in the sink: never end the loop over it, retry like a 5xx
            self.telemetry.send_attempted(sink, time.perf_counter() - start)
            self.telemetry.send_failed(sink, FAIL_INTERNAL)
            if self._first_time(("internal", type(err).__name__, str(err)[:100])):
                log.exception(
                    "sink raised an unexpected error (a bug); retrying",
                    extra={"cluster": self.cluster, "signal": self.signal, "sink": sink},
                )
            return 0.0
        self.telemetry.send_attempted(sink, time.perf_counter() - start)
        self.queue.ack(record.seq)
        self.telemetry.send_succeeded(sink)
        if self._on_sent is not None:  # what a record holds (samples, log entries) is its pipeline's to count
            try:
                self._on_sent(record)
            except Exception:  # the caller's bug: the record is delivered and acked, keep going
                log.exception(
                    "on_sent callback failed", extra={"cluster": self.cluster, "signal": self.signal}
                )
        return None

    def _backoff(self, attempt: int, retry_after: float) -> float:
        """Full jitter over min_backoff * 2^attempt, capped at max_backoff; never below Retry-After."""
        ceiling = min(self.max_backoff, self.min_backoff * 2.0 ** min(attempt, 60))
        return max(self._rng.uniform(0.0, ceiling), min(retry_after, MAX_RETRY_AFTER))

    async def _pause(self, delay: float, stop: asyncio.Event, deadline: float | None) -> None:
        """Sleep `delay` (cut short by `stop`, capped at the deadline) with the injected sleep."""
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - self._monotonic()))
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeper, stopped):
                waiter.cancel()
            await asyncio.gather(sleeper, stopped, return_exceptions=True)

    # -- drops ------------------------------------------------------------------------------------
    def _drop_permanent(self, record: Record, err: PermanentError) -> None:
        message = str(err)[:100]
        if self._first_time(("permanent", err.status, message)):
            log.warning(
                "receiver rejected a record permanently; dropping it (logged once per distinct reply)",
                extra={
                    "cluster": self.cluster,
                    "signal": self.signal,
                    "sink": self.sink.name,
                    "status": err.status,
                    "error": message,
                },
            )
        self.telemetry.dropped(self.cluster, self.signal, DROP_PERMANENT_ERROR, record.count, quiet=True)

    def _drop_too_old(self, record: Record) -> None:
        self.queue.ack(record.seq)
        first = self._first_time(("too_old",))
        self.telemetry.dropped(
            self.cluster,
            self.signal,
            DROP_TOO_OLD,
            record.count,
            detail=f"older than max_age={self.max_age:g}s while retrying (logged once)",
            quiet=not first,
        )

    def _first_time(self, key: tuple[object, ...]) -> bool:
        if key in self._logged:
            return False
        if len(self._logged) >= _MAX_LOGGED_KEYS:
            self._logged.clear()
        self._logged.add(key)
        return True

    def update_gauges(self) -> None:
        """Set the queue gauges from the queue's live state (also called at scrape time)."""
        stats = self.queue.stats()
        age = 0.0 if stats.oldest_created is None else max(0.0, self._clock() - stats.oldest_created)
        self.telemetry.queue_state(
            self.cluster, self.signal, bytes_=stats.bytes, records=stats.records, oldest_age=age,
            max_bytes=self.queue.max_bytes,
        )  # fmt: skip
