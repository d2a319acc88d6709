"""`observe check` and `/status` on the logs path, against fake Lokis that follow Loki's documented
HTTP API (tests/loki_api_fake.py): no Loki server can be installed here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.collector_proc import start_collector, write_config
from tests.e2e.logs_fleet import logs_config, loki_cluster, seed
from tests.loki_api_fake import NS, FakeLoki, LokiThread
from tests.servers import wait_until


def test_check_probes_each_fake_loki_selector_and_the_central_push(tmp_path: Path, loop: LokiThread) -> None:
    good = loop.start(FakeLoki())
    refusing = loop.start(FakeLoki(auth_enabled=True, allowed_tenants={"team-a"}))
    central = loop.start(FakeLoki(auth_enabled=True))
    try:
        now = time.time_ns()
        good.add({"job": "app"}, [(now - (i + 1) * NS, f"recent line {i}") for i in range(20)])
        clusters = [
            loki_cluster("good", good, ['{job="app"}', '{job=~".*"}']),
            loki_cluster("refusing", refusing, ['{job="app"}'], loki={"tenant": "team-b"}),
        ]
        cfg = write_config(
            tmp_path / "observe.yaml", logs_config(tmp_path / "data", clusters, central.push_url)
        )
        done = subprocess.run(
            [sys.executable, "-m", "observe", "check", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "250"},
        )
        assert done.returncode == 1, done.stdout + done.stderr  # the refused tenant fails the check
        rows = done.stdout.splitlines()
        app = next(r for r in rows if "good" in r and '{job="app"}' in r)
        assert "ok" in app and "20 entries in the last minute" in app
        bad_selector = next(r for r in rows if "good" in r and '{job=~".*"}' in r)
        assert "FAIL" in bad_selector  # Loki refuses a selector that matches the empty string
        refused = next(r for r in rows if "refusing" in r)
        assert "FAIL" in refused and "401" in refused
        push = next(r for r in rows if "loki_push" in r)
        assert "ok" in push and "accepted" in push
    finally:
        for fake in (good, refusing, central):
            loop.stop(fake)


def test_status_shows_each_clusters_logs(tmp_path: Path, loop: LokiThread) -> None:
    src = loop.start(FakeLoki())
    central = loop.start(FakeLoki(auth_enabled=True))
    try:
        seed(src, {"job": "app"}, 50, span=60.0)
        clusters = [loki_cluster("alpha", src, ['{job="app"}'])]
        cfg = write_config(
            tmp_path / "observe.yaml", logs_config(tmp_path / "data", clusters, central.push_url)
        )
        proc = start_collector(cfg)
        try:
            doc = wait_until(
                lambda: (d := proc.status())["clusters"]["alpha"]["loki"]["last_finished"] and d,
                20,
                message="a finished logs cycle",
            )
            loki = doc["clusters"]["alpha"]["loki"]
            assert loki["up"] is True and loki["lag_seconds"] is not None
            assert doc["logs_sink"]["kind"] == "loki_push"
            assert "alpha/logs" in doc["queues"]
        finally:
            assert proc.terminate() == 0
    finally:
        for fake in (src, central):
            loop.stop(fake)
