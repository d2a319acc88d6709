"""The series cache: federation text in, remote-write payloads out, with staleness and dedup."""

from __future__ import annotations

import struct

import pytest

from observe.model import STALE_NAN_BITS
from observe.protocol.remote_write import decode_write_request, decompress
from observe.transform import series_cache
from observe.transform.normalize import Normalizer
from observe.transform.relabel import RelabelConfig, Relabeler
from observe.transform.series_cache import CycleBatch, SeriesCache

BODY = """# TYPE up untyped
up{cluster="theirs",instance="a:9100",job="node"} 1 1700000000000
up{instance="b:9100",job="node"} 0 1700000000000
# TYPE http_requests_total counter
http_requests_total{code="200",path="/a b"} 1027 1700000000500
http_requests_total{code="500",path="/a b"} +Inf 1700000000500
go_gc_duration_seconds{quantile="0.5"} 0.001 1700000000000
"""


def make(
    max_samples: int = 100, relabel: list[RelabelConfig] | None = None
) -> tuple[SeriesCache, list[str], list[tuple[int, str]]]:
    collisions: list[str] = []
    bad: list[tuple[int, str]] = []
    normalizer = Normalizer(
        cluster_label="cluster",
        cluster="prod-1",
        static_labels={"region": "eu"},
        relabeler=Relabeler(relabel) if relabel else None,
        on_collision=collisions.append,
    )
    cache = SeriesCache(
        normalizer, max_samples_per_send=max_samples, on_bad_line=lambda n, m: bad.append((n, m))
    )
    return cache, collisions, bad


def decoded(batch: CycleBatch) -> dict[tuple[tuple[str, str], ...], list[tuple[float, int]]]:
    out: dict[tuple[tuple[str, str], ...], list[tuple[float, int]]] = {}
    for payload, count in batch.payloads:
        series = decode_write_request(decompress(payload))
        assert len(series) == count
        for labels, samples in series:
            out.setdefault(tuple(labels), []).extend(samples)
    return out


def test_first_cycle_stamps_and_encodes_every_series() -> None:
    cache, collisions, bad = make()
    batch = cache.process(BODY, now_ms=1700000001000)
    got = decoded(batch)
    assert batch.series == 5 and batch.samples == 5 and batch.stale == 0 and not bad
    up_a = (("__name__", "up"), ("cluster", "prod-1"), ("exported_cluster", "theirs"), ("instance", "a:9100"),
            ("job", "node"), ("region", "eu"))  # fmt: skip
    assert got[up_a] == [(1.0, 1700000000000)]
    req = (("__name__", "http_requests_total"), ("cluster", "prod-1"), ("code", "500"), ("path", "/a b"),
           ("region", "eu"))  # fmt: skip
    assert got[req] == [(float("inf"), 1700000000500)]
    assert collisions == ["cluster"]  # once, when the series first appeared


def test_a_sample_the_source_did_not_renew_is_not_sent_twice() -> None:
    cache, _, _ = make()
    cache.process(BODY, now_ms=1700000001000)
    again = cache.process(BODY, now_ms=1700000031000)
    assert again.samples == 0 and again.unchanged == 5 and again.payloads == []
    newer = BODY.replace("1700000000000", "1700000030000")
    third = cache.process(newer, now_ms=1700000061000)
    assert third.samples == 3 and third.unchanged == 2


def test_vanished_series_get_the_exact_staleness_marker() -> None:
    cache, _, _ = make()
    cache.process(BODY, now_ms=1700000001000)
    without_b = "\n".join(line for line in BODY.splitlines() if "b:9100" not in line) + "\n"
    batch = cache.process(without_b, now_ms=1700000031000)
    assert batch.stale == 1
    stale = [
        (labels, samples) for labels, samples in decoded(batch).items() if ("instance", "b:9100") in labels
    ]
    assert len(stale) == 1
    [(value, ts)] = stale[0][1]
    assert struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_NAN_BITS
    assert ts == 1700000031000
    assert len(cache) == 4  # the vanished series left the cache


def test_failed_pull_marks_every_series_stale_once() -> None:
    cache, _, _ = make()
    cache.process(BODY, now_ms=1700000001000)
    failed = cache.fail(now_ms=1700000031000)
    assert failed.stale == 5 and failed.series == 0
    assert len(cache) == 0
    assert cache.fail(now_ms=1700000061000).stale == 0  # nothing left to mark


def test_stale_marker_is_newer_than_the_last_sample() -> None:
    cache, _, _ = make()
    cache.process(BODY, now_ms=1700000001000)
    failed = cache.fail(now_ms=1700000000000)  # clock behind the source's timestamps
    for _, samples in decoded(failed).items():
        assert samples[0][1] > 1700000000000 - 1


def test_relabel_drop_is_counted_and_never_marked_stale() -> None:
    cache, _, _ = make(relabel=[RelabelConfig(source_labels=["__name__"], regex="go_gc_.*", action="drop")])
    batch = cache.process(BODY, now_ms=1700000001000)
    assert batch.dropped_by_relabel == 1 and batch.samples == 4
    assert all(dict(labels)["__name__"] != "go_gc_duration_seconds" for labels in decoded(batch))
    assert cache.fail(now_ms=1700000031000).stale == 4


def test_bad_lines_are_skipped_with_their_line_number() -> None:
    cache, _, bad = make()
    body = (
        BODY
        + 'broken{label="x} 1 1700000000000\nname_only\nok_metric 3 1700000000000\nbad_value{a="b"} abc 1\n'
    )
    batch = cache.process(body, now_ms=1700000001000)
    assert batch.bad_lines == 3 and batch.samples == 6
    assert [n for n, _ in bad] == [8, 9, 11]


def test_requests_are_bounded_by_max_samples_per_send() -> None:
    cache, _, _ = make(max_samples=2)
    batch = cache.process(BODY, now_ms=1700000001000)
    assert [count for _, count in batch.payloads] == [2, 2, 1]


def test_missing_timestamp_takes_the_pull_time_and_odd_spacing_takes_the_careful_path() -> None:
    cache, _, _ = make()
    body = 'no_ts{a="x y"} 5\nspaced{a="b"}  7  1700000000000\n'
    got = decoded(cache.process(body, now_ms=1700000009000))
    values = {dict(labels)["__name__"]: samples for labels, samples in got.items()}
    assert values == {"no_ts": [(5.0, 1700000009000)], "spaced": [(7.0, 1700000000000)]}


def test_slicing_the_body_loses_no_line_at_any_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    whole, _, _ = make()
    expected = decoded(whole.process(BODY, now_ms=1700000001000))
    for size in range(1, len(BODY) + 2, 7):
        monkeypatch.setattr(series_cache, "_SLICE_CHARS", size)
        cache, _, bad = make()
        batch = cache.process(BODY, now_ms=1700000001000)
        assert decoded(batch) == expected and not bad, size
