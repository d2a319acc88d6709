"""The fleet and collector dashboards return data for every cluster, against real servers.

Three simulated clusters (observe/demo/fleet.py: kube-state-metrics, node-exporter, API server, Istio,
Velero, Argo CD and k8gb series) are each scraped by a real "cluster" Prometheus; the real `observe run`
collector reads them (remote-read) into a real central Prometheus (remote-write receiver) that also evaluates the
recording rules `observe rules` generates. Then every PromQL query of the fleet overview and the
collector dashboard, with Grafana's variables substituted, runs against the central query API.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from observe.config import Config, parse_config
from observe.demo.fleet import SimulatedCluster
from observe.demo.serve import SimulatedPrometheus
from observe.generate.dashboards import build_dashboards
from observe.generate.links import DASHBOARD_UIDS
from observe.generate.rules import write_rules
from tests.collector_proc import start_collector, write_config
from tests.dashboard_queries import expressions, substitute
from tests.servers import Server, get_json, prom_query, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

CLUSTERS = ("prod-eu-1", "prod-us-1", "edge-onprem-1")
WINDOW = "20s"  # stands in for $__rate_interval: ten collector cycles of 2s

# Panels that are rightly empty for a healthy fleet with no Loki: (dashboard uid, panel title, refId or "*").
MAY_BE_EMPTY = {
    ("observe-fleet", "Firing alerts by cluster and severity", "*"): "nothing fires in a healthy fleet",
    ("observe-fleet", "Log volume", "*"): "recorded by the Loki ruler; no Loki here",
    ("observe-fleet", "Error log rate", "*"): "recorded by the Loki ruler; no Loki here",
    ("observe-collector", "Per cluster", "C"): "Loki source up: no Loki source configured",
    ("observe-collector", "Per cluster", "D"): "Loki data age: no Loki source configured",
    ("observe-collector", "Pull failures by reason", "*"): "`> 0`: no pull fails",
    ("observe-collector", "Send failures by reason", "*"): "`> 0`: no send fails",
    ("observe-collector", "Dropped by reason", "*"): "`> 0`: nothing is dropped",
    ("observe-collector", "Label collisions", "*"): "`> 0`: the sources carry no cluster label",
    ("observe-collector", "Log entries pulled per second", "*"): "no Loki source configured",
    ("observe-collector", "Log entries sent per second", "*"): "no Loki source configured",
    ("observe-collector", "Log read lag", "*"): "no Loki source configured",
    ("observe-collector", "Chunks skipped, gap skipped", "A"): "`rate()` of chunks skipped: no native histograms here",
}


class _Loop:
    """An event loop in a daemon thread, for the simulated clusters' aiohttp servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Config, Server]]:
    tmp = tmp_path_factory.mktemp("dashboards-e2e")
    loop = _Loop()
    sims = [SimulatedPrometheus(SimulatedCluster(n, peers=CLUSTERS)) for n in CLUSTERS]
    servers: list[Server] = []
    collector = None
    try:
        for sim in sims:
            loop.run(sim.start())
        for name, sim in zip(CLUSTERS, sims, strict=True):
            servers.append(
                start_prometheus(
                    tmp / name,
                    "global: {scrape_interval: 1s}\nscrape_configs:\n"
                    "  - job_name: sim\n    honor_labels: true\n"
                    f"    static_configs: [{{targets: ['{sim.instance}']}}]\n",
                    name=name,
                )
            )
        raw: dict[str, Any] = {
            "interval": "2s",
            "data_dir": str(tmp / "data"),
            "self_cluster": "mgmt-1",
            "alerts": {"evaluation_interval": "1s"},  # rule groups carry it; 1m would leave them unevaluated
            # remote-read (the default), close behind the sources so the centre fills within the test
            "remote_read": {"safety_lag": "1s", "start_from": "30s", "min_window": "0s"},  # every cycle reads
            "clusters": [
                {"name": n, "labels": {"env": "prod"}, "prometheus": {"url": s.url, "timeout": "1500ms"}}
                for n, s in zip(CLUSTERS, servers, strict=True)
            ],
        }
        central = start_prometheus(
            tmp / "central", "global: {}\n", remote_write_receiver=True, name="central"
        )
        servers.append(central)
        raw["central"] = {"remote_write": {"url": f"{central.url}/api/v1/write", "kind": "prometheus"}}
        cfg = parse_config(raw)
        # The central Prometheus evaluates the generated recording rules, as the central ruler would.
        write_rules(cfg, tmp / "rules")
        (tmp / "central" / "prometheus.yml").write_text(
            f"global: {{evaluation_interval: 1s}}\nrule_files: ['{tmp / 'rules' / 'prometheus'}/*.yaml']\n"
        )
        _reload(central)
        for s in servers[:-1]:
            wait_until(lambda s=s: prom_query(s, 'up{job="sim"} == 1'), 20, message=f"{s.name} to scrape")
        collector = start_collector(write_config(tmp / "observe.yaml", raw), config_dict=raw)
        q = f"count by (cluster) (rate(node_cpu_seconds_total[{WINDOW}]))"
        wait_until(lambda: len(prom_query(central, q)) == len(CLUSTERS), 40, 0.5, "fleet data at the centre")
        q = "count by (cluster) (rate(observe_samples_sent_total[20s]))"
        wait_until(
            lambda: len(prom_query(central, q)) >= len(CLUSTERS), 30, 0.5, "self-metrics at the centre"
        )
        # ...and two scrapes' worth of the send histogram, which the first shipment of self-metrics may precede
        sends = f"sum by (sink) (rate(observe_send_duration_seconds_count[{WINDOW}]))"
        wait_until(lambda: prom_query(central, sends), 30, 0.5, "send durations at the centre")
        try:
            wait_until(
                lambda: len(prom_query(central, "cluster:kube_pod_resource_requests:sum")) >= 3, 30, 0.5
            )
        except AssertionError as exc:
            raise AssertionError(f"no recording rule results at the centre: {_rule_errors(central)}") from exc
        yield cfg, central
    finally:
        if collector is not None:
            collector.terminate()
        for s in servers:
            s.stop()
        for sim in sims:
            loop.run(sim.stop())
        loop.close()


