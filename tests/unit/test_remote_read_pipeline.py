"""RemoteReadPipeline with fake sources (one per replica) and a real DurableQueue and cursor: windows,
the cursor-after-append rule, the backfill limit, window halving, replica failover, record layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from observe.config import Config, parse_config
from observe.errors import QueueError, SourceError
from observe.model import STALE_NAN, Labels, is_stale_nan
from observe.pipeline.base import build_normalizer, open_queue
from observe.pipeline.remote_read import RemoteReadPipeline
from observe.protocol.remote_write import decode_write_request, decompress
from observe.queue.durable import DurableQueue
from observe.sources.prometheus_remote_read import ReadResult, RemoteReadUnsupported, WindowTooLarge
from observe.sources.read_cursor import ReadCursor
from observe.telemetry import Telemetry

NOW = 1_800_000_000.0  # seconds
SERIES: Labels = (("__name__", "up"), ("cluster", "theirs"), ("job", "a"), ("replica", "r1"))


class FakeSource:
    """One replica: answers each read from `points` (ts -> value) within the window, or raises."""

    def __init__(self, url: str, points: dict[int, float] | None = None) -> None:
        self.base_url = self.url = url
        self.points = points if points is not None else {}
        self.calls: list[tuple[int, int]] = []
        self.fail: list[Exception] = []  # raised first, one per call
        self.probes = 0
        self.up = True  # what alive() answers

    async def read(self, start_ms: int, end_ms: int) -> ReadResult:
        self.calls.append((start_ms, end_ms))
        if self.fail:
            raise self.fail.pop(0)
        got = [(v, ts) for ts, v in sorted(self.points.items()) if start_ms < ts <= end_ms]
        return ReadResult.of([(SERIES, got)] if got else [], "streamed_xor_chunks", 10 * len(got))

    async def alive(self) -> bool:
        self.probes += 1
        return self.up


def config(tmp: Path, **remote_read: Any) -> Config:
    # min_window 0s: every cycle reads, unless a test is about min_window (None: its default)
    rr = {"start_from": "60s", "safety_lag": "10s", "max_window": "20s", "min_window": "0s", **remote_read}
    return parse_config(
        {
            "interval": "5s",
            "data_dir": str(tmp),
            "remote_read": {k: v for k, v in rr.items() if v is not None},
            "central": {
                "remote_write": {"url": "http://127.0.0.1:1/api/v1/write", "max_samples_per_send": 4}
            },
            "clusters": [
                {"name": "alpha", "prometheus": {"url": "http://127.0.0.1:2", "replica_label": "replica"}}
            ],
        }
    )


class Rig:
    def __init__(self, tmp: Path, sources: list[FakeSource], **remote_read: Any) -> None:
        cfg = config(tmp, **remote_read)
        cluster = cfg.clusters[0]
        self.telemetry = Telemetry()
        self.queue: DurableQueue = open_queue(
            cfg, "alpha", "metrics", self.telemetry, max_age=3600, fsync="never"
        )
        self.cursor = ReadCursor(tmp / "read_cursors", "alpha", sync=False)
        self.now = NOW
        self.pipeline = RemoteReadPipeline(
            cfg, cluster, sources=sources, normalizer=build_normalizer(cfg, cluster, self.telemetry),  # type: ignore[arg-type]
            queue=self.queue, cursor=self.cursor, telemetry=self.telemetry, clock=lambda: self.now,
        )  # fmt: skip

    def groups(self) -> list[list[list[tuple[Labels, list[tuple[float, int]]]]]]:
        """The queue's records, decoded, grouped as the delivery would hand them out (acking them)."""
        out = []
        while records := self.queue.peek_group(1000):
            out.append([decode_write_request(decompress(r.payload)) for r in records])
            for r in records:
                self.queue.ack(r.seq)
        return out


def ms(seconds: float) -> int:
    return int(seconds * 1000)


async def test_a_first_start_reads_start_from_back_in_bounded_windows_and_saves_the_cursor(
    tmp_path: Path,
) -> None:
    points = {ms(NOW - 70) + i * 1000: float(i) for i in range(70)}  # one a second, 70s up to now
    src = FakeSource("http://r1", points)
    rig = Rig(tmp_path, [src])
    out = await rig.pipeline.cycle()
    head = ms(NOW - 10)
    assert out.ok and out.windows == 3  # (now-60s, now-10s] in windows of at most 20s
    assert src.calls == [(ms(NOW - 60), ms(NOW - 40)), (ms(NOW - 40), ms(NOW - 20)), (ms(NOW - 20), head)]
    assert rig.cursor.load() == head
    samples = [s for g in rig.groups() for r in g for _, ss in r for s in ss]
    assert [ts for _, ts in samples] == sorted(ts for ts in points if ms(NOW - 60) < ts <= head)
    # the replica label is gone, ours is stamped, theirs kept as exported_cluster
    rig2 = Rig(tmp_path / "b", [FakeSource("http://r1", points)])
    await rig2.pipeline.cycle()
    labels = {lb for g in rig2.groups() for r in g for lb, _ in r}
    assert labels == {
        (("__name__", "up"), ("cluster", "alpha"), ("exported_cluster", "theirs"), ("job", "a"))
    }


