"""Delivery (queue -> any Sink) against the in-test RecordingSink fake, with injected sleep and clock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from observe.errors import PermanentError, RetryableError
from observe.queue.durable import DurableQueue, Record
from observe.reasons import (
    DROP_PERMANENT_ERROR,
    DROP_TOO_OLD,
    FAIL_HTTP_5XX,
    FAIL_INTERNAL,
    FAIL_THROTTLED,
)
from observe.sinks.delivery import Delivery
from observe.telemetry import Telemetry
from tests.fakes import RecordingSink

MAX_BYTES = 16 * 2**20


class FakeTime:
    """Unix clock and monotonic clock that only move when Delivery sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = time.time()
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        self.mono += delay
        await asyncio.sleep(0)


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    q = DurableQueue(tmp_path / "q", max_bytes=MAX_BYTES, segment_bytes=2**20, max_age=3600.0)
    yield q
    q.close()


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def make(queue: DurableQueue, sink: RecordingSink, ft: FakeTime, **kw: Any) -> tuple[Delivery, Telemetry]:
    telemetry = Telemetry()
    options: dict[str, Any] = {
        "cluster": "c1",
        "signal": "metrics",
        "telemetry": telemetry,
        "max_age": 3600.0,
        "sleep": ft.sleep,
        "clock": ft.clock,
        "monotonic": ft.monotonic,
    }
    options.update(kw)
    return Delivery(queue, sink, **options), telemetry


async def run_until(delivery: Delivery, done: Callable[[], bool], limit: float = 5.0) -> None:
    """Run the delivery loop until `done()`, then stop it and wait for it to return."""
    stop = asyncio.Event()
    task = asyncio.create_task(delivery.run(stop))
    try:
        async with asyncio.timeout(limit):
            while not done():
                assert not task.done(), "the delivery loop ended on its own"
                await asyncio.sleep(0.001)
    finally:
        stop.set()
        async with asyncio.timeout(limit):
            await task


def value(t: Telemetry, name: str, **labels: str) -> float:
    got = t.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def fill(
    queue: DurableQueue, groups: int, per_group: int, count: int = 1, created: float | None = None
) -> list[bytes]:
    payloads = []
    for g in range(1, groups + 1):
        batch = [(b"g%d-r%d" % (g, i), count) for i in range(per_group)]
        queue.append_many(batch, group=g, created=created)
        payloads += [p for p, _ in batch]
    return payloads


async def test_retryable_failures_then_success_deliver_every_record_once_in_order(
    queue: DurableQueue, ft: FakeTime
) -> None:
    payloads = fill(queue, groups=3, per_group=2, count=5, created=ft.now)
    sink = RecordingSink(fail_times=3)
    sent: list[Record] = []
    delivery, t = make(queue, sink, ft, max_in_flight=1, on_sent=sent.append)
    await run_until(delivery, lambda: len(sink.sent) == 6)
    assert sink.sent == payloads
    assert [r.payload for r in sent] == payloads
    assert queue.stats().records == 0
    assert len(ft.sleeps) == 3
    assert value(t, "observe_send_failures_total", sink="recording", reason=FAIL_HTTP_5XX) == 3
    assert value(t, "observe_send_requests_total", sink="recording") == 6
    # What a record holds is its pipeline's to count (observe_samples_sent_total: tests/unit/test_service.py):
    # the delivery hands each acknowledged record, with its count, to on_sent exactly once.
    assert sum(r.count for r in sent) == 30
    assert value(t, "observe_send_duration_seconds_count", sink="recording") == 9
    assert value(t, "observe_queue_records", cluster="c1", signal="metrics") == 0
    assert value(t, "observe_queue_max_bytes", cluster="c1", signal="metrics") == MAX_BYTES


async def test_logs_signal_does_not_count_samples_sent(queue: DurableQueue, ft: FakeTime) -> None:
    fill(queue, groups=1, per_group=2, count=5, created=ft.now)
    sink = RecordingSink()
    delivery, t = make(queue, sink, ft, signal="logs")
    await run_until(delivery, lambda: len(sink.sent) == 2)
    assert value(t, "observe_send_requests_total", sink="recording") == 2
    assert value(t, "observe_samples_sent_total", cluster="c1", sink="recording") == 0