def _reload(server: Server) -> None:
    req = urllib.request.Request(f"{server.url}/-/reload", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    rules = get_json(f"{server.url}/api/v1/rules")["data"]["groups"]
    assert rules, "the central Prometheus loaded no rule group"


def _rule_errors(server: Server) -> list[str]:
    groups = get_json(f"{server.url}/api/v1/rules")["data"]["groups"]
    return [f"{r['name']}: {r['health']} {r.get('lastError')}" for g in groups for r in g["rules"]][:8]


def _query(central: Server, expr: str) -> list[dict[str, Any]]:
    body = get_json(f"{central.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.mark.parametrize("uid", [DASHBOARD_UIDS["fleet"], DASHBOARD_UIDS["collector"]])
def test_panels_return_data_for_every_cluster(fleet: tuple[Config, Server], uid: str) -> None:
    cfg, central = fleet
    dash = build_dashboards(cfg)[uid]
    checked, empty = 0, []
    for e in expressions(dash):
        if e.language != "promql" or e.where.startswith("variable"):
            continue
        _, panel_id, rest = e.where.split(" ", 2)
        title, ref = rest.rsplit(" ", 1)
        title = title.strip("'")
        expr = substitute(e.text, cfg).replace("[2m]", f"[{WINDOW}]")  # $__rate_interval -> our window
        result = _query(central, expr)
        allowed = MAY_BE_EMPTY.get((uid, title, ref)) or MAY_BE_EMPTY.get((uid, title, "*"))
        if not result:
            if allowed is None:
                empty.append(f"panel {panel_id} {title!r} {ref}: {e.text}")
            continue
        checked += 1
        clusters = {r["metric"].get("cluster") for r in result} - {None}
        if clusters:  # a per-cluster panel (a fleet-wide total has no cluster label)
            missing = set(CLUSTERS) - clusters
            assert not missing, (
                f"{uid} panel {panel_id} {title!r} {ref}: no data for {sorted(missing)}: {expr}"
            )
    assert not empty, "queries with no data at the centre:\n" + "\n".join(empty)
    assert checked >= 15, checked
