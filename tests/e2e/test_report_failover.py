"""`observe report failover` end to end: simulated clusters pulled by the real collector (`observe run
--once`, federation) into a real central Prometheus, and into the embedded store; the report read back
from each, as a user runs it (a subprocess).

For a fleet with room to spare and one without, it checks that
- the numbers equal a hand computation from the simulation's known pod requests and node allocatable;
- the generated N-1 alert's own expression, evaluated by the real Prometheus over the generated recording
  rules on the same data, fires for exactly the (cluster, resource) pairs the report calls short, and its
  recorded peers' free capacity equals the report's;
- `--plot` writes a real PNG of the size the report says.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from observe.analysis.plot import figure_size_px
from observe.config import parse_config
from observe.demo.fleet import SimulatedCluster
from observe.generate.rules import recording as R
from observe.generate.rules import render_rules, write_rules
from tests.collector_proc import run_once, write_config
from tests.fleet_fixtures import ThreadedFleet
from tests.servers import Server, free_port, prom_query, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

RESOURCES = ("cpu", "memory")
# kube-state-metrics' allocatable in the simulation: capacity minus a reserve (observe/demo/kubernetes.py)
CPU_RESERVE = 0.08
MEMORY_RESERVE = int(0.08 * 10 * 2**30)


@dataclass(frozen=True)
class Fleet:
    name: str
    clusters: list[tuple[str, dict[str, str], dict[str, int]]]  # name, static labels, SimulatedCluster sizes
    alerts: dict[str, Any]


# Big nodes, few pods: every cluster's peers can take it, with 1.5x headroom.
ROOMY = Fleet(
    "roomy",
    [
        (n, {"env": "prod"}, {"nodes": 6, "cpus_per_node": 8, "namespaces": 2, "pods_per_namespace": 6})
        for n in ("eu-1", "eu-2", "us-1")
    ],
    {"failover_headroom": 1.5},
)
# Pools by env: prod is one full cluster and two small ones (nobody can take the big one, and the big one,
# over-committed, has no free capacity for the small ones); dev has one cluster, alone: no verdict.
TIGHT = Fleet(
    "tight",
    [
        ("big", {"env": "prod"}, {"nodes": 3, "cpus_per_node": 4, "namespaces": 8, "pods_per_namespace": 6}),
        (
            "small-1",
            {"env": "prod"},
            {"nodes": 2, "cpus_per_node": 4, "namespaces": 1, "pods_per_namespace": 3},
        ),
        (
            "small-2",
            {"env": "prod"},
            {"nodes": 2, "cpus_per_node": 4, "namespaces": 1, "pods_per_namespace": 3},
        ),
        ("lab", {"env": "dev"}, {"nodes": 1, "cpus_per_node": 4, "namespaces": 1, "pods_per_namespace": 3}),
    ],
    {"failover_pool_labels": ["env"]},
)


@dataclass
class Run:
    fleet: Fleet
    sims: dict[str, SimulatedCluster]
    centre: Server
    centre_config: Path
    store_config: Path
    tmp: Path


def observe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def config(fleet: Fleet, sim_urls: dict[str, str], tmp: Path, centre: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "interval": "5s",
        "data_dir": str(tmp / ("centre-data" if centre else "store-data")),
        "listen": f"127.0.0.1:{free_port()}",
        "self_cluster": "mgmt",
        "clusters": [
            {"name": n, "labels": labels, "prometheus": {"url": sim_urls[n], "protocol": "federate"}}
            for n, labels, _ in fleet.clusters
        ],
        "alerts": {"evaluation_interval": "1s", **fleet.alerts},
    }
    if centre is not None:
        cfg["central"] = {"remote_write": {"url": centre + "/api/v1/write"}}
    return cfg


@pytest.fixture(scope="module", params=[ROOMY, TIGHT], ids=lambda f: f.name)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    fleet: Fleet = request.param
    tmp = tmp_path_factory.mktemp(fleet.name)
    names = [n for n, _, _ in fleet.clusters]
    sims = {
        n: SimulatedCluster(n, seed=i, peers=[p for p in names if p != n], **sizes)  # type: ignore[arg-type]
        for i, (n, _, sizes) in enumerate(fleet.clusters)
    }
    with ThreadedFleet(list(sims.values())) as served:
        urls = {n: served.url(n) for n in names}
        # The generated rules for this fleet, as `observe rules` writes them, evaluated every second.
        rules = tmp / "rules"
        write_rules(parse_config(config(fleet, urls, tmp, "http://127.0.0.1:1")), rules)
        rule_files = "".join(f"  - {p}\n" for p in sorted((rules / "prometheus").glob("*.yaml")))
        centre = start_prometheus(
            tmp / "centre",
            f"global:\n  evaluation_interval: 1s\nrule_files:\n{rule_files}",
            remote_write_receiver=True,
            name="centre",
        )
        try:
            centre_config = write_config(tmp / "centre.yaml", config(fleet, urls, tmp, centre.url))
            store_config = write_config(tmp / "store.yaml", config(fleet, urls, tmp, None))
            # Two cycles a few seconds apart: Istio's counters need two samples for a rate.
            for _ in range(2):
                for cfg in (centre_config, store_config):
                    done = run_once(cfg)
                    assert done.returncode == 0, done.stdout + done.stderr
                time.sleep(2)
            yield Run(fleet, sims, centre, centre_config, store_config, tmp)
        finally:
            centre.stop()


# -- the hand computation ----------------------------------------------------------------------------


def by_hand(run: Run) -> dict[tuple[str, str], dict[str, Any]]:
    """What the report must say, from the simulation's topology: every pod is Running and requests its
    container's cpu and memory; a node's allocatable is its capacity less kube-state-metrics' reserve."""
    requests, allocatable = {}, {}
    for name, sim in run.sims.items():
        pods = [p for d in sim.topology.deployments for p in d.pods]
        requests[name, "cpu"] = sum(p.cpu for p in pods)
        requests[name, "memory"] = float(sum(p.memory for p in pods))
        allocatable[name, "cpu"] = sum(n.cpus - CPU_RESERVE for n in sim.topology.nodes)
        allocatable[name, "memory"] = float(sum(n.memory - MEMORY_RESERVE for n in sim.topology.nodes))
    free = {k: max(allocatable[k] - requests[k], 0.0) for k in requests}
    pool_keys = run.fleet.alerts.get("failover_pool_labels", [])
    headroom = run.fleet.alerts.get("failover_headroom", 1.0)
    pool_of = {n: tuple(labels[k] for k in pool_keys) for n, labels, _ in run.fleet.clusters}
    out = {}
    for name in run.sims:
        peers = [p for p in run.sims if p != name and pool_of[p] == pool_of[name]]
        for r in RESOURCES:
            need = requests[name, r] * headroom
            peers_free = sum(free[p, r] for p in peers) if peers else math.nan
            status = "no pool" if not peers else ("short" if need > peers_free else "ok")
            out[name, r] = {
                "requests": requests[name, r],
                "allocatable": allocatable[name, r],
                "peers_free": None if not peers else peers_free,
                "needed": need,
                "status": status,
                "peers": peers,
            }
    return out


