"""Appends to a DurableQueue in a loop until it is killed: the subject of the SIGKILL test.

    python queue_writer_proc.py DIRECTORY FIRST_GROUP FSYNC SEED

Prints "ready" once the queue is open, then "<group> <last_seq>" after each append_many returned,
flushed at once, so the test knows which records the queue promised to keep. Each batch is one group;
payloads are self-describing (see `payload`) so the test can check every byte that comes back.
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

from observe.queue.durable import DurableQueue

_HEAD = struct.Struct("<QII")  # group, index in batch, pattern length

SEGMENT_BYTES = 256 * 1024
MAX_BYTES = 1 << 30  # never reached by one run: the test checks for zero loss


def payload(group: int, index: int, size: int) -> bytes:
    return _HEAD.pack(group, index, size) + bytes([(group * 7 + index) % 251]) * size


def check_payload(data: bytes, group: int) -> int:
    """The batch index encoded in `data`; raises AssertionError if any byte is off."""
    got_group, index, size = _HEAD.unpack_from(data)
    assert got_group == group, f"payload of group {got_group} in a record of group {group}"
    assert len(data) == _HEAD.size + size, f"payload length {len(data)} != {_HEAD.size + size}"
    assert data[_HEAD.size :] == bytes([(group * 7 + index) % 251]) * size, "payload bytes differ"
    return int(index)


def main() -> None:
    directory, group, fsync, seed = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    assert fsync in ("segment", "always", "never")
    rng = random.Random(seed)
    queue = DurableQueue(
        directory,
        max_bytes=MAX_BYTES,
        segment_bytes=SEGMENT_BYTES,
        max_age=1e9,
        fsync=fsync,  # type: ignore[arg-type]
    )
    print("ready", flush=True)
    while True:
        # Mostly small batches, now and then a few MiB: a kill inside that write() leaves a torn tail.
        big = rng.random() < 0.15
        items = [
            (payload(group, i, rng.randint(0, 1 << 20) if big else rng.randint(0, 3000)), i + 1)
            for i in range(rng.randint(1, 6))
        ]
        queue.append_many(items, group=group)
        print(f"{group} {queue.last_seq}", flush=True)
        group += 1


if __name__ == "__main__":
    main()
