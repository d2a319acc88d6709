"""The logs path end to end: `python -m observe run` as a subprocess, two clusters' Lokis and a central
Loki, all fake Lokis following Loki's documented HTTP API (tests/loki_api_fake.py; no Loki binary can be
installed here). What the clusters hold is compared, entry by entry, with what reached the centre."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from tests.collector_proc import run_once, start_collector, write_config
from tests.e2e.logs_fleet import (
    TENANT,
    Writer,
    central_fleet_entries,
    expected,
    logs_config,
    loki_cluster,
    seed,
    wait_for_centre,
)
from tests.loki_api_fake import NS, FakeLoki, LokiThread
from tests.servers import wait_until


def test_two_clusters_reach_fake_central_loki_exactly_once_with_cluster_labels(
    tmp_path: Path, loop: LokiThread
) -> None:
    alpha = loop.start(FakeLoki(auth_enabled=True))
    beta = loop.start(FakeLoki())
    central = loop.start(FakeLoki(auth_enabled=True, loki3_ingest=False))
    try:
        a1, a2 = {"job": "app", "pod": "a1"}, {"job": "app", "pod": "a2"}
        source_a = seed(alpha, a1, 1500, tenant="team-a", metadata_every=3)
        source_a += seed(alpha, a2, 1500, tenant="team-a")  # same timestamps as a1: lines differ by prefix
        same_ns = time.time_ns() - 120 * NS
        for labels in (a1, a2):  # identical lines of different streams at one nanosecond
            alpha.add(labels, [(same_ns, "identical line in two streams")], tenant="team-a")
            source_a.append((same_ns, tuple(sorted(labels.items())), "identical line in two streams", ()))
        seed(alpha, {"job": "noise"}, 300, tenant="team-a", prefix="noise")  # not selected
        b1, b2 = {"job": "app", "cluster": "theirs"}, {"job": "batch", "namespace": "etl"}
        source_b = seed(beta, b1, 800, prefix="b1") + seed(beta, b2, 800, prefix="b2", metadata_every=2)

        clusters = [
            loki_cluster(
                "alpha", alpha, ['{job="app"}'], labels={"region": "eu-west-1"}, loki={"tenant": "team-a"}
            ),
            loki_cluster("beta", beta, ['{job="app"}', '{job="batch"}']),
        ]
        cfg = write_config(
            tmp_path / "observe.yaml", logs_config(tmp_path / "data", clusters, central.push_url)
        )
        live = [Writer(loop, alpha, [a1], tenant="team-a").start(), Writer(loop, beta, [b1, b2]).start()]
        proc = start_collector(cfg)
        try:
            time.sleep(3)  # streams are written while the collector tails them
            live_a, live_b = (w.stop() for w in live)
            want = expected(
                source_a + live_a, "alpha", {"region": "eu-west-1"}, lambda lb: lb.get("job") == "app"
            )
            want += expected(source_b + live_b, "beta", {}, lambda lb: lb.get("job") in ("app", "batch"))
            got = wait_for_centre(loop, central, want, 60, "the centre to hold every selected entry")
            assert got == want and max(got.values()) == 1  # exactly once
            # The counts the collector reports match what arrived.
            n_alpha = sum(1 for e in want if ("cluster", "alpha") in e[1])
            wait_until(
                lambda: proc.metric_value("observe_log_entries_sent_total", cluster="alpha") == n_alpha,
                10,
                message="sent",
            )
            assert proc.metric_value("observe_log_entries_pulled_total", cluster="alpha") == n_alpha
            assert proc.metric_value("observe_log_entries_sent_total", cluster="beta") == len(want) - n_alpha
            assert 0 < proc.metric_value("observe_log_lag_seconds", cluster="beta") < 10
            assert proc.metric_value("observe_dropped_samples_total", signal="logs") == 0
        finally:
            assert proc.terminate() == 0
        # Nothing else reached the centre: no noise stream, no other tenant; structured metadata stayed
        # metadata (no trace_id stream label) and the source's own cluster label became exported_cluster.
        streams = {e[1] for e in central_fleet_entries(loop, central)}
        assert not any(dict(s).get("job") == "noise" for s in streams)
        assert not any("trace_id" in dict(s) for s in streams)
        assert (("cluster", "beta"), ("exported_cluster", "theirs"), ("job", "app")) in streams
        assert loop.call(lambda: set(central.streams)) == {TENANT}
        # The collector's own logs went there too, labelled with self_cluster.
        own = [e for e in loop.call(lambda: central.entries(TENANT)) if ("app", "observe") in e[1]]
        assert own and own[0][1] == (("app", "observe"), ("self_cluster", "mgmt"))
        assert any("collector started" in e[2] for e in own)
    finally:
        for fake in (alpha, beta, central):
            loop.stop(fake)


def test_10000_entries_in_one_nanosecond_and_identical_lines_arrive_once_via_fake_loki(
    tmp_path: Path, loop: LokiThread
) -> None:
    src = loop.start(FakeLoki())
    central = loop.start(FakeLoki(auth_enabled=True))
    try:
        ns = time.time_ns() - 600 * NS
        source = []
        for pod in range(4):
            labels = {"job": "app", "pod": str(pod)}
            source += seed(src, labels, 1000, prefix=f"before-{pod}", span=60)
            rows = [(ns, f"burst line {i}") for i in range(2500)] + [(ns + 1, "identical in every stream")]
            src.add(labels, rows)  # type: ignore[arg-type]
            key = tuple(sorted(labels.items()))
            source += [(ts, key, line, ()) for ts, line in rows]
        clusters = [loki_cluster("alpha", src, ['{job="app"}'])]
        doc = logs_config(tmp_path / "data", clusters, central.push_url)
        doc["interval"] = "20s"  # --once runs one cycle, which may read for one interval: all of it here
        cfg = write_config(tmp_path / "observe.yaml", doc)
        done = run_once(cfg, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        got = Counter(central_fleet_entries(loop, central))
        want = expected(source, "alpha", {}, lambda lb: True)
        assert len(want) == 4 * (1000 + 2501)
        assert got == want
    finally:
        loop.stop(src)
        loop.stop(central)
