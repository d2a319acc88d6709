"""`observe demo` as a user runs it: a subprocess, its tables on stdout, and the Parquet it leaves behind.

The demo serves simulated clusters (a simulated Prometheus and a simulated Loki each, not the real
servers) and runs the real collector; these tests check the printed summary against what is actually on
disk, and, with `--central prometheus`, that the real Prometheus and Alertmanager saw the outage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from observe.sinks.local_store import read_logs, read_metrics
from tests.servers import require_binary

CLUSTERS = ("prod-eu-1", "prod-us-1", "edge-onprem-1")
VICTIM = "edge-onprem-1"
# cluster, outage, cycles, samples produced, stored, stale, lost, log window, entries produced, stored, lost, dup
COLUMNS = 12


def run_demo(data_dir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "observe", "demo", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    data_dir = tmp_path_factory.mktemp("demo")
    return run_demo(data_dir, "--duration", "20", timeout=180), data_dir


@pytest.fixture(scope="module")
def central_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    require_binary("prometheus")
    if shutil.which("prometheus-alertmanager") is None:
        require_binary("alertmanager")
    data_dir = tmp_path_factory.mktemp("central-demo")
    return run_demo(data_dir, "--duration", "40", "--central", "prometheus", timeout=240), data_dir


def rows(stdout: str, width: int = COLUMNS) -> dict[str, list[str]]:
    """The summary table's rows (the first table with `width` cells whose first cell is a cluster)."""
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line)[1:-1]]
        if len(cells) == width and cells[0] in CLUSTERS:
            out[cells[0]] = cells
    return out


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def assert_nothing_lost(proc: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "OK: nothing lost, nothing duplicated" in proc.stdout
    table = rows(proc.stdout)
    assert set(table) == set(CLUSTERS), proc.stdout
    for name, cells in table.items():
        _, outage, cycles, produced, stored, _, lost, _, entries, entries_stored, entries_lost, dup = cells
        assert number(cycles) > 5
        assert number(produced) == number(stored) > 1000 and lost == "0"  # every sample of every cycle
        assert number(entries) == number(entries_stored) > 50 and entries_lost == "0" and dup == "0"
        assert (outage == "-") == (name != VICTIM)
    assert re.fullmatch(r"[1-9]\d*/[1-9]\d* down, back", table[VICTIM][1])  # both signals down, then back
    assert number(table[VICTIM][2]) < number(table["prod-eu-1"][2])  # it missed cycles while down
    for event in (f"{VICTIM} degrades", f"{VICTIM} is taken down", f"{VICTIM} is back", "time is up"):
        assert event in proc.stdout
    return table


def test_the_demo_loses_nothing_through_an_outage(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = demo
    assert_nothing_lost(proc)
    assert "What the simulation produced, and what arrived in the embedded store" in proc.stdout
    for header in ("state", "series", "samples/s", "entries/s", "lag", "queued"):  # the live view
        assert header in proc.stdout


def test_the_table_matches_the_parquet_files(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, data_dir = demo
    table = assert_nothing_lost(proc)
    store = data_dir / "store"
    metrics, logs = read_metrics(store), read_logs(store)
    assert set(metrics["cluster"]) == {*CLUSTERS, "observe-demo"}
    assert set(logs["cluster"]) == set(CLUSTERS)
    for name in CLUSTERS:
        mine = metrics[metrics["cluster"] == name]
        fresh = mine[~mine["stale"]]
        assert len(fresh) == number(table[name][4])  # every stored sample is one of the covered cycles'
        assert number(table[name][5]) == int(mine["stale"].sum())
        assert fresh["labels"].str.contains(f'"cluster":"{name}"', regex=False).all()
        entries = logs[logs["cluster"] == name]
        assert len(entries) == number(table[name][9])
        assert {json.loads(labels)["cluster"] for labels in entries["labels"]} == {name}
        assert not entries.duplicated(["timestamp", "labels", "line"]).any()
        assert entries["timestamp"].is_monotonic_increasing
    # prod-us-1's Prometheus has its own `cluster` external label: kept as exported_cluster
    us = metrics[metrics["cluster"] == "prod-us-1"]
    assert us["labels"].str.contains('"exported_cluster":"gke_acme_us-east1_prod"', regex=False).all()
    # the victim degraded (its NotReady node's series vanished: staleness markers), its containers crash-
    # looped (the waiting reason, and the crash in their logs), then it went down and came back
    edge = metrics[metrics["cluster"] == VICTIM]
    assert (edge[edge["stale"]]["value"].isna()).all()
    assert len(edge[edge["stale"] & edge["metric"].str.startswith("node_")]) > 0
    assert len(edge[(edge["metric"] == "kube_pod_container_status_waiting_reason") & ~edge["stale"]]) > 0
    lines = logs[logs["cluster"] == VICTIM]["line"]
    assert lines.str.contains("level=fatal", regex=False).any()
    assert not logs[logs["cluster"] != VICTIM]["line"].str.contains("level=fatal", regex=False).any()
    levels = set(logs["line"].str.extract(r"level=(\w+)")[0])
    assert {"debug", "info", "warn", "error", "fatal"} <= levels
    assert any(json.loads(m).get("trace_id") for m in logs["metadata"])  # structured metadata kept apart
    assert str(store / "logs") in proc.stdout and "pd.read_parquet(" in proc.stdout


def test_dashboards_and_rules_are_generated(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, data_dir = demo
    assert proc.returncode == 0, proc.stderr
    for sub in ("dashboards", "rules"):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"{sub}:"))
        assert line.startswith(f"{sub}: wrote "), line
        assert any((data_dir / sub).rglob("*")), f"{sub} generator wrote nothing"


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc = run_demo(tmp_path, "--duration", "2", timeout=60)
    assert proc.returncode == 2 and "--duration >= 8 intervals" in proc.stdout


@pytest.mark.real_server
def test_with_a_real_prometheus_the_outage_alerts_for_that_cluster_only(
    central_demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, data_dir = central_demo
    assert_nothing_lost(proc)
    assert "arrived in the central Prometheus (metrics) and the embedded store (logs)" in proc.stdout
    alerts = [
        [c.strip() for c in re.split(r"[│|┃]", line)[1:-1]]
        for line in proc.stdout.split("Alerts the central Prometheus fired")[1].splitlines()
        if line.startswith("│")
    ]
    assert alerts, proc.stdout
    assert {cells[1] for cells in alerts} == {VICTIM}, alerts  # nothing fired for the clusters that stayed up
    missing = next(cells for cells in alerts if cells[0] == "FleetClusterTelemetryMissing")
    _, _, pending, firing, in_am, resolved = missing
    t = [int(c.removeprefix("t=").removesuffix("s")) for c in (pending, firing, in_am, resolved)]
    assert t[0] <= t[1] <= t[2] < t[3], missing  # pending, firing, at the Alertmanager, then resolved
    assert "FleetClusterTelemetryMissing{cluster=edge-onprem-1} firing" in proc.stdout
    assert "FleetClusterTelemetryMissing{cluster=edge-onprem-1} resolved" in proc.stdout
    assert (data_dir / "centre" / "prometheus.yml").is_file()
