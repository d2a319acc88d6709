"""The failover report's arithmetic on hand-built vectors: the corners of the generated N-1 alert
(pods not Pending/Running, a cluster with no requests, over-commitment clamped to zero free, pools by
label, a cluster alone in its pool, headroom), and `promtool test rules` evaluating the generated alert's
expression on the very same series, which must give exactly the pairs the report calls short.
Plus the renderers (JSON, CSV, PNG) and where the centre's query API is found."""

from __future__ import annotations

import json
import math
import struct
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from observe.analysis.failover import failover_report
from observe.analysis.plot import figure_size_px, write_plot
from observe.analysis.render import to_csv, to_json, to_table
from observe.analysis.sources import AnalysisError, Inputs, centre_client
from observe.config import Config, parse_config
from observe.generate.rules import render_rules
from tests.servers import require_binary

Series = tuple[str, dict[str, str], float]


def pod(cluster: str, name: str, phase: str, cpu: float, memory: float = 0.0) -> list[Series]:
    p = {"cluster": cluster, "namespace": "shop", "pod": name}
    out: list[Series] = [
        ("kube_pod_status_phase", {**p, "phase": ph}, float(ph == phase))
        for ph in ("Pending", "Running", "Succeeded")
    ]
    out.append(("kube_pod_container_resource_requests", {**p, "container": "c", "resource": "cpu"}, cpu))
    if memory:
        out.append(
            ("kube_pod_container_resource_requests", {**p, "container": "c", "resource": "memory"}, memory)
        )
    return out


def node(cluster: str, cpu: float, memory: float) -> list[Series]:
    n = {"cluster": cluster, "node": f"{cluster}-0"}
    return [
        ("kube_node_status_allocatable", {**n, "resource": "cpu"}, cpu),
        ("kube_node_status_allocatable", {**n, "resource": "memory"}, memory),
        ("kube_node_status_allocatable", {**n, "resource": "pods"}, 110.0),  # not counted
    ]


# prod: a (5 live cpu of 10: p2 Succeeded does not count, p3 Pending does), b (6 of 8), c (no pods: no
# requests, so no free either, whatever its allocatable), e (over-committed: 3 of 2, free clamped to 0);
# dev: d alone. Memory: every prod cluster but c requests 10 of 100.
CORNERS: list[Series] = [
    *node("a", 10, 100), *pod("a", "p1", "Running", 4, 10), *pod("a", "p2", "Succeeded", 3), *pod("a", "p3", "Pending", 1),
    *node("b", 8, 100), *pod("b", "p1", "Running", 6, 10),
    *node("c", 4, 100),
    *node("e", 2, 100), *pod("e", "p1", "Running", 3, 10),
    *node("d", 4, 100), *pod("d", "p1", "Running", 1, 10),
]  # fmt: skip


def config(alerts: dict[str, Any], names: tuple[str, ...] = ("a", "b", "c", "d", "e"), **top: Any) -> Config:
    env = {"d": "dev"}
    return parse_config(
        {
            "clusters": [
                {"name": n, "labels": {"env": env.get(n, "prod")}, "prometheus": {"url": f"http://{n}:9090"}}
                for n in names
            ],
            "alerts": alerts,
            **top,
        }
    )


def inputs(series: list[Series], at: float = 1_700_000_000.0, label: str = "cluster") -> Inputs:
    def frame(metric: str) -> pd.DataFrame:
        rows = [
            {**{label if k == "cluster" else k: v for k, v in lab.items()}, "value": val}
            for m, lab, val in series
            if m == metric
        ]
        return pd.DataFrame(rows).fillna("") if rows else pd.DataFrame({"value": []})

    return Inputs(
        at=at,
        source="test",
        requests=frame("kube_pod_container_resource_requests"),
        phases=frame("kube_pod_status_phase"),
        allocatable=frame("kube_node_status_allocatable"),
        traffic=frame("istio"),
    )


def rows(cfg: Config, series: list[Series]) -> dict[tuple[str, str], dict[str, Any]]:
    report = failover_report(cfg, inputs(series))
    return {(r["cluster"], r["resource"]): r for r in report.rows.to_dict("records")}


def test_the_corners_of_the_alert() -> None:
    got = rows(config({"failover_pool_labels": ["env"], "failover_headroom": 1.5}), CORNERS)
    a, b, c, d, e = (got[n, "cpu"] for n in "abcde")
    assert (a["requests"], a["allocatable"], a["free"]) == (5, 10, 5)  # Running 4 + Pending 1
    assert (b["free"], e["free"]) == (2, 0)  # e is over-committed: clamped
    assert math.isnan(c["free"]) and math.isnan(c["requests"]) and c["status"] == "no data"
    assert (a["peers"], a["peers_free"], a["needed"], a["status"]) == (
        "b,c,e",
        2,
        7.5,
        "short",
    )  # c adds nothing
    assert (b["peers_free"], b["needed"], b["status"]) == (5, 9, "short")
    assert (e["peers_free"], e["needed"], e["status"], e["left"]) == (7, 4.5, "ok", 2.5)
    assert (d["pool"], d["peers"], d["status"]) == ("", "", "no pool") and math.isnan(d["peers_free"])
    assert a["pool"] == "env=prod"
    for n in "abe":
        assert got[n, "memory"]["status"] == "ok" and got[n, "memory"]["peers_free"] == 180


def test_no_peer_reporting_is_zero_free_not_no_data() -> None:
    """`or on (cluster, resource) requests * 0`: peers that report no free capacity are none."""
    got = rows(config({}, names=("a", "c")), [s for s in CORNERS if s[1]["cluster"] in ("a", "c")])
    assert (got["a", "cpu"]["peers_free"], got["a", "cpu"]["status"]) == (0, "short")


