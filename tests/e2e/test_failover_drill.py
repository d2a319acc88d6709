"""The failover drill, end to end, on real servers: two simulated clusters each scraped by a real
"cluster" Prometheus, the `observe run` collector pulling both, a central Prometheus receiving
remote-write and evaluating the generated rules (short `for`s from the config), and a real Alertmanager
running the generated routing and inhibition.

Stop one cluster's Prometheus: the cluster-scope alert for exactly that cluster reaches Alertmanager
with its `cluster` label, that cluster's other alerts are inhibited, the other cluster raises nothing.
Start it again: resolved. The measured detection and resolution times are printed (`pytest -s`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from observe.config import parse_config
from observe.generate.rules import write_rules
from tests.collector_proc import CollectorProcess, start_collector, write_config
from tests.fleet_fixtures import FEDERATE, ThreadedFleet, demo_clusters
from tests.servers import (
    Server,
    free_port,
    get_json,
    prom_query,
    start_alertmanager,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.real_server

CLUSTERS = ("alpha", "beta")
SCOPE_CLUSTER = {"FleetClusterUnreachable", "FleetClusterTelemetryMissing"}
# Short `for`s so the drill takes seconds; the arithmetic is the production one.
ALERTS = {
    "evaluation_interval": "1s",
    "cluster_unreachable_for": "3s",
    "cluster_missing_for": "5s",
    "collector_down_for": "5s",
    "telemetry_delay": "2s",
    "telemetry_delayed_for": "1s",
    "apiserver_down_for": "2s",
    "apiserver_selector": 'job=~"kubernetes-.*"',  # the cluster Prometheus' scrape job of the simulated API
    "receiver_url": "http://127.0.0.1:9",  # loopback discard port: notifications go nowhere, never off-host
}


def cluster_prometheus(tmp: Path, fleet: ThreadedFleet, name: str, port: int | None = None) -> Server:
    cfg = "global:\n  scrape_interval: 1s\nscrape_configs:\n" + fleet.scrape_config(name, job="kubernetes")
    return start_prometheus(tmp / name, cfg, name=name, port=port)


def am_alerts(am: Server) -> list[dict[str, Any]]:
    return [a for a in get_json(f"{am.url}/api/v2/alerts") if a["labels"].get("cluster") in CLUSTERS]


def by_cluster(alerts: list[dict[str, Any]], cluster: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["cluster"] == cluster]


def test_failover_drill(tmp_path: Path) -> None:
    with ThreadedFleet(demo_clusters(CLUSTERS)) as fleet:
        proms = {name: cluster_prometheus(tmp_path, fleet, name) for name in CLUSTERS}
        servers: list[Server] = list(proms.values())
        collector: CollectorProcess | None = None
        try:
            cfg_dict: dict[str, Any] = {
                "interval": "1s",
                "data_dir": str(tmp_path / "observe-data"),
                "listen": f"127.0.0.1:{free_port()}",
                "self_cluster": "mgmt",
                "clusters": [
                    {"name": n, "labels": {"env": "drill"}, "prometheus": {"url": p.url, "timeout": "800ms", **FEDERATE}}
                    for n, p in proms.items()
                ],
                "central": {"remote_write": {"url": "http://127.0.0.1:1/api/v1/write"}},
                "alerts": ALERTS,
                "shutdown_timeout": "5s",
            }
            # The generated rules and Alertmanager config for this fleet, as `observe rules` writes them.
            rules = tmp_path / "rules"
            write_rules(parse_config(cfg_dict), rules)
            am = start_alertmanager(
                tmp_path / "am", (rules / "alertmanager" / "alertmanager.yaml").read_text()
            )
            servers.append(am)
            rule_files = "".join(f"  - {p}\n" for p in sorted((rules / "prometheus").glob("*.yaml")))
            centre = start_prometheus(
                tmp_path / "centre",
                "global:\n  evaluation_interval: 1s\n"
                f"rule_files:\n{rule_files}"
                "alerting:\n  alertmanagers:\n"
                f"    - static_configs: [{{targets: ['127.0.0.1:{am.port}']}}]\n",
                remote_write_receiver=True,
                name="centre",
                extra_args=["--rules.alert.resend-delay=1s"],
            )
            servers.append(centre)
            cfg_dict["central"]["remote_write"]["url"] = centre.url + "/api/v1/write"
            collector = start_collector(write_config(tmp_path / "observe.yaml", cfg_dict))

            # Baseline: both clusters arrive, the rules evaluate, and no cluster alert fires.
            for name in CLUSTERS:
                query = f'up{{cluster="{name}"}}'
                wait_until(lambda q=query: prom_query(centre, q), 30, message=f"{name} at the centre")  # type: ignore[misc]
            wait_until(
                lambda: prom_query(centre, 'ALERTS{alertname="Watchdog"}'), 20, message="rules evaluating"
            )
            time.sleep(6)  # longer than every `for` above: anything wrongly firing would now be firing
            baseline = prom_query(centre, 'ALERTS{alertstate="firing", cluster=~"alpha|beta"}')
            assert baseline == [], [r["metric"] for r in baseline]

            # The drill: alpha's Prometheus goes away.
            port = proms["alpha"].port
            proms["alpha"].stop()
            t0 = time.monotonic()
            down = wait_until(
                lambda: [
                    a for a in by_cluster(am_alerts(am), "alpha") if a["labels"]["alertname"] in SCOPE_CLUSTER
                ],
                60,
                interval=0.2,
                message="a cluster-scope alert for alpha at Alertmanager",
            )
            detected = time.monotonic() - t0
            assert all(
                a["labels"]["alert_scope"] == "cluster" and a["status"]["state"] == "active" for a in down
            )

            # alpha's symptoms reach Alertmanager too, and are inhibited by the cluster-scope alert.
            def symptoms() -> list[dict[str, Any]]:
                rest = [
                    a
                    for a in by_cluster(am_alerts(am), "alpha")
                    if a["labels"]["alertname"] not in SCOPE_CLUSTER
                ]
                names = {a["labels"]["alertname"] for a in rest}
                return rest if {"FleetClusterTelemetryDelayed", "KubeAPIServerDown"} <= names else []

            rest = wait_until(symptoms, 30, message="alpha's symptom alerts")
            fingerprints = {
                a["fingerprint"] for a in am_alerts(am) if a["labels"]["alertname"] in SCOPE_CLUSTER
            }
            for a in rest:
                assert a["status"]["state"] == "suppressed", a["labels"]
                assert set(a["status"]["inhibitedBy"]) <= fingerprints, a["labels"]
            assert by_cluster(am_alerts(am), "beta") == [], "beta must raise nothing"
            fired = prom_query(centre, 'ALERTS{alertstate="firing", cluster="beta"}')
            assert fired == [], [r["metric"] for r in fired]

            # Recovery: alpha's Prometheus comes back on the same address; the alerts resolve.
            proms["alpha"] = cluster_prometheus(tmp_path, fleet, "alpha", port=port)
            servers.append(proms["alpha"])
            t1 = time.monotonic()
            wait_until(
                lambda: (
                    not [
                        a
                        for a in by_cluster(am_alerts(am), "alpha")
                        if a["labels"]["alertname"] in SCOPE_CLUSTER
                    ]
                ),
                60,
                interval=0.2,
                message="alpha's cluster alerts to resolve",
            )
            resolved = time.monotonic() - t1
            assert by_cluster(am_alerts(am), "beta") == []
            first = sorted(a["labels"]["alertname"] for a in down)
            print(f"\nfailover drill: detection {detected:.1f}s ({first}), resolution {resolved:.1f}s")
            assert detected < 30
        finally:
            if collector is not None:
                collector.terminate()
            for s in servers:
                s.stop()
