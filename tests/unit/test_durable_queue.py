"""The durable queue: order, group barrier, restart replay, bounds, torn tails and corruption, SIGKILL."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from observe.errors import QueueError
from observe.queue.durable import DurableQueue, Record
from observe.queue.segment import FRAME, OVERHEAD
from observe.reasons import DROP_CORRUPT, DROP_QUEUE_FULL, DROP_TOO_OLD
from tests.unit.queue_writer_proc import check_payload

KiB = 1024


class Drops:
    """Collects on_drop calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, reason: str, count: int) -> None:
        self.calls.append((reason, count))

    def total(self, reason: str) -> int:
        return sum(c for r, c in self.calls if r == reason)


def open_queue(directory: Path, drops: Drops | None = None, **kw: Any) -> DurableQueue:
    options: dict[str, Any] = {"max_bytes": 1024 * KiB, "segment_bytes": 64 * KiB, "max_age": 3600.0}
    options.update(kw)
    return DurableQueue(directory, on_drop=drops, **options)


def seqs(records: list[Record]) -> list[int]:
    return [r.seq for r in records]


def drain_all(queue: DurableQueue) -> list[Record]:
    """Peek and ack until empty; every record, in the order handed out."""
    out: list[Record] = []
    while batch := queue.peek_group(1000):
        out += batch
        for r in batch:
            queue.ack(r.seq)
    return out


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def test_append_peek_ack_in_order(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        q.append_many([(b"a", 1), (b"bb", 2), (b"ccc", 3)], group=7, created=1000.0 + time.time())
        got = q.peek_group(10)
        assert [(r.seq, r.group, r.count, r.payload) for r in got] == [
            (1, 7, 1, b"a"), (2, 7, 2, b"bb"), (3, 7, 3, b"ccc"),
        ]  # fmt: skip
        assert {r.created for r in got} == {got[0].created}
        assert q.peek_group(10) == []  # already handed out
        assert q.stats().records == 3
        for r in got:
            q.ack(r.seq)
        assert q.stats().records == 0
        assert q.stats().oldest_created is None
        assert q.peek_group(10) == []


def test_peek_respects_max_records_and_skips_handed_out(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        q.append_many([(b"%d" % i, 1) for i in range(5)], group=1)
        assert seqs(q.peek_group(2)) == [1, 2]
        assert seqs(q.peek_group(2)) == [3, 4]
        assert seqs(q.peek_group(2)) == [5]
        assert q.peek_group(0) == []


def test_next_group_waits_for_every_ack_of_the_current_one(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        q.append_many([(b"g1-a", 1), (b"g1-b", 1), (b"g1-c", 1)], group=1)
        q.append_many([(b"g2-a", 1), (b"g2-b", 1)], group=2)
        first = q.peek_group(10)
        assert [r.payload for r in first] == [b"g1-a", b"g1-b", b"g1-c"]
        assert q.peek_group(10) == []
        q.ack(3)  # out of order within the group
        q.ack(1)
        assert q.peek_group(10) == []  # seq 2 still out: barrier holds
        assert q.stats().records == 3  # seq 2 and group 2
        q.ack(2)
        assert [r.payload for r in q.peek_group(10)] == [b"g2-a", b"g2-b"]


def test_same_group_number_appended_twice_is_one_run(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        q.append_many([(b"x", 1)], group=5)
        q.append_many([(b"y", 1)], group=5)
        q.append_many([(b"z", 1)], group=6)
        assert [r.payload for r in q.peek_group(10)] == [b"x", b"y"]


def test_restart_replays_unacked_in_order_with_the_same_seq(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        q.append_many([(b"r%d" % i, i) for i in range(1, 6)], group=1)
        handed = q.peek_group(10)
        q.ack(1)
        q.ack(2)
        q.ack(4)  # acked, but above the unacked 3: replayed (at-least-once)
        del handed
    with open_queue(tmp_path) as q:
        again = q.peek_group(10)
        assert [(r.seq, r.payload, r.count) for r in again] == [(3, b"r3", 3), (4, b"r4", 4), (5, b"r5", 5)]
        q.append_many([(b"new", 1)], group=2)
        assert q.last_seq == 6


def test_cursor_persists_across_reopen_and_seq_keeps_increasing(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        for g in range(3):
            q.append_many([(b"p", 1), (b"q", 1)], group=g)
        assert len(drain_all(q)) == 6
    with open_queue(tmp_path) as q:
        assert q.peek_group(10) == []
        assert q.stats().records == 0
        assert q.last_seq == 6
        q.append_many([(b"after", 1)], group=9)
        assert seqs(q.peek_group(10)) == [7]


def test_release_hands_a_record_out_again(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        q.append_many([(b"a", 1), (b"b", 1), (b"c", 1)], group=1)
        assert seqs(q.peek_group(10)) == [1, 2, 3]
        q.release(2)
        q.release(99)  # unknown: ignored
        again = q.peek_group(10)
        assert [(r.seq, r.payload) for r in again] == [(2, b"b")]


def test_fully_acked_segments_are_deleted(tmp_path: Path) -> None:
    with open_queue(tmp_path, segment_bytes=4 * KiB, max_bytes=1024 * KiB) as q:
        for g in range(20):
            q.append_many([(b"x" * 1000, 1)], group=g)
        assert len(segments(tmp_path)) >= 5
        drain_all(q)
        assert len(segments(tmp_path)) == 1  # the newest stays: its name carries next_seq
        assert q.stats().bytes == segments(tmp_path)[0].stat().st_size


def test_max_bytes_drops_the_oldest_segments_and_counts_them(tmp_path: Path) -> None:
    drops = Drops()
    record = 1000 + OVERHEAD
    with open_queue(tmp_path, drops, segment_bytes=4 * record, max_bytes=12 * record) as q:
        for g in range(1, 31):
            q.append_many([(b"%04d" % g + b"." * 996, 10)], group=g)
            assert q.stats().bytes <= 12 * record
        kept = drain_all(q)
    assert sum(p.stat().st_size for p in segments(tmp_path)) <= 12 * record
    # The newest data wins: what is left is a contiguous run ending with the last append.
    assert seqs(kept) == list(range(kept[0].seq, 31))
    assert len(kept) >= 8
    assert drops.total(DROP_QUEUE_FULL) == 10 * (30 - len(kept))
    assert {r for r, _ in drops.calls} == {DROP_QUEUE_FULL}


def test_max_bytes_does_not_count_records_already_acked(tmp_path: Path) -> None:
    drops = Drops()
    record = 1000 + OVERHEAD
    with open_queue(tmp_path, drops, segment_bytes=4 * record, max_bytes=8 * record) as q:
        q.append_many([(b"." * 1000, 5)] * 4, group=1)
        first = q.peek_group(4)
        q.ack(first[1].seq)  # acked out of order: not lost when its segment goes
        for g in range(2, 6):
            q.append_many([(b"." * 1000, 5)] * 2, group=g)
    assert drops.total(DROP_QUEUE_FULL) == 3 * 5


def test_batch_larger_than_max_bytes_is_dropped_and_counted(tmp_path: Path) -> None:
    drops = Drops()
    with open_queue(tmp_path, drops, segment_bytes=64 * KiB, max_bytes=128 * KiB) as q:
        q.append_many([(b"keep", 1)], group=1)
        q.append_many([(b"." * (100 * KiB), 3), (b"." * (100 * KiB), 4)], group=2)
        assert [r.payload for r in drain_all(q)] == [b"keep"]
    assert drops.calls == [(DROP_QUEUE_FULL, 7)]


def test_records_older_than_max_age_are_dropped_at_peek(tmp_path: Path) -> None:
    drops = Drops()
    now = time.time()
    with open_queue(tmp_path, drops, max_age=60.0) as q:
        q.append_many([(b"old1", 4), (b"old2", 5)], group=1, created=now - 120)
        q.append_many([(b"fresh", 1)], group=2, created=now)
        got = q.peek_group(10)  # the dropped group no longer holds the barrier
        assert [r.payload for r in got] == [b"fresh"]
        q.ack(got[0].seq)
        assert q.stats().records == 0
    assert drops.calls == [(DROP_TOO_OLD, 9)]


def test_torn_tail_cut_by_hand_mid_record_is_truncated(tmp_path: Path) -> None:
    drops = Drops()
    with open_queue(tmp_path, drops) as q:
        q.append_many([(b"one", 1), (b"two", 1)], group=1)
        q.append_many([(b"three" * 100, 1)], group=2)
    seg = segments(tmp_path)[0]
    size = seg.stat().st_size
    os.truncate(seg, size - 200)  # in the middle of the third record's payload
    with open_queue(tmp_path, drops) as q:
        assert seg.stat().st_size == 2 * OVERHEAD + 6  # the torn part is gone, appends follow clean data
        assert [r.payload for r in q.peek_group(10)] == [b"one", b"two"]
        q.append_many([(b"four", 1)], group=3)
    with open_queue(tmp_path, drops) as q:
        assert [(r.seq, r.payload) for r in drain_all(q)] == [(1, b"one"), (2, b"two"), (3, b"four")]
    assert drops.calls == []  # a torn tail is an append that never returned: nothing counted


@pytest.mark.parametrize(
    ("tail", "name"),
    [(b"\x07\x00", "shorter than a frame header"), (b"\x00" * 4096, "zeros after power loss")],
)
def test_torn_tail_variants_are_truncated(tmp_path: Path, tail: bytes, name: str) -> None:
    drops = Drops()
    with open_queue(tmp_path, drops) as q:
        q.append_many([(b"kept", 1)], group=1)
    with segments(tmp_path)[0].open("ab") as f:
        f.write(tail)
    with open_queue(tmp_path, drops) as q:
        assert [r.payload for r in drain_all(q)] == [b"kept"], name
    assert drops.calls == []


def test_bad_checksum_on_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    drops = Drops()
    with open_queue(tmp_path, drops) as q:
        q.append_many([(b"first", 1), (b"second", 1)], group=1)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    with open_queue(tmp_path, drops) as q:
        assert [r.payload for r in drain_all(q)] == [b"first"]
    assert drops.calls == []


def test_corrupt_record_mid_segment_skips_the_rest_of_it_and_counts(tmp_path: Path) -> None:
    drops = Drops()
    record = 1000 + OVERHEAD
    with open_queue(tmp_path, drops, segment_bytes=3 * record) as q:
        q.append_many([(b"a" * 1000, 1), (b"b" * 1000, 2), (b"c" * 1000, 3)], group=1)
        q.append_many([(b"d" * 1000, 4)], group=2)  # rotates into a second segment
    first, _ = segments(tmp_path)
    data = bytearray(first.read_bytes())
    data[record + OVERHEAD + 10] ^= 0x01  # a payload byte of the second record
    first.write_bytes(bytes(data))
    with open_queue(tmp_path, drops) as q:
        got = drain_all(q)
    assert [(r.seq, r.payload[:1]) for r in got] == [(1, b"a"), (4, b"d")]
    assert drops.calls == [(DROP_CORRUPT, 2)]  # the header was intact, so its count is known


def test_corrupt_record_in_the_newest_segment_is_cut_off_and_counted(tmp_path: Path) -> None:
    drops = Drops()
    with open_queue(tmp_path, drops) as q:
        q.append_many([(b"a" * 100, 1), (b"b" * 100, 1), (b"c" * 100, 1)], group=1)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[100 + OVERHEAD + FRAME.size] ^= 0xFF  # the second record's header (its seq)
    seg.write_bytes(bytes(data))
    with open_queue(tmp_path, drops) as q:
        assert [r.payload[:1] for r in q.peek_group(10)] == [b"a"]
        assert seg.stat().st_size == 100 + OVERHEAD
        q.append_many([(b"next", 1)], group=2)
    with open_queue(tmp_path, drops) as q:
        assert [r.payload[:1] for r in drain_all(q)] == [b"a", b"n"]
    assert [r for r, _ in drops.calls] == [DROP_CORRUPT]


def test_damage_after_open_is_caught_by_the_checksum_at_peek(tmp_path: Path) -> None:
    drops = Drops()
    with open_queue(tmp_path, drops) as q:
        q.append_many([(b"x" * 100, 3), (b"y" * 100, 4)], group=1)
        seg = segments(tmp_path)[0]
        with seg.open("r+b") as f:
            f.seek(OVERHEAD + 5)
            f.write(b"Z")
        assert [r.payload[:1] for r in q.peek_group(10)] == [b"y"]
    assert drops.calls == [(DROP_CORRUPT, 3)]


def test_disk_full_gives_up_the_oldest_segment_and_counts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drops = Drops()
    record = 1000 + OVERHEAD
    with open_queue(tmp_path, drops, segment_bytes=2 * record, max_bytes=100 * record) as q:
        for g in range(1, 5):
            q.append_many([(b"." * 1000, 10)], group=g)
        real_write = os.write
        calls = iter(["short", "full"])

        def full_once(fd: int, data: Any) -> int:
            match next(calls, "ok"):
                case "short":  # write(2) first stores what fits and says so; the half batch must be undone
                    return real_write(fd, bytes(data)[:100])
                case "full":
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", full_once)  # segment.py calls os.write
        q.append_many([(b"new" + b"." * 997, 1)], group=5)
        monkeypatch.undo()
        got = drain_all(q)
    assert [r.group for r in got] == [3, 4, 5]
    assert drops.calls == [(DROP_QUEUE_FULL, 20)]
    with open_queue(tmp_path, drops) as q:
        assert q.peek_group(10) == []  # nothing half-written was left behind


def test_disk_full_with_nothing_to_give_up_raises_queue_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with open_queue(tmp_path) as q:
        with monkeypatch.context() as patched, pytest.raises(QueueError, match=str(tmp_path)):
            patched.setattr(os, "write", full)
            q.append_many([(b"x", 1)], group=1)
        assert q.stats().records == 0


def test_a_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    with open_queue(tmp_path), pytest.raises(QueueError, match="in use by another process"):
        open_queue(tmp_path)
    open_queue(tmp_path).close()  # free again once closed


def test_unusable_directory_is_a_queue_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("")
    with pytest.raises(QueueError, match="not-a-dir"):
        open_queue(target)


def test_use_after_close_is_a_queue_error(tmp_path: Path) -> None:
    q = open_queue(tmp_path)
    q.close()
    q.close()  # idempotent
    with pytest.raises(QueueError, match="after close"):
        q.append_many([(b"x", 1)], group=1)


async def test_wait_wakes_on_append_and_times_out_otherwise(tmp_path: Path) -> None:
    with open_queue(tmp_path) as q:
        assert await q.wait(0.01) is False
        q.append_many([(b"x", 1)], group=1)
        assert await q.wait(5) is True
        assert await q.wait(0.01) is False  # consumed


def test_sigkill_mid_append_keeps_every_acknowledged_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kill a writer process at random moments; each reopen must hold every record it reported written."""
    caplog.set_level(logging.INFO, logger="observe.queue")
    script = Path(__file__).with_name("queue_writer_proc.py")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    directory = tmp_path / "queue"
    rng = random.Random(1234)
    verified = 0  # every seq up to here was read back intact
    group = 1
    kills = 0
    started = time.monotonic()
    while kills < 25 and time.monotonic() - started < 12:
        progress = tmp_path / f"progress-{kills}.txt"
        errors = tmp_path / f"stderr-{kills}.txt"
        fsync = rng.choice(["segment", "never", "always"])
        with progress.open("wb") as out, errors.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(directory), str(group), fsync, str(rng.randrange(1 << 30))],
                stdout=out,
                stderr=err,
                env=env,
                cwd=repo,
            )
        try:
            deadline = time.monotonic() + 10
            while not progress.read_bytes().startswith(b"ready\n"):
                assert proc.poll() is None, f"writer exited: {errors.read_text()}"
                assert time.monotonic() < deadline, "writer never became ready"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.12))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kills += 1
        lines = progress.read_text().split("\n")[1:-1]  # drop "ready" and a line cut short by the kill
        promised = int(lines[-1].split()[1]) if lines else verified

        with open_queue(directory, max_bytes=1 << 30, segment_bytes=256 * KiB, max_age=1e9) as q:
            got = drain_all(q)
        assert seqs(got) == list(range(verified + 1, verified + 1 + len(got))), (
            "records out of order or missing"
        )
        assert not got or got[-1].seq >= promised, (
            f"lost records {got[-1].seq + 1}..{promised} after kill {kills}"
        )
        assert promised - verified <= len(got)
        last_index: dict[int, int] = {}
        for r in got:
            index = check_payload(r.payload, r.group)
            assert index == last_index.get(r.group, -1) + 1, "a batch came back out of order"
            assert r.count == index + 1
            last_index[r.group] = index
        if got:
            verified = got[-1].seq
            group = got[-1].group + 1
    torn = sum("torn tail" in rec.getMessage() for rec in caplog.records)
    print(f"{kills} kills, {verified} records verified, {torn} torn tails truncated")
    assert kills >= 20
    assert verified > 0