def assert_matches_hand(report: dict[str, Any], run: Run) -> None:
    expected = by_hand(run)
    rows = {(r["cluster"], r["resource"]): r for r in report["rows"]}
    assert set(rows) == set(expected)
    for key, want in expected.items():
        got = rows[key]
        assert got["status"] == want["status"], key
        assert got["peers"] == want["peers"], key
        for col in ("requests", "allocatable", "needed"):
            assert got[col] == pytest.approx(want[col], rel=1e-9), (key, col)
        if want["peers_free"] is None:
            assert got["peers_free"] is None, key
        else:
            assert got["peers_free"] == pytest.approx(want["peers_free"], rel=1e-9, abs=1e-9), key
    short = {k for k, w in expected.items() if w["status"] == "short"}
    # Not vacuous: the roomy fleet absorbs every loss, the tight one does not.
    assert (
        (short == set()) if run.fleet is ROOMY else (("big", "cpu") in short and ("lab", "cpu") not in short)
    )


def report_json(*args: str) -> dict[str, Any]:
    done = observe("report", "failover", *args, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def alert_expr(cfg_path: Path) -> str:
    """FleetFailoverCapacityInsufficient's expression, as generated for this config."""
    cfg = parse_config(yaml.safe_load(cfg_path.read_text()))
    for rel, text in render_rules(cfg).items():
        if rel.startswith("prometheus/"):
            for group in yaml.safe_load(text)["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") == "FleetFailoverCapacityInsufficient":
                        return str(rule["expr"])
    raise AssertionError("the failover alert was not generated")


# -- the tests ----------------------------------------------------------------------------------------


def test_report_from_the_centre_equals_the_hand_computation_and_the_alert(run: Run) -> None:
    names = list(run.sims)
    wait_until(
        lambda: (
            {r["metric"]["cluster"] for r in prom_query(run.centre, R.FAILOVER_PEERS_FREE)}
            >= set(names) - {"lab"}
        ),
        30,
        message="the recording rules to evaluate on the shipped data",
    )
    at = time.time()
    report = report_json(
        "-c", str(run.centre_config), "--at", f"{at:.3f}"
    )  # the query URL derived from remote_write
    assert report["at_unix"] == pytest.approx(at, abs=1e-3)
    assert_matches_hand(report, run)

    fired = {
        (s["metric"]["cluster"], s["metric"]["resource"])
        for s in prom_query(run.centre, alert_expr(run.centre_config), at)
    }
    short = {(s["cluster"], s["resource"]) for s in report["short"]}
    assert fired == short
    recorded = {
        (s["metric"]["cluster"], s["metric"]["resource"]): float(s["value"][1])
        for s in prom_query(run.centre, R.FAILOVER_PEERS_FREE, at)
    }
    mine = {
        (r["cluster"], r["resource"]): r["peers_free"] for r in report["rows"] if r["peers_free"] is not None
    }
    assert set(recorded) == set(mine)
    for key, value in recorded.items():
        assert mine[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key

    # Istio: each cluster's sidecars call their twins in every peer of the simulation.
    for name in names:
        flows = [t for t in report["traffic"] if t["cluster"] == name]
        assert {t["destination"] for t in flows} == {p for p in names if p != name}
        assert sum(t["share"] for t in flows) == pytest.approx(1.0)


def test_report_from_the_store_equals_the_hand_computation(run: Run) -> None:
    report = report_json("-c", str(run.store_config))
    assert report["source"].startswith("store ")
    assert_matches_hand(report, run)
    for name in run.sims:
        assert {t["destination"] for t in report["traffic"] if t["cluster"] == name} == set(run.sims) - {name}


def test_the_table_and_the_png(run: Run) -> None:
    png = run.tmp / "failover.png"
    done = observe("report", "failover", "-c", str(run.store_config), "--plot", str(png))
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    assert "if a cluster fails, can the others absorb its load?" in done.stdout
    assert ("SHORT" in done.stdout) == (run.fleet is TIGHT)
    assert "Worst case: losing" in done.stdout
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind, width, height = struct.unpack(">I4sII", data[8:24])
    assert (length, kind) == (13, b"IHDR")
    assert (width, height) == figure_size_px(len(run.sims))
    assert len(data) > 10_000  # drawn, not blank
    print(f"{png}: {width}x{height}, {len(data)} bytes")


def test_csv_has_a_row_per_cluster_and_resource(run: Run) -> None:
    done = observe("report", "failover", "-c", str(run.store_config), "--format", "csv")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cluster,pool,resource,requests,allocatable,free,")
    assert len(lines) == 1 + 2 * len(run.sims)


def test_absent_metrics_are_a_clear_error_not_a_traceback(run: Run) -> None:
    if run.fleet is not ROOMY:
        pytest.skip("once is enough")
    cfg = yaml.safe_load(run.centre_config.read_text())
    cfg["clusters"] = [{"name": "ghost", "prometheus": {"url": "http://127.0.0.1:1"}}, *cfg["clusters"][:0]]
    cfg["clusters"].append({"name": "ghost-2", "prometheus": {"url": "http://127.0.0.1:2"}})
    path = write_config(run.tmp / "ghost.yaml", cfg)
    done = observe("report", "failover", "-c", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for metric in (
        "kube_pod_container_resource_requests",
        "kube_pod_status_phase",
        "kube_node_status_allocatable",
    ):
        assert metric in done.stderr
    empty = {**cfg, "data_dir": str(run.tmp / "empty")}
    done = observe("report", "failover", "-c", str(write_config(run.tmp / "empty.yaml", empty)), "--store")
    assert done.returncode == 1 and "kube_node_status_allocatable" in done.stderr, done.stderr
