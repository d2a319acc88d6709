"""The central Loki answers 429 for a while, then is down, then comes back slow: nothing is lost, nothing
duplicated, and one cluster's backlog does not hold back the other cluster's fresh logs.
All Lokis are fake Lokis following Loki's documented HTTP API (tests/loki_api_fake.py)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.collector_proc import start_collector, write_config
from tests.e2e.logs_fleet import (
    Writer,
    central_fleet_entries,
    expected,
    logs_config,
    loki_cluster,
    seed,
    wait_for_centre,
)
from tests.loki_api_fake import FakeLoki, LokiThread
from tests.servers import wait_until


def test_fake_central_loki_429_then_down_then_up_loses_nothing_and_blocks_no_cluster(
    tmp_path: Path, loop: LokiThread
) -> None:
    alpha, beta = loop.start(FakeLoki()), loop.start(FakeLoki())
    central = loop.start(FakeLoki(auth_enabled=True, push_429_next=10**9))  # phase 1: every push throttled
    try:
        backlog = seed(alpha, {"job": "app", "pod": "old"}, 40_000)  # alpha: 80 pages of backlog
        writer = Writer(loop, beta, [{"job": "app", "pod": "b1"}], every=0.05).start()  # beta: live lines
        clusters = [
            loki_cluster("alpha", alpha, ['{job="app"}']),
            loki_cluster("beta", beta, ['{job="app"}']),
        ]
        doc = logs_config(tmp_path / "data", clusters, central.push_url, page_limit=500)
        doc["central"]["loki"].update(min_backoff="100ms", max_backoff="1s")
        cfg = write_config(tmp_path / "observe.yaml", doc)
        proc = start_collector(cfg)
        try:
            # Phase 1: 429s. Counted per cluster, nothing stored, nothing dropped.
            for cluster in ("alpha", "beta"):
                wait_until(
                    lambda c=cluster: (
                        proc.metric_value("observe_log_throttled_total", cluster=c, endpoint="push") >= 2
                    ),
                    20,
                    message=f"{cluster}'s pushes to be throttled",
                )
            assert central_fleet_entries(loop, central) == []
            # Phase 2: the centre is down.
            loop.stop(central)
            refused = proc.metric_value("observe_send_failures_total", sink="loki_push", reason="unreachable")
            wait_until(
                lambda: (
                    proc.metric_value("observe_send_failures_total", sink="loki_push", reason="unreachable")
                    > refused + 2
                ),
                20,
                message="pushes to be refused",
            )
            time.sleep(1)
            # Phase 3: back, but slow (a quarter second per push): alpha's 80 records take 20s or more.
            loop.call(lambda: (setattr(central, "push_429_next", 0), setattr(central, "push_delay", 0.25)))
            loop.start(central)

            def has(pred: object) -> bool:
                return any(pred(e) for e in central_fleet_entries(loop, central))  # type: ignore[operator]

            wait_until(
                lambda: has(lambda e: ("cluster", "beta") in e[1]), 20, message="beta to deliver again"
            )
            # A fresh beta line reaches the centre within seconds while alpha's backlog is still going in.
            marker = time.time_ns()
            loop.call(lambda: beta.add({"job": "app", "pod": "b1"}, [(marker, "fresh marker line")]))
            wait_until(
                lambda: has(lambda e: e[2] == "fresh marker line"),
                10,  # one cycle (1s) + safety_lag (1s) + a push; generous for a loaded CI machine
                message="beta's fresh line despite alpha's backlog",
            )
            arrived = time.time_ns()
            alpha_now = sum(1 for e in central_fleet_entries(loop, central) if ("cluster", "alpha") in e[1])
            assert alpha_now < len(backlog), "alpha's backlog was already delivered: the test shows nothing"
            assert (arrived - marker) / 1e9 < 10
            live = writer.stop()
            want = expected(backlog, "alpha", {}, lambda lb: True)
            live.append((marker, (("job", "app"), ("pod", "b1")), "fresh marker line", ()))
            want += expected(live, "beta", {}, lambda lb: True)
            got = wait_for_centre(loop, central, want, 90, "everything to arrive")
            assert got == want  # nothing lost, nothing twice
            assert proc.metric_value("observe_dropped_samples_total", signal="logs") == 0
            assert proc.metric_value("observe_log_entries_sent_total", cluster="alpha") == len(backlog)
        finally:
            assert proc.terminate() == 0
    finally:
        for fake in (alpha, beta, central):
            loop.stop(fake)
