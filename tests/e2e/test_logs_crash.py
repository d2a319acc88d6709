"""The logs path survives being SIGKILLed at random moments, over and over, while the clusters' streams are
being written and a backlog is being caught up: afterwards the central Loki holds every entry exactly once.
All three Lokis are fake Lokis following Loki's documented HTTP API (tests/loki_api_fake.py)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.collector_proc import start_collector, write_config
from tests.e2e.logs_fleet import (
    Writer,
    expected,
    logs_config,
    loki_cluster,
    seed,
    wait_for_centre,
)
from tests.loki_api_fake import FakeLoki, LokiThread

KILLS = 22
MAX_SECONDS = 150  # the kill loop's bound; it usually takes ~40s on 2 cores


def test_sigkill_at_random_moments_loses_and_repeats_nothing_with_fake_lokis(
    tmp_path: Path, loop: LokiThread
) -> None:
    alpha, beta = loop.start(FakeLoki()), loop.start(FakeLoki())
    central = loop.start(FakeLoki(auth_enabled=True))
    rng = random.Random(20)
    try:
        backlog = seed(
            alpha, {"job": "app", "pod": "old"}, 30_000, metadata_every=7
        )  # caught up across kills
        streams_a = [{"job": "app", "pod": "a1"}, {"job": "app", "pod": "a2"}]
        streams_b = [{"job": "app", "pod": "b1"}]
        writers = [Writer(loop, alpha, streams_a, every=0.01).start(), Writer(loop, beta, streams_b).start()]
        clusters = [
            loki_cluster("alpha", alpha, ['{job="app"}']),
            loki_cluster("beta", beta, ['{job="app"}']),
        ]
        cfg = write_config(
            tmp_path / "observe.yaml",
            logs_config(
                tmp_path / "data", clusters, central.push_url, page_limit=500, push_batch_bytes=65536
            ),
        )
        started = time.monotonic()
        kills = 0
        while kills < KILLS and time.monotonic() - started < MAX_SECONDS:
            proc = start_collector(cfg)
            time.sleep(rng.uniform(0.0, 1.2))  # mid-page, mid-append, mid-push, mid-cursor-write
            proc.kill()
            kills += 1
        assert kills == KILLS, f"only {kills} kills within {MAX_SECONDS}s"
        live_a, live_b = (w.stop() for w in writers)

        final = start_collector(cfg)
        try:
            want = expected(backlog + live_a, "alpha", {}, lambda lb: True) + expected(
                live_b, "beta", {}, lambda lb: True
            )
            got = wait_for_centre(
                loop, central, want, 90, "the centre to hold every entry written during the kills"
            )
            dupes = {e: n for e, n in got.items() if n > 1}
            assert not dupes, f"{len(dupes)} entries stored more than once"
            assert got == want
            assert final.metric_value("observe_dropped_samples_total", signal="logs") == 0
        finally:
            assert final.terminate() == 0
        # Replays after the kills reached the centre as byte-identical repeats, which Loki drops: the
        # fake counts them, so the test shows the at-least-once path was exercised, not avoided.
        assert loop.call(lambda: central.stats.get("duplicates_dropped", 0)) > 0
    finally:
        for fake in (alpha, beta, central):
            loop.stop(fake)
