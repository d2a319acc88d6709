"""`observe demo` as a user runs it: a subprocess, its table on stdout, and the Parquet it leaves behind.

The demo serves simulated clusters (not real Prometheus servers) and runs the real collector into the
embedded local store; this test checks the printed summary against what is actually on disk.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from observe.sinks.local_store import read_metrics

CLUSTERS = ("prod-eu-1", "prod-us-1", "edge-onprem-1")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    data_dir = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "observe",
            "demo",
            "--cycles",
            "3",
            "--interval",
            "0.5",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    return proc, data_dir


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line)[1:-1]]
        if cells and cells[0] in (*CLUSTERS, "observe-demo"):
            rows[cells[0]] = cells
    return rows


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_demo_exits_0_and_prints_a_summary_per_cluster(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, data_dir = demo
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "What arrived in the embedded store" in proc.stdout
    for k in (1, 2, 3):
        assert f"cycle {k}/3:" in proc.stdout
    rows = table_rows(proc.stdout)
    assert set(rows) == {*CLUSTERS, "observe-demo"}, proc.stdout
    assert rows["prod-eu-1"][1] == "up" and rows["prod-us-1"][1] == "up"
    assert rows["edge-onprem-1"][1].startswith("down (http_5xx)")  # its Prometheus stopped answering last
    assert str(data_dir / "store" / "metrics") in proc.stdout
    assert "pd.read_parquet(" in proc.stdout


def test_the_table_matches_the_parquet_files(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, data_dir = demo
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    df = read_metrics(data_dir / "store")
    assert set(df["cluster"]) == {*CLUSTERS, "observe-demo"}
    for name in CLUSTERS:
        mine = df[df["cluster"] == name]
        fresh = mine[~mine["stale"]]
        _, _, pulled, series, samples, stale, _ = rows[name]
        assert number(samples) == len(mine)
        assert number(stale) == int(mine["stale"].sum())
        assert number(series) == len(fresh[["metric", "labels"]].drop_duplicates())
        # every stored series carries our cluster label, whatever the source had
        assert fresh["labels"].str.contains(f'"cluster":"{name}"', regex=False).all()
        if name != "edge-onprem-1":
            assert number(pulled) == number(series)
            assert len(mine) == 3 * number(series)  # 3 cycles, one sample per series each
            assert number(stale) == 0
    # prod-us-1's Prometheus has its own `cluster` external label: kept as exported_cluster on every series
    assert number(rows["prod-us-1"][6]) == number(rows["prod-us-1"][3]) > 1000
    assert number(rows["prod-eu-1"][6]) == 0
    # edge-onprem-1 degraded after cycle 1 (its NotReady node's series vanished), then went down:
    # staleness markers for the vanished series, then for every series it still had.
    edge = df[df["cluster"] == "edge-onprem-1"]
    assert edge["stale"].sum() > number(rows["edge-onprem-1"][3]) * 0.9
    vanished = edge[edge["stale"] & edge["metric"].str.startswith("node_")]
    assert len(vanished) > 0
    assert (edge[edge["stale"]]["value"].isna()).all()
    waiting = edge[(edge["metric"] == "kube_pod_container_status_waiting_reason") & ~edge["stale"]]
    assert len(waiting) > 0  # the crash loops arrived


def test_dashboards_and_rules_are_generated_when_the_generators_exist(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, data_dir = demo
    assert proc.returncode == 0, proc.stderr
    for sub, module in (("dashboards", "observe.generate.dashboards"), ("rules", "observe.generate.rules")):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"{sub}:"))
        try:
            __import__(module)
        except ImportError:
            assert "skipped" in line
            continue
        assert line.startswith(f"{sub}: wrote "), line
        assert any((data_dir / sub).rglob("*")), f"{sub} generator wrote nothing"
