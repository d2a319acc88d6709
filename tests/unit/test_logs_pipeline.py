"""LogsPipeline against the fake Loki (tests/loki_api_fake.py) with a real DurableQueue and cursor store:
stamping, Loki's limits, the cursor-after-append rule, a crash between the two, back-pressure."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from observe.config import Config, parse_config
from observe.errors import QueueError
from observe.http import new_session
from observe.pipeline.logs import LogsPipeline
from observe.protocol.loki_push import decode_payload
from observe.queue.durable import DurableQueue
from observe.sources.log_cursors import CursorStore
from observe.sources.loki import LokiSource
from observe.telemetry import Telemetry
from observe.transform.normalize import Normalizer
from observe.transform.relabel import Relabeler
from tests.loki_api_fake import FakeLoki

NS = 1_000_000_000
T0 = (int(time.time()) - 1800) * NS


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    fake = await FakeLoki().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    cfg = parse_config(
        {"clusters": [{"name": "x", "loki": {"url": "http://127.0.0.1:1", "selectors": ['{a="b"}']}}]}
    )
    assert cfg.clusters[0].loki is not None
    s = new_session(cfg.clusters[0].loki)
    yield s
    await s.close()


def _config(tmp_path: Path, loki: FakeLoki, **over: Any) -> Config:
    doc: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "interval": "10s",
        "clusters": [{
            "name": "alpha",
            "labels": {"region": "eu-west-1"},
            "loki": {"url": loki.url, "selectors": over.pop("selectors", ['{job="app"}']), "timeout": "5s"},
        }],
        "logs": {"start_from": "1h", "safety_lag": "1s", **over.pop("logs", {})},
    }  # fmt: skip
    doc.update(over)
    return parse_config(doc)


class Rig:
    """One cluster's pipeline, rebuilt from disk like a restarted collector would."""

    def __init__(self, cfg: Config, session: aiohttp.ClientSession, *, queue_bytes: int = 64 * 2**20) -> None:
        cluster = cfg.clusters[0]
        assert cluster.loki is not None
        self.telemetry = Telemetry()
        self.queue = DurableQueue(
            cfg.data_dir / "queue" / "alpha" / "logs", max_bytes=queue_bytes, segment_bytes=64 * 1024,
            max_age=86400, fsync="always",
        )  # fmt: skip
        self.cursors = CursorStore(cfg.data_dir / "log_cursors", "alpha")
        normalizer = Normalizer(
            cluster_label=cfg.cluster_label, cluster="alpha", static_labels=cluster.labels,
            relabeler=Relabeler(cfg.relabel_configs) if cfg.relabel_configs else None,
        )  # fmt: skip
        source = LokiSource("alpha", cluster.loki, session, page_limit=cfg.logs.page_limit)
        self.pipeline = LogsPipeline(
            cfg, cluster, source=source, normalizer=normalizer, queue=self.queue, cursors=self.cursors,
            telemetry=self.telemetry,
        )  # fmt: skip

    def queued(self) -> list[tuple[int, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...]]]:
        """Every entry in the queue (acking as it reads), in queue order."""
        out = []
        while records := self.queue.peek_group(1000):
            for r in records:
                out.extend(
                    (ts, labels, line, md) for labels, es in decode_payload(r.payload) for ts, line, md in es
                )
                self.queue.ack(r.seq)
        return out

    def metric(self, name: str, **labels: str) -> float:
        return self.telemetry.registry.get_sample_value(name, labels) or 0.0

    def close(self) -> None:
        self.queue.close()


def _stamped(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**labels, "cluster": "alpha", "region": "eu-west-1"}.items()))


