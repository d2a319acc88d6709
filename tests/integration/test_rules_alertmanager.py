"""Inhibition, tested against a real Alertmanager running the generated config.

Alerts are posted to /api/v2/alerts as a ruler would (labels exactly as the generated rules produce
them), then /api/v2/alerts says which are active and which are inhibited, and by whom. Three
independent scenarios share one Alertmanager with disjoint cluster names: a cluster going down, the
collector going down, and the severity ladder. A critical in one cluster never mutes another."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from observe.config import load_config, parse_config
from observe.generate.rules import render_rules
from tests.servers import Server, free_port, get_json, start_alertmanager, wait_until

ROOT = Path(__file__).resolve().parents[2]
MGMT = "mgmt-eu-1"  # the example config's self_cluster

pytestmark = pytest.mark.real_server


class _Webhooks(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def rendered_and_receiver() -> Iterator[tuple[dict[str, str], ThreadingHTTPServer]]:
    # Receivers point at a loopback webhook sink instead of the placeholders.
    data = yaml.safe_load((ROOT / "deploy" / "observe.example.yaml").read_text())
    port = free_port()
    data["alerts"] = {"receiver_url": f"http://127.0.0.1:{port}"}
    server = ThreadingHTTPServer(("127.0.0.1", port), _Webhooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield render_rules(parse_config(data)), server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def alertmanager(
    rendered_and_receiver: tuple[dict[str, str], ThreadingHTTPServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    rendered, _ = rendered_and_receiver
    am = start_alertmanager(tmp_path_factory.mktemp("am"), rendered["alertmanager/alertmanager.yaml"])
    try:
        yield am
    finally:
        am.stop()


def _static_labels() -> dict[tuple[str, str], dict[str, str]]:
    """(alertname, severity) -> the labels the rule adds (severity, alert_scope, static cluster)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for path, text in render_rules(load_config(ROOT / "deploy" / "observe.example.yaml")).items():
        if path.startswith(("prometheus/", "loki/")):
            for group in yaml.safe_load(text)["groups"]:
                for rule in group["rules"]:
                    if "alert" in rule:
                        out[(rule["alert"], rule["labels"]["severity"])] = rule["labels"]
    return out


STATIC = _static_labels()


def ruler_alert(alert: str, severity: str, /, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": alert, **labels, **STATIC[(alert, severity)]},
        "annotations": {"summary": alert},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "generatorURL": "http://ruler.invalid/graph",
    }


