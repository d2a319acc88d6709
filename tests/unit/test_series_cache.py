"""The series cache: federation text in, remote-write payloads out, with staleness and dedup."""

from __future__ import annotations

import random
import struct
import time

import pytest

from observe.model import STALE_NAN_BITS
from observe.protocol.remote_write import decode_write_request, decompress
from observe.transform import series_cache
from observe.transform.normalize import Normalizer
from observe.transform.relabel import RelabelConfig, Relabeler
from observe.transform.series_cache import CycleBatch, SeriesCache
from tests.exposition_cases import WARM_TS, hot_path_view, parser_view, random_line

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


# -- the hot path reads exactly what the parser reads -----------------------------------------------


def test_odd_digits_on_a_cached_series_are_refused_like_the_parser_refuses_them() -> None:
    # float() and int() take any Unicode digit and `_`; once a series is cached its lines skip the
    # parser, so the hot path must refuse them itself (a Prometheus scrape fails on each of these).
    cache, _, bad = make()
    cache.process('up{a="b"} 1 1000\nv 1 1000\n', now_ms=2000)
    body = (
        'up{a="b"} \u0661 2000\n'  # an Arabic-Indic one
        "v 2 \uff12\uff10\uff10\uff10\n"  # a fullwidth timestamp
        'up{a="b"} 1_0 3000\n'
        "v 3 4000\t\n"  # a trailing tab is fine: the careful path takes it
        "# TYPE v gauge \n"  # a TYPE line a scrape refuses (type 'gauge ')
    )
    batch = cache.process(body, now_ms=5000)
    assert [n for n, _ in bad] == [1, 2, 3, 5]
    assert "invalid sample value '\u0661'" in bad[0][1]
    assert "invalid timestamp" in bad[1][1] and "invalid metric type" in bad[3][1]
    assert [s for s in decoded(batch).values() if s[0][1] != 5000] == [[(3.0, 4000)]]


def test_a_bad_value_is_counted_even_when_the_timestamp_is_unchanged() -> None:
    cache, _, bad = make()
    cache.process("v 1 1000\n", now_ms=2000)
    batch = cache.process("v \uff11 1000\n", now_ms=3000)
    assert batch.bad_lines == 1 and batch.unchanged == 0 and len(bad) == 1


def test_nan_is_sent_with_prometheus_normal_nan_bits() -> None:
    # Prometheus stores every NaN it reads from text as value.NormalNaN, and remote-writes those bits.
    cache, _, _ = make()
    got = decoded(cache.process("v NaN 1000\nw nAn 1000\n", now_ms=2000))
    assert {struct.unpack("<Q", struct.pack("<d", s[0][0]))[0] for s in got.values()} == {0x7FF8000000000001}


GENERATED_BODIES = 1500  # ~9,000 lines, ~4,500 of them odd; 1.5 s for both tests on one core


@pytest.mark.parametrize("warm", [False, True], ids=["cold-cache", "warm-cache"])
def test_parser_and_hot_path_agree_on_generated_lines(warm: bool) -> None:
    """Identical accepted series (labels, value bits, timestamp) and identical rejected lines, for
    random and adversarial lines (tests/exposition_cases.py). Warm: the series were cached by a first
    cycle, so the odd values and timestamps meet the hot path, not the parser."""
    rng = random.Random(4242 + warm)
    start = time.monotonic()
    mismatches: list[str] = []
    lines_seen = 0
    for _ in range(GENERATED_BODIES):
        lines = [random_line(rng, i, odd=rng.random() < 0.5) for i in range(rng.randrange(1, 12))]
        lines_seen += len(lines)
        body = "\n".join(lines) + rng.choice(["\n", ""])
        now_ms = 1_700_000_000_000
        expected = parser_view(body, now_ms, newer_than=WARM_TS if warm else None)
        got = hot_path_view(body, now_ms, warm=warm)
        if got != expected:
            mismatches.append(f"{body[:300]!r}: parser {expected}, hot path {got}")
    assert not mismatches, f"{len(mismatches)} bodies differ; first: {mismatches[0]}"
    assert lines_seen > 5 * GENERATED_BODIES
    assert time.monotonic() - start < 30


# -- a body read as it arrives ----------------------------------------------------------------------


def raw_payloads(batch: CycleBatch) -> list[bytes]:
    """The requests as the receiver gets them, in order (decoded() forgets the order)."""
    return [decompress(payload) for payload, _ in batch.payloads]


def sent_order(batch: CycleBatch) -> list[str]:
    """The `i` label of every series sent, in request order."""
    return [dict(labels)["i"] for raw in raw_payloads(batch) for labels, _ in decode_write_request(raw)]