async def test_pipeline_stamps_queues_and_advances_cursor_with_fake_loki(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add(
        {"job": "app", "pod": "p1"}, [(T0 + i, f"line {i}", {"detected_level": "info"}) for i in range(30)]
    )
    loki.add({"job": "app", "pod": "p2", "cluster": "theirs"}, [(T0 + 5, "collides")])
    rig = Rig(_config(tmp_path, loki, logs={"page_limit": 7}), session)
    result = await rig.pipeline.cycle()
    assert result.ok and result.entries == 31 and result.pages >= 5
    got = rig.queued()
    assert sorted(got) == sorted(
        [
            (T0 + i, _stamped({"job": "app", "pod": "p1"}), f"line {i}", (("detected_level", "info"),))
            for i in range(30)
        ]
        + [(T0 + 5, _stamped({"job": "app", "pod": "p2", "exported_cluster": "theirs"}), "collides", ())]
    )
    cursor = rig.cursors.load('{job="app"}')
    assert cursor is not None and cursor.start_ns > T0 + 30
    assert rig.metric("observe_log_entries_pulled_total", cluster="alpha") == 31
    assert 0 < rig.metric("observe_log_lag_seconds", cluster="alpha") < 5
    # Nothing new: the next cycle queues nothing.
    assert (await rig.pipeline.cycle()).entries == 0 and rig.queued() == []
    rig.close()


async def test_cursor_does_not_move_when_the_append_fails(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    loki.add({"job": "app"}, [(T0 + i, f"l{i}") for i in range(20)])
    cfg = _config(tmp_path, loki, logs={"page_limit": 5})
    rig = Rig(cfg, session)
    real = rig.queue.append_many
    calls = 0

    def flaky(items: Any, *, group: int, created: float | None = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise QueueError("queue test: disk full")
        real(items, group=group, created=created)

    monkeypatch.setattr(rig.queue, "append_many", flaky)
    result = await rig.pipeline.cycle()
    assert not result.ok and result.reason == "queue" and "disk full" in (result.error or "")
    saved = rig.cursors.load('{job="app"}')
    assert saved is not None and saved.start_ns == T0 + 4  # after page 1 only: entries T0..T0+4
    assert (await rig.pipeline.cycle()).ok
    assert sorted(e[2] for e in rig.queued()) == sorted(f"l{i}" for i in range(20))  # each once
    rig.close()


async def test_crash_between_append_and_cursor_save_replays_byte_identical_payloads(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    loki.add({"job": "app"}, [(T0 + i, f"l{i}") for i in range(20)])
    cfg = _config(tmp_path, loki, logs={"page_limit": 5})
    rig = Rig(cfg, session)
    real_save = rig.cursors.save
    saves = 0

    def crash_on_second(selector: str, cursor: Any) -> None:
        nonlocal saves
        saves += 1
        if saves == 2:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after the append runs
        real_save(selector, cursor)

    monkeypatch.setattr(rig.cursors, "save", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        await rig.pipeline.cycle()
    first_run = [r.payload for r in rig.queue.peek_group(100)]
    rig.close()

    again = Rig(cfg, session)  # a new process: everything from disk
    assert (await again.pipeline.cycle()).ok
    payloads = []
    while records := again.queue.peek_group(100):
        payloads += [r.payload for r in records]
        for r in records:
            again.queue.ack(r.seq)
    assert payloads[: len(first_run)] == first_run
    assert payloads[1] == payloads[2]  # page 2, queued before the crash and again after: byte-identical
    # ...which Loki drops as identical entries: pushed to a central fake, each entry is stored once.
    central = await FakeLoki().start()
    try:
        from observe.config import LokiPushConfig
        from observe.sinks.loki_push import LokiPushSink

        sink = LokiPushSink(LokiPushConfig(url=central.push_url), session)
        for p in payloads:
            await sink.send(p)
        assert [e[2] for e in central.entries()] == [f"l{i}" for i in range(20)]
    finally:
        await central.stop()
        again.close()


async def test_streams_over_lokis_label_limits_are_reported_and_dropped_not_truncated(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    wide = {"job": "app", **{f"l{i:02}": "v" for i in range(12)}}  # 13 + cluster + region = 15: fine
    wider = {**wide, "extra": "v"}  # 16: over
    loki.add(wide, [(T0, "fits")])
    loki.add({**wide, "service_name": "svc"}, [(T0, "fits too: service_name is not counted")])
    loki.add(wider, [(T0, "too many labels"), (T0 + 1, "too many labels 2")])
    loki.add({"job": "app", "big": "v" * 3000}, [(T0, "value too long")])
    rig = Rig(_config(tmp_path, loki), session)
    assert (await rig.pipeline.cycle()).ok
    assert sorted(e[2] for e in rig.queued()) == ["fits", "fits too: service_name is not counted"]
    assert (
        rig.metric("observe_dropped_samples_total", cluster="alpha", signal="logs", reason="label_limits")
        == 3
    )
    problems = [r.problem for r in caplog.records if "breaks Loki's label limits" in r.getMessage()]
    assert len(problems) == 2  # once per stream, not per entry
    assert "16 label names, over the limit of 15 (logs.max_label_names)" in problems
    assert any("over logs.max_label_value_length (2048)" in p for p in problems)
    rig.close()


async def test_lines_over_max_line_bytes_are_counted_and_named(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    loki.add({"job": "app"}, [(T0, "ok"), (T0 + 1, "é" * 600), (T0 + 2, "x" * 1025)])
    rig = Rig(_config(tmp_path, loki, logs={"max_line_bytes": 1024}), session)
    assert (await rig.pipeline.cycle()).ok
    assert [e[2] for e in rig.queued()] == ["ok"]  # 600 x 'é' is 1,200 bytes of UTF-8
    assert (
        rig.metric("observe_dropped_samples_total", cluster="alpha", signal="logs", reason="line_too_long")
        == 2
    )
    details = [r.detail for r in caplog.records if r.getMessage() == "data dropped"]
    assert len(details) == 1 and "lines over logs.max_line_bytes (1024 bytes), e.g. 1200 bytes" in details[0]
    rig.close()


async def test_relabel_configs_apply_to_stream_labels(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "app", "ns": "kube-system"}, [(T0, "dropped by rule")])
    loki.add({"job": "app", "ns": "shop"}, [(T0, "kept")])
    relabel = [
        {"source_labels": ["ns"], "regex": "kube-.*", "action": "drop"},
        {"source_labels": ["ns"], "target_label": "namespace"},
        {"regex": "ns", "action": "labeldrop"},
    ]
    rig = Rig(_config(tmp_path, loki, relabel_configs=relabel), session)
    assert (await rig.pipeline.cycle()).ok
    assert [(e[1], e[2]) for e in rig.queued()] == [(_stamped({"job": "app", "namespace": "shop"}), "kept")]
    assert rig.metric("observe_dropped_samples_total", cluster="alpha", signal="logs", reason="relabel") == 1
    rig.close()


async def test_a_bad_selector_does_not_stop_the_good_one(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "app"}, [(T0, "good")])
    rig = Rig(_config(tmp_path, loki, selectors=['{job=~".*"}', '{job="app"}']), session)
    result = await rig.pipeline.cycle()
    assert not result.ok and list(result.bad_selectors) == ['{job=~".*"}']
    assert "rejected by Loki (HTTP 400)" in result.bad_selectors['{job=~".*"}']
    assert [e[2] for e in rig.queued()] == ["good"]
    assert (
        rig.metric("observe_pull_failures_total", cluster="alpha", source="loki", reason="bad_selector") == 1
    )
    rig.close()


async def test_a_throttled_loki_stops_the_cycle_and_keeps_the_cursor(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "app"}, [(T0, "later")])
    loki.query_429_next = 1
    rig = Rig(_config(tmp_path, loki), session)
    result = await rig.pipeline.cycle()
    assert result.reason == "throttled" and rig.cursors.load('{job="app"}') is None
    assert rig.metric("observe_log_throttled_total", cluster="alpha", endpoint="query") == 1
    assert (await rig.pipeline.cycle()).ok and [e[2] for e in rig.queued()] == ["later"]
    rig.close()


async def test_back_pressure_pauses_pulling_while_the_queue_is_half_full(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    lines = [
        f"{i:04} " + hashlib.sha256(str(i).encode()).hexdigest() * 4 for i in range(2000)
    ]  # incompressible
    loki.add({"job": "app"}, [(T0 + i, line) for i, line in enumerate(lines)])
    rig = Rig(_config(tmp_path, loki, logs={"page_limit": 100}), session, queue_bytes=256 * 1024)
    first = await rig.pipeline.cycle()
    assert first.backpressure and 0 < first.entries < 2000
    held = rig.queue.stats().bytes
    assert (await rig.pipeline.cycle()).entries == 0  # nothing pulled while the centre is behind
    assert rig.queue.stats().bytes == held
    got = rig.queued()  # the centre catches up...
    while (await rig.pipeline.cycle()).entries:  # ...and pulling resumes until the source is read
        got += rig.queued()
    assert sorted(e[2] for e in got) == lines
    assert (
        rig.metric("observe_dropped_samples_total", cluster="alpha", signal="logs", reason="queue_full") == 0
    )
    rig.close()


async def test_payloads_are_batched_by_bytes_with_each_stream_in_time_order(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    for pod in ("a", "b"):
        loki.add({"job": "app", "pod": pod}, [(T0 + i, f"{pod}{i} " + "y" * 100) for i in range(200)])
    rig = Rig(_config(tmp_path, loki, logs={"push_batch_bytes": 4096}), session)
    assert (await rig.pipeline.cycle()).ok
    records = rig.queue.peek_group(1000)
    assert len(records) > 5 and len({r.group for r in records}) == 1  # one page, one group
    assert all(len(r.payload) < 4096 for r in records)
    for pod in ("a", "b"):
        ts = [
            t
            for r in records
            for labels, es in decode_payload(r.payload)
            if ("pod", pod) in labels
            for t, _, _ in es
        ]
        assert ts == sorted(ts) and len(ts) == 200
    assert sum(r.count for r in records) == 400
    rig.close()


async def test_streams_relabelled_into_one_stay_one_stream_in_time_order_across_batches(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    # Two source streams, one target after the labeldrop, a third apart: the pipeline keeps one bucket per
    # target and batch, reached from either source stream, also after a batch boundary.
    for pod in ("a", "b"):
        loki.add(
            {"job": "app", "pod": pod},
            [(T0 + 2 * i + (pod == "b"), f"{pod}{i} " + "y" * 80) for i in range(150)],
        )
    loki.add({"job": "app", "container": "c"}, [(T0 + 3 * i, f"o{i}") for i in range(100)])
    relabel = [{"regex": "pod", "action": "labeldrop"}]
    rig = Rig(_config(tmp_path, loki, relabel_configs=relabel, logs={"push_batch_bytes": 3000}), session)
    assert (await rig.pipeline.cycle()).ok
    records = rig.queue.peek_group(1000)
    assert len(records) > 5
    merged: list[int] = []
    for r in records:
        streams = decode_payload(r.payload)
        assert len({labels for labels, _ in streams}) == len(streams)  # each target once per payload
        assert sum(len(es) for _, es in streams) == r.count
        merged += [t for labels, es in streams if labels == _stamped({"job": "app"}) for t, _, _ in es]
    assert merged == sorted(merged) and len(merged) == 300
    assert sum(r.count for r in records) == 400
    rig.close()


async def test_selectors_take_turns_so_one_backlog_cannot_starve_another(
    tmp_path: Path, loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "big"}, [(T0 + i, f"big {i}") for i in range(50)])
    loki.add({"job": "small"}, [(T0, "small one")])
    rig = Rig(
        _config(tmp_path, loki, selectors=['{job="big"}', '{job="small"}'], logs={"page_limit": 5}), session
    )
    rig.pipeline.budget = 0.0  # every cycle stops after its first page
    await rig.pipeline.cycle()
    await rig.pipeline.cycle()
    assert "small one" in [e[2] for e in rig.queued()]
    rig.close()