def post(am: Server, alerts: list[dict[str, Any]]) -> None:
    req = urllib.request.Request(
        f"{am.url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


Expected = dict[tuple[str, str, str], tuple[str, set[str]]]


def states(am: Server, clusters: set[str]) -> dict[tuple[str, str, str], tuple[str, set[str]]]:
    """(alertname, cluster, severity) -> (state, names of the inhibiting alerts), for the alerts whose
    cluster or self_cluster is in `clusters`."""
    alerts = get_json(f"{am.url}/api/v2/alerts")
    by_fp = {a["fingerprint"]: a["labels"]["alertname"] for a in alerts}
    out = {}
    for a in alerts:
        lbl = a["labels"]
        if lbl.get("cluster") in clusters or lbl.get("self_cluster") in clusters:
            inhibitors = {by_fp.get(fp, fp) for fp in a["status"]["inhibitedBy"]}
            out[(lbl["alertname"], lbl["cluster"], lbl["severity"])] = (a["status"]["state"], inhibitors)
    return out


def _matches(got: dict[tuple[str, str, str], tuple[str, set[str]]], expected: Expected) -> bool:
    # Alertmanager names one inhibitor, the first source found of the first rule that mutes: an alert
    # muted by several may show any of them, so `expected` gives the set it must come from.
    if got.keys() != expected.keys():
        return False
    for key, (state, allowed) in expected.items():
        got_state, inhibitors = got[key]
        if got_state != state or bool(inhibitors) != bool(allowed) or not inhibitors <= allowed:
            return False
    return True


def settle(am: Server, clusters: set[str], expected: Expected) -> None:
    # The inhibitor learns of new source alerts asynchronously; poll until the view is complete.
    try:
        wait_until(
            lambda: _matches(states(am, clusters), expected), timeout=15, message="inhibition to settle"
        )
    except AssertionError:
        assert states(am, clusters) == expected


def test_a_down_cluster_mutes_its_own_alerts_and_no_other_clusters(alertmanager: Server) -> None:
    inv = {"self_cluster": MGMT, "region": "eu-west-1", "provider": "aws", "env": "prod"}
    app = {"namespace": "argocd", "name": "shop", "project": "default"}
    post(
        alertmanager,
        [
            ruler_alert("FleetClusterTelemetryMissing", "critical", cluster="a1", **inv),
            ruler_alert("FleetClusterUnreachable", "critical", cluster="a1", self_cluster=MGMT),
            ruler_alert("KubeAPIServerDown", "critical", cluster="a1", **inv),
            ruler_alert("ArgoCDAppOutOfSync", "warning", cluster="a1", **app),
            ruler_alert("KubeAPIServerDown", "critical", cluster="a2", **inv),
            ruler_alert("ArgoCDAppOutOfSync", "warning", cluster="a2", **app),
        ],
    )
    down = {"FleetClusterTelemetryMissing", "FleetClusterUnreachable"}
    settle(
        alertmanager,
        {"a1", "a2"},
        {
            # Both cluster-scope alerts stay active: the matchers are disjoint, they cannot mute each other.
            ("FleetClusterTelemetryMissing", "a1", "critical"): ("active", set()),
            ("FleetClusterUnreachable", "a1", "critical"): ("active", set()),
            ("KubeAPIServerDown", "a1", "critical"): ("suppressed", down),
            ("ArgoCDAppOutOfSync", "a1", "warning"): ("suppressed", down),
            ("KubeAPIServerDown", "a2", "critical"): ("active", set()),
            ("ArgoCDAppOutOfSync", "a2", "warning"): ("active", set()),
        },
    )


def test_a_down_collector_mutes_the_missing_alerts_of_its_clusters_only(alertmanager: Server) -> None:
    mine, theirs = {"self_cluster": "mgmt-b"}, {"self_cluster": "mgmt-other"}
    post(
        alertmanager,
        [
            ruler_alert("ObserveCollectorDown", "critical", **mine),
            ruler_alert("FleetClusterTelemetryMissing", "critical", cluster="b1", **mine),
            ruler_alert("FleetClusterTelemetryMissing", "critical", cluster="b2", **mine),
            ruler_alert("FleetClusterLogsMissing", "warning", cluster="b2", **mine),
            ruler_alert("FleetClusterTelemetryMissing", "critical", cluster="b3", **theirs),
        ],
    )
    settle(
        alertmanager,
        {"mgmt-b", "b1", "b2", "b3"},
        {
            # Its cluster label is the management cluster's (a static rule label); it names its collector.
            ("ObserveCollectorDown", MGMT, "critical"): ("active", set()),
            ("FleetClusterTelemetryMissing", "b1", "critical"): ("suppressed", {"ObserveCollectorDown"}),
            ("FleetClusterTelemetryMissing", "b2", "critical"): ("suppressed", {"ObserveCollectorDown"}),
            ("FleetClusterLogsMissing", "b2", "warning"): (
                "suppressed",
                {"FleetClusterTelemetryMissing", "ObserveCollectorDown"},
            ),
            # Served by another collector: not muted by this one's death.
            ("FleetClusterTelemetryMissing", "b3", "critical"): ("active", set()),
        },
    )


def test_severity_ladder_within_one_cluster(alertmanager: Server) -> None:
    post(
        alertmanager,
        [
            ruler_alert("KubeClusterNodesNotReady", "critical", cluster="c1"),
            ruler_alert("KubeClusterNodesNotReady", "warning", cluster="c1"),
            ruler_alert("KubeClusterNodesNotReady", "warning", cluster="c2"),
            ruler_alert("KubeAPIServerErrorBudgetBurn", "warning", cluster="c1"),
        ],
    )
    settle(
        alertmanager,
        {"c1", "c2"},
        {
            ("KubeClusterNodesNotReady", "c1", "critical"): ("active", set()),
            ("KubeClusterNodesNotReady", "c1", "warning"): ("suppressed", {"KubeClusterNodesNotReady"}),
            ("KubeClusterNodesNotReady", "c2", "warning"): ("active", set()),
            # Another alert of the same cluster: the ladder is per alert, not per cluster.
            ("KubeAPIServerErrorBudgetBurn", "c1", "warning"): ("active", set()),
        },
    )


def test_watchdog_reaches_the_heartbeat_receiver_and_is_never_inhibited(
    alertmanager: Server, rendered_and_receiver: tuple[dict[str, str], ThreadingHTTPServer]
) -> None:
    post(alertmanager, [ruler_alert("Watchdog", "info", cluster=MGMT)])
    hooks = _Webhooks.received
    got = wait_until(
        lambda: [b for p, b in hooks if p == "/heartbeat"], timeout=15, message="heartbeat webhook"
    )
    assert got[0]["alerts"][0]["labels"]["alertname"] == "Watchdog"
    assert states(alertmanager, {MGMT})[("Watchdog", MGMT, "info")] == ("active", set())