async def test_retry_after_is_a_floor_and_capped_at_ten_minutes(queue: DurableQueue, ft: FakeTime) -> None:
    fill(queue, groups=1, per_group=1, created=ft.now)
    errors = iter([7.0, 7.0, 3600.0])

    def throttle(payload: bytes, attempt: int) -> BaseException | None:
        after = next(errors, None)
        return (
            None
            if after is None
            else RetryableError("429", reason=FAIL_THROTTLED, status=429, retry_after=after)
        )

    sink = RecordingSink(fail=throttle)
    delivery, t = make(queue, sink, ft, min_backoff=0.5, max_backoff=30.0)
    await run_until(delivery, lambda: len(sink.sent) == 1)
    assert ft.sleeps == [7.0, 7.0, 600.0]  # jitter is at most 0.5, then 1.0, 2.0: below the floor
    assert value(t, "observe_send_failures_total", sink="recording", reason=FAIL_THROTTLED) == 3


async def test_backoff_grows_exponentially_and_is_capped(queue: DurableQueue, ft: FakeTime) -> None:
    fill(queue, groups=1, per_group=1, created=ft.now)
    sink = RecordingSink(fail_times=20)
    delivery, _ = make(queue, sink, ft, min_backoff=0.5, max_backoff=2.0)
    await run_until(delivery, lambda: len(sink.sent) == 1)
    assert len(ft.sleeps) == 20
    assert ft.sleeps[0] <= 0.5 and ft.sleeps[1] <= 1.0  # full jitter under 0.5 * 2^n
    assert all(0.0 <= s <= 2.0 for s in ft.sleeps)
    assert max(ft.sleeps[2:]) > 1.0  # the ceiling did reach the cap (p of failing: 2^-18)