def numbered_body(series: range, ts: int, value: str = "1") -> str:
    return "".join(f'm{{i="{i}",path="/a b"}} {value} {ts}\n' for i in series)


def test_a_body_fed_in_pieces_makes_the_bytes_of_the_whole() -> None:
    whole, _, _ = make(max_samples=7)
    pieces, _, _ = make(max_samples=7)
    rng = random.Random(11)
    bodies = [BODY, BODY.replace("1700000000", "1700000030"), numbered_body(range(40), 1700000060000)]
    for n, body in enumerate(bodies):
        now = 1700000001000 + n * 30_000
        expected = whole.process(body, now_ms=now)
        cycle = pieces.begin(now)
        data, pos = body.encode(), 0
        while pos < len(data):
            step = rng.randint(1, 25)
            cycle.feed(data[pos : pos + step])
            pos += step
        got = cycle.finish(now)
        assert raw_payloads(got) == raw_payloads(expected), n
        assert (got.series, got.samples, got.stale, got.unchanged) == (
            expected.series, expected.samples, expected.stale, expected.unchanged,
        )  # fmt: skip


def test_an_aborted_cycle_leaves_the_cache_as_it_was() -> None:
    # The pull failed after part of the body was read: what that part changed (timestamps taken, new
    # series) must not show, neither in the next cycle nor in the stale markers of a failed one.
    control, _, _ = make()
    cache, _, bad = make()
    first = numbered_body(range(20), 1700000000000)
    for c in (control, cache):
        c.process(first, now_ms=1700000001000)
    cycle = cache.begin(1700000031000)
    cycle.feed((numbered_body(range(10, 40), 1700000030000) + "broken{ 1\n").encode())
    cycle.abort()
    cycle.abort()  # twice is harmless
    cycle.feed(b'late{a="b"} 1 1700000030000\n')  # a piece still queued when the pull failed: ignored
    assert len(cache) == len(control) == 20 and not bad
    again = numbered_body(range(5, 25), 1700000030000)
    assert raw_payloads(cache.process(again, now_ms=1700000031000)) == raw_payloads(
        control.process(again, now_ms=1700000031000)
    )
    assert raw_payloads(cache.fail(now_ms=1700000029000)) == raw_payloads(control.fail(now_ms=1700000029000))
    with pytest.raises(RuntimeError):
        cycle.finish(1700000031000)


def test_bad_lines_are_reported_when_the_cycle_finishes_and_never_for_an_aborted_one() -> None:
    cache, _, bad = make()
    cycle = cache.begin(1700000001000)
    cycle.feed(b"broken{ 1\nok 1 1700000000000\n")
    assert bad == []
    cycle.abort()
    assert bad == []
    cycle = cache.begin(1700000001000)
    cycle.feed(b"ok 1 1700000000000\nbroken{ 1\n")
    assert bad == []
    assert cycle.finish(1700000001000).bad_lines == 1 and [n for n, _ in bad] == [2]


def test_series_leave_in_the_order_they_came_and_the_others_keep_theirs() -> None:
    cache, _, _ = make(max_samples=1000)
    cache.process(numbered_body(range(400), 1700000000000), now_ms=1700000001000)
    # 300 of 400 vanish: enough free slots for the cache to compact itself
    batch = cache.process(numbered_body(range(300, 400), 1700000010000), now_ms=1700000011000)
    assert sent_order(batch) == [str(i) for i in range(300, 400)] + [str(i) for i in range(300)]  # then stale
    assert len(cache) == 100
    # some come back, after the others in the body: the requests follow the body, the stale markers the cache
    body = numbered_body(range(350, 400), 1700000020000) + numbered_body(range(0, 20), 1700000020000)
    batch = cache.process(body, now_ms=1700000021000)
    assert sent_order(batch) == [str(i) for i in [*range(350, 400), *range(20), *range(300, 350)]]
    assert (batch.stale, len(cache)) == (50, 70)


def test_a_body_in_another_order_or_with_a_series_twice_reads_the_same() -> None:
    cache, _, _ = make()
    lines = numbered_body(range(3000), 1700000000000).splitlines(keepends=True)
    cache.process("".join(lines), now_ms=1700000001000)
    random.Random(5).shuffle(lines)
    newer = "".join(lines).replace("1700000000000", "1700000010000")
    batch = cache.process(newer + lines[0].replace("1700000000000", "1700000010000"), now_ms=1700000011000)
    assert (batch.series, batch.samples, batch.unchanged, batch.stale, len(cache)) == (3001, 3000, 1, 0, 3000)
    assert sent_order(batch) == [line.split('"')[1] for line in lines]