async def test_a_series_longer_than_a_record_is_split_across_groups_in_time_order(tmp_path: Path) -> None:
    points = {ms(NOW - 30) + i * 1000: float(i) for i in range(20)}
    rig = Rig(tmp_path, [FakeSource("http://r1", points)], max_window="30s")
    await rig.pipeline.cycle()
    groups = rig.groups()
    # max_samples_per_send is 4: each group holds the series once (so records of a group can go together)
    for group in groups:
        series = [lb for r in group for lb, _ in r]
        assert len(series) == len(set(series))
    flat = [ts for g in groups for r in g for _, ss in r for _, ts in ss]
    assert flat == sorted(flat) and len(flat) == 20


async def test_a_gap_longer_than_backfill_limit_is_cut_and_counted(tmp_path: Path) -> None:
    src = FakeSource("http://r1", {})
    rig = Rig(tmp_path, [src], backfill_limit="30s")
    rig.cursor.save(ms(NOW - 3600), selectors=[])
    await rig.pipeline.cycle()
    assert src.calls[0][0] == ms(NOW - 10 - 30)  # the oldest part of the gap is not read
    skipped = rig.telemetry.registry.get_sample_value(
        "observe_remote_read_skipped_seconds_total", {"cluster": "alpha"}
    )
    assert skipped == pytest.approx(3600 - 40)


async def test_a_window_refused_as_too_large_is_halved_and_read_again(tmp_path: Path) -> None:
    points = {ms(NOW - 25) + i * 1000: 1.0 for i in range(15)}
    src = FakeSource("http://r1", points)
    src.fail = [WindowTooLarge("sample limit", reason="too_large")]
    rig = Rig(tmp_path, [src], start_from="30s", max_window="20s")
    out = await rig.pipeline.cycle()
    assert out.ok
    assert src.calls[0] == (ms(NOW - 30), ms(NOW - 10))
    assert src.calls[1] == (ms(NOW - 30), ms(NOW - 20))  # the same start, half the window
    assert rig.cursor.load() == ms(NOW - 10)


async def test_replicas_are_tried_in_order_and_the_one_that_answered_is_kept(tmp_path: Path) -> None:
    points = {ms(NOW - 15): 1.0}
    a, b = FakeSource("http://a", points), FakeSource("http://b", points)
    a.fail = [SourceError("a is down", reason="unreachable")] * 5
    rig = Rig(tmp_path, [a, b], start_from="20s", max_window="20s")
    out = await rig.pipeline.cycle()
    assert out.ok and len(a.calls) == 1 and len(b.calls) == 1
    rig.now += 5
    await rig.pipeline.cycle()
    assert len(a.calls) == 1 and len(b.calls) == 2  # b answered last: asked first
    assert rig.pipeline.status()["url"] == "http://b"


async def test_a_steady_cycle_waits_until_the_window_spans_min_window(tmp_path: Path) -> None:
    points = {ms(NOW - 70) + i * 1000: float(i) for i in range(200)}  # one a second, on past the start
    src = FakeSource("http://r1", points)
    rig = Rig(tmp_path, [src], min_window="20s")  # interval 5s: a cycle reads once 17.5s are due
    assert (await rig.pipeline.cycle()).windows == 3  # the first cycle of a process always reads
    read_to = ms(NOW - 10)

    def lag() -> float | None:
        return rig.telemetry.registry.get_sample_value("observe_remote_read_lag_seconds", {"cluster": "alpha"})

    for step in range(1, 4):  # 5, 10, 15s of new data: not yet
        rig.now = NOW + 5 * step
        out = await rig.pipeline.cycle()
        assert out.ok and len(src.calls) == 3 and src.probes == step, step  # asked only whether it is up
        assert lag() == pytest.approx(10 + 5 * step)  # the lag is told as it grows, in /status too
        assert rig.pipeline.status()["lag_seconds"] == pytest.approx(10 + 5 * step)
    rig.now = NOW + 20
    out = await rig.pipeline.cycle()
    assert out.ok and src.calls[3:] == [(read_to, ms(NOW + 10))] and lag() == pytest.approx(10)
    # every sample arrived once, in order, whatever the cycles that waited
    stamps = [ts for g in rig.groups() for r in g for _, ss in r for _, ts in ss]
    assert stamps == sorted(ts for ts in points if ms(NOW - 60) < ts <= ms(NOW + 10))


async def test_after_a_failed_cycle_the_next_one_reads_whatever_min_window_says(tmp_path: Path) -> None:
    src = FakeSource("http://r1", {ms(NOW - 15): 1.0})
    rig = Rig(tmp_path, [src], min_window="20s")
    await rig.pipeline.cycle()
    src.fail = [SourceError("down", reason="unreachable")]
    rig.now = NOW + 20
    assert not (await rig.pipeline.cycle()).ok
    asked = len(src.calls)
    rig.now = NOW + 25  # 5s after the failure: read at once, not 20s after it
    out = await rig.pipeline.cycle()
    assert out.ok and out.windows >= 1 and len(src.calls) == asked + out.windows


