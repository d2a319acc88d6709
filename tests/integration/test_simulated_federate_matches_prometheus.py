"""The simulated cluster's `/federate` against a real Prometheus's, over the same series.

A real Prometheus scrapes the simulated cluster's `/metrics` (honor_labels) and carries external
labels; its `/federate` must equal the simulation's, line for line, except sample values and
timestamps (counters move between the two renderings). Constant series must match in value text too,
which checks our Go-style float formatting against Prometheus' own.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.fleet_fixtures import ThreadedFleet, demo_clusters
from tests.servers import prom_query, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

CONSTANT = (
    "kube_node_info",
    "kube_pod_status_phase",
    "kube_node_status_allocatable",
    "kube_node_status_capacity",
    "kube_pod_container_resource_requests",
    "node_memory_MemTotal_bytes",
    "node_filesystem_size_bytes",
    "kube_deployment_spec_replicas",
)


def test_simulated_federate_equals_real_prometheus_federate(tmp_path: Path) -> None:
    clusters = demo_clusters(("prod-eu-1",))
    external = {"cluster": "prod-eu-1", "zone": "z"}
    with ThreadedFleet(clusters) as fleet:
        config = (
            "global:\n  scrape_interval: 1s\n  external_labels: {cluster: prod-eu-1, zone: z}\n"
            "scrape_configs:\n" + fleet.scrape_config("prod-eu-1", job="sim")
        )
        prom = start_prometheus(tmp_path / "prom", config)
        try:
            wait_until(lambda: prom_query(prom, "count(kube_pod_status_phase)"), 30, message="first scrape")
            time.sleep(1.2)  # one more scrape, so the synthetic scrape_* series are all present
            query = urllib.parse.urlencode({"match[]": '{__name__=~".+"}'})
            with urllib.request.urlopen(f"{prom.url}/federate?{query}", timeout=10) as resp:
                real = resp.read().decode()
        finally:
            prom.stop()
        found = re.search(r" (\d+)\n", real)
        assert found, real[:500]
        simulated = clusters[0].federate(
            int(found.group(1)) / 1000,
            external_labels=external,
            job="sim-prod-eu-1",
            instance=fleet.target("prod-eu-1"),
        )

    def shape(body: str) -> list[str]:
        return [ln if ln.startswith("#") else ln.rsplit(" ", 2)[0] for ln in body.splitlines()]

    assert len(shape(real)) > 1800
    assert shape(simulated) == shape(real)

    def constants(body: str) -> dict[str, str]:
        return {
            ln.rsplit(" ", 2)[0]: ln.rsplit(" ", 2)[1]
            for ln in body.splitlines()
            if not ln.startswith("#") and ln.split("{", 1)[0] in CONSTANT
        }

    real_values = constants(real)
    assert len(real_values) > 250
    assert constants(simulated) == real_values