def test_another_cluster_label() -> None:
    cfg = config({"failover_pool_labels": ["env"], "failover_headroom": 1.5}, cluster_label="k8s_cluster")
    report = failover_report(cfg, inputs(CORNERS, label="k8s_cluster"))
    assert sorted(report.short()) == [("a", "cpu"), ("b", "cpu")]


def test_absent_metrics_name_what_is_needed() -> None:
    cfg = config({})
    no_nodes = [s for s in CORNERS if s[0] != "kube_node_status_allocatable"]
    for series in ([], no_nodes, [s for s in CORNERS if s[0] != "kube_pod_status_phase"]):
        with pytest.raises(AnalysisError) as err:
            failover_report(cfg, inputs(series))
        for metric in (
            "kube_pod_container_resource_requests",
            "kube_pod_status_phase",
            "kube_node_status_allocatable",
        ):
            assert metric in str(err.value)
    other = [(m, {**lab, "cluster": "elsewhere"}, v) for m, lab, v in CORNERS]
    with pytest.raises(AnalysisError, match="elsewhere"):  # says which clusters it did see
        failover_report(cfg, inputs(other))


@pytest.mark.real_server
@pytest.mark.parametrize(
    ("alerts", "series", "short"),
    [
        ({"failover_pool_labels": ["env"], "failover_headroom": 1.5}, CORNERS, [("a", "cpu"), ("b", "cpu")]),
        # headroom 1, one pool of five: a needs 5 and its peers have exactly 5 free (b 2, d 3): not short
        ({}, CORNERS, []),
        # two clusters: a has 5 free for b's 6; b's second node gives it 92 free for a's 5
        ({}, [s for s in CORNERS if s[1]["cluster"] in ("a", "b")] + node("b", 90, 100), [("b", "cpu")]),
    ],
    ids=["pools-headroom", "one-pool-tie", "two"],
)
def test_promtool_evaluates_the_generated_alert_to_what_the_report_says(
    tmp_path: Path, alerts: dict[str, Any], series: list[Series], short: list[tuple[str, str]]
) -> None:
    promtool = require_binary("promtool")
    # Duplicated node rows (the "roomy" case adds a second node to b) need distinct names.
    series = [
        (m, {**lab, "node": f"{lab['node']}-{i}"} if "node" in lab else lab, v)
        for i, (m, lab, v) in enumerate(series)
    ]
    cfg = config({**alerts, "evaluation_interval": "1m"})
    report = failover_report(cfg, inputs(series))
    assert report.short() == short
    for rel, text in render_rules(cfg).items():
        if rel.startswith("prometheus/"):
            (tmp_path / Path(rel).name).write_text(text)
    expr = next(
        rule["expr"]
        for path in tmp_path.glob("*.yaml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "FleetFailoverCapacityInsufficient"
    )
    expected = [
        {
            "labels": f'{{cluster="{c}", resource="{r}"}}',
            "value": float(report.rows.set_index(["cluster", "resource"]).loc[(c, r), "needed"]),
        }
        for c, r in report.short()
    ]
    test = {
        "rule_files": sorted(p.name for p in tmp_path.glob("*.yaml")),
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": m + "{" + ", ".join(f'{k}="{v}"' for k, v in lab.items()) + "}",
                        "values": f"{v:g}x10",
                    }
                    for m, lab, v in series
                ],
                "promql_expr_test": [{"expr": expr, "eval_time": "5m", "exp_samples": expected}],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    done = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_renderers(tmp_path: Path) -> None:
    report = failover_report(
        config({"failover_pool_labels": ["env"], "failover_headroom": 1.5}), inputs(CORNERS)
    )
    doc = json.loads(to_json(report))  # strict JSON: NaN and infinity are null
    assert doc["short"] == [{"cluster": "a", "resource": "cpu"}, {"cluster": "b", "resource": "cpu"}]
    assert doc["units"] == {"cpu": "cores", "memory": "bytes"}
    c = next(r for r in doc["rows"] if r["cluster"] == "c" and r["resource"] == "cpu")
    assert c["requests"] is None and c["status"] == "no data"
    assert doc["worst"] == {"cluster": "a", "resource": "cpu"}  # 2 free for 7.5 needed: 27%
    lines = to_csv(report).splitlines()
    assert len(lines) == 1 + 2 * 5 and lines[1].startswith("a,env=prod,cpu,5.0,10.0,5.0,")
    assert to_table(report).row_count == 10
    png = tmp_path / "f.png"
    assert write_plot(report, png) == figure_size_px(5)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I4sII", data[8:24]) == (13, b"IHDR", *figure_size_px(5))


def test_the_centre_is_found_from_remote_write() -> None:
    def client(rw: dict[str, Any]) -> tuple[str, dict[str, str]]:
        c = centre_client(config({}, central={"remote_write": rw}))
        return c.url, dict(c.headers)

    assert client({"url": "http://prom:9090/api/v1/write"}) == ("http://prom:9090", {})
    assert (
        client({"url": "https://vm:8428/prefix/api/v1/write", "kind": "victoriametrics"})[0]
        == "https://vm:8428/prefix"
    )
    assert client({"url": "http://mimir/api/v1/push", "tenant": "t1"}) == (
        "http://mimir/prometheus", {"X-Scope-OrgID": "t1"}
    )  # fmt: skip
    with pytest.raises(AnalysisError, match="--query-url"):
        client({"url": "http://thanos-receive:19291/api/v1/receive"})
    with pytest.raises(AnalysisError, match=r"no central\.remote_write"):
        centre_client(config({}))
    assert centre_client(config({}), "http://query:9090").url == "http://query:9090"