async def test_a_source_found_down_between_reads_is_read_at_once_and_shown_down(tmp_path: Path) -> None:
    src = FakeSource("http://r1", {ms(NOW - 15): 1.0})
    rig = Rig(tmp_path, [src], min_window="20s")
    await rig.pipeline.cycle()
    asked = len(src.calls)
    src.up, src.fail = False, [SourceError("connection refused", reason="unreachable")]
    rig.now = NOW + 5
    out = await rig.pipeline.cycle()  # 5s due, but /-/ready failed: the read says what is wrong
    assert not out.ok and out.reason == "unreachable" and len(src.calls) == asked + 1
    up = rig.telemetry.registry.get_sample_value("observe_cluster_up", {"cluster": "alpha"})
    assert up == 0


async def test_min_window_is_at_most_half_the_backfill_limit(tmp_path: Path) -> None:
    src = FakeSource("http://r1", {})
    rig = Rig(tmp_path, [src], backfill_limit="30s", min_window=None)  # its 2m default: 15s applies
    await rig.pipeline.cycle()
    first = len(src.calls)
    rig.now = NOW + 10
    await rig.pipeline.cycle()
    assert len(src.calls) == first  # 10s due < 15s - interval / 2
    rig.now = NOW + 15
    await rig.pipeline.cycle()
    assert len(src.calls) == first + 1


async def test_every_replica_failing_fails_the_cycle_invents_no_stale_markers_and_keeps_the_cursor(
    tmp_path: Path,
) -> None:
    a, b = FakeSource("http://a"), FakeSource("http://b")
    a.fail = [SourceError("a: refused", reason="unreachable")]
    b.fail = [SourceError("b: timeout", reason="timeout")]
    rig = Rig(tmp_path, [a, b])
    rig.cursor.save(ms(NOW - 30), selectors=[])
    out = await rig.pipeline.cycle()
    assert not out.ok and "every replica failed" in (out.error or "") and out.reason == "timeout"
    assert rig.groups() == []  # nothing queued: no synthetic staleness
    assert rig.cursor.load() == ms(NOW - 30)
    up = rig.telemetry.registry.get_sample_value("observe_cluster_up", {"cluster": "alpha"})
    assert up == 0


async def test_a_queue_that_refuses_the_window_leaves_the_cursor_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, [FakeSource("http://r1", {ms(NOW - 15): 1.0})])
    rig.cursor.save(ms(NOW - 20), selectors=[])

    def full(*_: object, **__: object) -> None:
        raise QueueError("no space left on device")

    monkeypatch.setattr(rig.queue, "append_many", full)
    out = await rig.pipeline.cycle()
    assert not out.ok and out.reason == "queue"
    assert rig.cursor.load() == ms(NOW - 20)


async def test_a_series_with_malformed_labels_fails_the_window_and_queues_none_of_it(tmp_path: Path) -> None:
    src = FakeSource("http://r1", {ms(NOW - 15): 1.0})
    rig = Rig(tmp_path, [src])
    rig.cursor.save(ms(NOW - 20), selectors=[])
    good = ReadResult.of([(SERIES, [(1.0, ms(NOW - 15))])], "streamed_xor_chunks", 10)
    bad_labels = b"\x0a\x06\x0a\x04\x0a\x02\xc3\x28"  # a label name that is not UTF-8

    async def read(start_ms: int, end_ms: int) -> ReadResult:
        return dataclasses.replace(good, label_bytes=[*good.label_bytes, bad_labels], ends=[1, 1])

    src.read = read  # type: ignore[method-assign]
    out = await rig.pipeline.cycle()
    assert not out.ok and out.reason == "bad_response" and "not UTF-8" in (out.error or "")
    assert rig.cursor.load() == ms(NOW - 20) and rig.groups() == []  # the good series waits with it


async def test_staleness_markers_pass_through_bit_for_bit(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [FakeSource("http://r1", {ms(NOW - 15): 1.0, ms(NOW - 14): STALE_NAN})])
    out = await rig.pipeline.cycle()
    assert out.stale == 1
    values = [v for g in rig.groups() for r in g for _, ss in r for v, _ in ss]
    assert is_stale_nan(values[-1])


async def test_a_source_that_refuses_remote_read_fails_unless_auto(tmp_path: Path) -> None:
    src = FakeSource("http://r1")
    src.fail = [RemoteReadUnsupported("HTTP 405", reason="http_4xx")]
    rig = Rig(tmp_path, [src])
    out = await rig.pipeline.cycle()  # no fallback factory given: protocol remote_read
    assert not out.ok and "405" in (out.error or "")
    assert rig.pipeline.protocol == "remote_read"