async def test_permanent_errors_are_dropped_counted_and_logged_once_per_distinct_reply(
    queue: DurableQueue, ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    fill(queue, groups=2, per_group=5, count=4, created=ft.now)

    def reject(payload: bytes, attempt: int) -> BaseException:
        if payload.startswith(b"g1"):
            return PermanentError(
                "out of order sample for series {a=1} " + "x" * 200 + str(attempt), status=400
            )
        return PermanentError("label name too long", status=400)

    sink = RecordingSink(fail=reject)
    delivery, t = make(queue, sink, ft)
    with caplog.at_level(logging.INFO):
        await run_until(delivery, lambda: queue.stats().records == 0)
    assert sink.sent == []
    assert len(sink.attempts) == 10  # never retried
    assert ft.sleeps == []
    assert (
        value(t, "observe_dropped_samples_total", cluster="c1", signal="metrics", reason=DROP_PERMANENT_ERROR)
        == 40
    )
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    # The first 100 characters make the key: the attempt number at the end does not make a new line.
    assert len(rejected) == 2
    assert [r.getMessage() for r in caplog.records if r.getMessage() == "data dropped"] == []


async def test_a_record_that_ages_past_max_age_while_retrying_is_dropped_as_too_old(
    queue: DurableQueue, ft: FakeTime
) -> None:
    created = ft.now
    fill(queue, groups=1, per_group=2, count=3, created=created)
    sink = RecordingSink(fail_times=10**6)
    delivery, t = make(queue, sink, ft, max_age=60.0, min_backoff=1.0, max_backoff=10.0)
    await run_until(delivery, lambda: queue.stats().records == 0)
    assert sink.sent == []
    assert len(sink.attempts) > 2
    assert ft.now - created > 60.0
    assert value(t, "observe_dropped_samples_total", cluster="c1", signal="metrics", reason=DROP_TOO_OLD) == 6


async def test_drain_sends_everything_before_the_deadline(queue: DurableQueue, ft: FakeTime) -> None:
    payloads = fill(queue, groups=3, per_group=3, created=ft.now)
    sink = RecordingSink(fail_times=2)
    delivery, _ = make(queue, sink, ft)
    assert await delivery.drain(ft.mono + 60.0) is True
    assert sorted(sink.sent) == sorted(payloads)


async def test_drain_gives_up_at_the_deadline_and_keeps_the_records(
    queue: DurableQueue, ft: FakeTime
) -> None:
    fill(queue, groups=1, per_group=3, created=ft.now)
    sink = RecordingSink(fail_times=10**6)
    delivery, _ = make(queue, sink, ft, min_backoff=1.0, max_backoff=4.0)
    async with asyncio.timeout(5):
        assert await delivery.drain(ft.mono + 30.0) is False
    assert ft.mono >= 1030.0
    assert queue.stats().records == 3
    assert len(queue.peek_group(10)) == 3  # released, not lost: the next start sends them


async def test_drain_deadline_cancels_a_send_in_progress_and_releases_it(queue: DurableQueue) -> None:
    fill(queue, groups=1, per_group=1)
    sink = RecordingSink(delay=30.0)  # a receiver that hangs: only the deadline ends this
    delivery = Delivery(queue, sink, cluster="c1", signal="metrics", telemetry=Telemetry(), max_age=3600.0)
    started = time.monotonic()
    assert await delivery.drain(time.monotonic() + 0.1) is False
    assert time.monotonic() - started < 2.0
    assert len(queue.peek_group(10)) == 1


async def test_a_sink_raising_an_unexpected_error_does_not_end_the_loop(
    queue: DurableQueue, ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    payloads = fill(queue, groups=2, per_group=2, created=ft.now)
    sink = RecordingSink(fail=lambda payload, attempt: RuntimeError("bug in sink") if attempt <= 3 else None)
    delivery, t = make(queue, sink, ft)
    with caplog.at_level(logging.ERROR, logger="observe.delivery"):
        await run_until(delivery, lambda: len(sink.sent) == 4)
    assert sorted(sink.sent) == sorted(payloads)
    assert value(t, "observe_send_failures_total", sink="recording", reason=FAIL_INTERNAL) == 3
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1  # with its traceback, once for the same error


async def test_groups_never_interleave(queue: DurableQueue, ft: FakeTime) -> None:
    fill(queue, groups=3, per_group=6, created=ft.now)
    # One record of each group fails twice: the rest of its group finishes first, the next group waits.
    slow = {b"g1-r2", b"g2-r5", b"g3-r0"}
    failures: dict[bytes, int] = {}

    def flaky(payload: bytes, attempt: int) -> BaseException | None:
        if payload in slow and failures.get(payload, 0) < 2:
            failures[payload] = failures.get(payload, 0) + 1
            return RetryableError("503", reason=FAIL_HTTP_5XX, status=503)
        return None

    sink = RecordingSink(fail=flaky, delay=0.001)
    delivery, _ = make(queue, sink, ft, max_in_flight=4)
    await run_until(delivery, lambda: len(sink.sent) == 18)
    for g in (1, 2):
        last_end = max(
            i for i, (kind, p) in enumerate(sink.events) if kind == "end" and p.startswith(b"g%d" % g)
        )
        first_start = min(i for i, (kind, p) in enumerate(sink.events) if p.startswith(b"g%d" % (g + 1)))
        assert last_end < first_start, f"group {g + 1} started before group {g} was done"
    assert sink.max_in_flight > 1  # a group's records did go out concurrently


async def test_max_in_flight_is_respected(queue: DurableQueue, ft: FakeTime) -> None:
    fill(queue, groups=1, per_group=10, created=ft.now)
    sink = RecordingSink(delay=0.005)
    delivery, _ = make(queue, sink, ft, max_in_flight=3)
    await run_until(delivery, lambda: len(sink.sent) == 10)
    assert sink.max_in_flight == 3


async def test_stop_releases_records_waiting_to_retry(queue: DurableQueue) -> None:
    fill(queue, groups=1, per_group=2)
    sink = RecordingSink(fail_times=10**6)
    asleep = asyncio.Event()

    async def long_sleep(delay: float) -> None:
        asleep.set()
        await asyncio.Event().wait()  # only stop ends it

    delivery = Delivery(
        queue, sink, cluster="c1", signal="metrics", telemetry=Telemetry(), max_age=3600.0, sleep=long_sleep
    )
    stop = asyncio.Event()
    task = asyncio.create_task(delivery.run(stop))
    async with asyncio.timeout(5):
        await asleep.wait()
        stop.set()
        await task
    assert queue.stats().records == 2
    assert len(queue.peek_group(10)) == 2  # handed back, not stuck as "in flight"


async def test_run_picks_up_records_appended_while_idle(queue: DurableQueue, ft: FakeTime) -> None:
    sink = RecordingSink()
    delivery, t = make(queue, sink, ft)

    async def append_later() -> None:
        await asyncio.sleep(0.01)  # the loop is idle in queue.wait() by now
        assert sink.attempts == []
        queue.append_many([(b"late", 2)], group=1)

    appender = asyncio.create_task(append_later())
    await run_until(delivery, lambda: len(sink.sent) == 1)
    await appender
    assert sink.sent == [b"late"]
    assert value(t, "observe_queue_oldest_record_age_seconds", cluster="c1", signal="metrics") == 0
