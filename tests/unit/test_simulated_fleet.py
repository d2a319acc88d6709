"""The simulated cluster (observe/demo): valid exposition, sane values, outages, scale, and its HTTP face."""

from __future__ import annotations

import math
import re

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from observe.demo.fleet import SimulatedCluster
from observe.demo.series import format_value
from observe.demo.serve import SelectorError, parse_selector
from tests.fleet_fixtures import ThreadedFleet, demo_clusters, serve_fleet

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(body: str) -> dict[Key, float]:
    """Every sample of an exposition, by (name, sorted labels); parsing fails on any invalid line."""
    out: dict[Key, float] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def pick(data: dict[Key, float], name: str, **labels: str) -> dict[Key, float]:
    return {
        k: v
        for k, v in data.items()
        if k[0] == name and all(dict(k[1]).get(n) == v for n, v in labels.items())
    }


def is_counter(name: str) -> bool:
    return name.endswith(("_total", "_bucket", "_count", "_sum"))


@pytest.fixture(scope="module")
def cluster() -> SimulatedCluster:
    return SimulatedCluster("prod-eu-1", peers=["prod-us-1", "edge-onprem-1"])


REQUIRED = (
    "up",
    "kube_node_info",
    "kube_node_status_condition",
    "kube_node_status_allocatable",
    "kube_pod_container_resource_requests",
    "kube_pod_status_phase",
    "kube_pod_container_status_restarts_total",
    "kube_deployment_status_replicas_available",
    "kube_deployment_spec_replicas",
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "apiserver_request_total",
    "apiserver_request_duration_seconds_bucket",
    "istio_requests_total",
    "velero_backup_last_successful_timestamp",
    "velero_backup_success_total",
    "velero_backup_failure_total",
    "argocd_app_info",
    "argocd_cluster_connection_status",
    "k8gb_gslb_healthy_records",
    "k8gb_gslb_service_status_num",
)


def test_exposition_parses_and_has_every_family_the_fleet_queries(cluster: SimulatedCluster) -> None:
    body = cluster.exposition(NOW)
    data = samples(body)
    names = {k[0] for k in data}
    assert set(REQUIRED) <= names, set(REQUIRED) - names
    assert len(data) == cluster.series_count(NOW) > 1000
    # Every family announced once with HELP and TYPE, no timestamps on sample lines.
    types = re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M)
    assert len(types) == len({n for n, _ in types})
    assert len(re.findall(r"^# HELP ", body, re.M)) == len(types)
    assert dict(types)["apiserver_request_duration_seconds"] == "histogram"
    assert dict(types)["istio_requests_total"] == "counter"
    for line in body.splitlines():
        if not line.startswith("#"):
            assert len(line.rsplit("} ", 1)[-1].split()) == 1, line


def test_rendering_is_deterministic_for_a_seed_and_time() -> None:
    a = SimulatedCluster("c", seed=7).exposition(NOW)
    assert a == SimulatedCluster("c", seed=7).exposition(NOW)
    assert a != SimulatedCluster("c", seed=8).exposition(NOW)
    assert a != SimulatedCluster("c", seed=7).exposition(NOW + 30)


def test_counters_never_decrease_and_most_increase_even_across_an_outage() -> None:
    c = SimulatedCluster("edge", seed=3)
    before = samples(c.exposition(NOW))
    c.fail(NOW + 5)
    during = samples(c.exposition(NOW + 300))
    c.recover(NOW + 600)
    after = samples(c.exposition(NOW + 3600))
    for earlier, later in ((before, during), (during, after)):
        common = [k for k in earlier if k in later and is_counter(k[0])]
        assert len(common) > 500
        decreasing = [k for k in common if later[k] < earlier[k]]
        assert not decreasing, decreasing[:3]
    grown = [k for k in before if k in after and is_counter(k[0]) and after[k] > before[k]]
    assert len(grown) > 0.8 * sum(1 for k in before if is_counter(k[0]))


def test_histogram_buckets_are_cumulative_and_inf_equals_count(cluster: SimulatedCluster) -> None:
    data = samples(cluster.exposition(NOW))
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for (name, labels), v in data.items():
        if name == "apiserver_request_duration_seconds_bucket":
            rest = tuple(lp for lp in labels if lp[0] != "le")
            buckets.setdefault(rest, []).append((float(dict(labels)["le"]), v))
    assert buckets
    for rest, pairs in buckets.items():
        values = [v for _, v in sorted(pairs)]
        assert values == sorted(values)
        assert values[-1] == data[("apiserver_request_duration_seconds_count", rest)]


def test_an_outage_shows_in_nodes_apiserver_pods_and_addons() -> None:
    c = SimulatedCluster("edge-onprem-1", seed=1, peers=["prod-eu-1"])
    ok = samples(c.exposition(NOW))
    c.fail(NOW + 1)
    bad = samples(c.exposition(NOW + 120))
    node = "edge-onprem-1-node-02"  # the last node is the one that fails

    def cond(data: dict[Key, float], status: str) -> float:
        return next(
            iter(
                pick(data, "kube_node_status_condition", node=node, condition="Ready", status=status).values()
            )
        )

    assert (cond(ok, "true"), cond(ok, "unknown")) == (1, 0)
    assert (cond(bad, "true"), cond(bad, "unknown")) == (0, 1)
    # its node-exporter is down and its series are gone
    assert pick(ok, "up", job="node-exporter", instance=node) != {}
    assert set(pick(bad, "up", job="node-exporter", instance=node).values()) == {0}
    assert pick(ok, "node_cpu_seconds_total", instance=node) and not pick(
        bad, "node_cpu_seconds_total", instance=node
    )

    # apiserver 5xx: a trickle while healthy, a flood during the outage (per second over the window)
    def rate_5xx(a: dict[Key, float], b: dict[Key, float], seconds: float) -> float:
        keys = [k for k in pick(b, "apiserver_request_total") if dict(k[1])["code"].startswith("5")]
        return sum(b[k] - a.get(k, 0) for k in keys) / seconds

    later = samples(c.exposition(NOW + 240))
    assert rate_5xx(bad, later, 120) > 50 * max(0.01, rate_5xx(samples(c.exposition(NOW - 120)), ok, 120))
    # crash loops exist only during the outage, and deployments lose an available replica
    assert not pick(ok, "kube_pod_container_status_waiting_reason")
    waiting = pick(bad, "kube_pod_container_status_waiting_reason", reason="CrashLoopBackOff")
    assert len(waiting) == c.namespaces_count  # one per namespace
    assert sum(pick(bad, "kube_deployment_status_replicas_available").values()) == sum(
        pick(ok, "kube_deployment_status_replicas_available").values()
    ) - len(waiting)
    assert {dict(k[1])["health_status"] for k in pick(bad, "argocd_app_info")} == {"Healthy", "Degraded"}
    assert set(pick(bad, "k8gb_gslb_service_status_num", status="Unhealthy").values()) == {1}
    assert set(pick(bad, "k8gb_gslb_healthy_records").values()) == {2.0}  # the peer's two records remain
    c.recover(NOW + 200)
    assert samples(c.exposition(NOW + 300)).keys() == ok.keys()


def test_failed_backups_freeze_the_last_success_timestamp() -> None:
    c = SimulatedCluster("c", healthy=False)  # broken since the epoch: no hourly backup ever succeeded
    data = samples(c.exposition(NOW))
    hourly = {"schedule": "hourly-resources"}
    assert set(pick(data, "velero_backup_last_successful_timestamp", **hourly).values()) == {0}
    assert set(pick(data, "velero_backup_last_status", **hourly).values()) == {0}
    attempts = next(iter(pick(data, "velero_backup_attempt_total", **hourly).values()))
    assert next(iter(pick(data, "velero_backup_failure_total", **hourly).values())) == attempts > 10_000

    c = SimulatedCluster("c")
    last_ok = next(
        iter(pick(samples(c.exposition(NOW)), "velero_backup_last_successful_timestamp", **hourly).values())
    )
    assert NOW - 2 * 3600 < last_ok <= NOW
    c.fail(NOW)
    later = samples(c.exposition(NOW + 5 * 3600))
    assert next(iter(pick(later, "velero_backup_last_successful_timestamp", **hourly).values())) == last_ok
    assert next(iter(pick(later, "velero_backup_failure_total", **hourly).values())) >= 4


def test_istio_traffic_crosses_to_and_from_peers(cluster: SimulatedCluster) -> None:
    data = samples(cluster.exposition(NOW))
    out = pick(data, "istio_requests_total", reporter="source", source_cluster="prod-eu-1")
    inbound = pick(data, "istio_requests_total", reporter="destination", destination_cluster="prod-eu-1")
    assert {dict(k[1])["destination_cluster"] for k in out} == {"prod-us-1", "edge-onprem-1"}
    assert {dict(k[1])["source_cluster"] for k in inbound} >= {"prod-eu-1", "prod-us-1", "edge-onprem-1"}


def test_federate_is_prometheus_shaped(cluster: SimulatedCluster) -> None:
    now = NOW + 0.123
    body = cluster.federate(
        now, external_labels={"cluster": "theirs", "region": "eu"}, job="sim", instance="h:1"
    )
    lines = body.splitlines()
    types = [ln for ln in lines if ln.startswith("#")]
    assert all(re.fullmatch(r"# TYPE \S+ untyped", t) for t in types)
    names = [t.split()[2] for t in types]
    assert names == sorted(names) and len(names) == len(set(names))  # grouped by family, families sorted
    series = [ln for ln in lines if not ln.startswith("#")]
    assert all(ln.endswith(f" {round(now * 1000)}") for ln in series)
    assert all(
        ln.split("{", 1)[1].rsplit("} ", 1)[0].endswith(',cluster="theirs",region="eu"') for ln in series
    )
    data = samples(body)
    # the rows' own job/instance win (honor_labels); the scrape target's own series are there too
    assert pick(data, "up", job="kube-state-metrics")
    assert pick(data, "up", job="sim", instance="h:1") and pick(data, "scrape_samples_scraped", job="sim")
    assert len(series) == cluster.series_count(now) + 5
    # an external label a series already has is not added again
    own = cluster.federate(now, external_labels={"job": "x"}, job="sim", instance="h:1")
    assert 'job="x"' not in own


def test_federate_select_filters_rows(cluster: SimulatedCluster) -> None:
    body = cluster.federate(
        NOW, external_labels={}, job="sim", instance="h:1", select=parse_selector('{job="velero"}')
    )
    names = {k[0] for k in samples(body)}
    assert names and all(n.startswith("velero_") or n == "up" for n in names)


@pytest.mark.parametrize("n", [20_000, 100_000])
def test_scale_knob_gives_about_n_series(n: int) -> None:
    c = SimulatedCluster.for_series_count("big", n)
    assert abs(c.series_count(NOW) - n) <= 0.02 * n


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"), (1.0, "1"), (-1.0, "-1"), (0.5, "0.5"), (-2.5, "-2.5"), (123456.0, "123456"),
        (999999.0, "999999"), (1e6, "1e+06"), (1234567.0, "1.234567e+06"),
        (16663078912.0, "1.6663078912e+10"), (12345.678, "12345.678"), (0.0001, "0.0001"),
        (1.5e-05, "1.5e-05"), (1e21, "1e+21"), (float("nan"), "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
        (3.0517578125e-05, "3.0517578125e-05"),
    ],
)  # fmt: skip
def test_values_are_formatted_as_go_does(value: float, text: str) -> None:
    # Go: strconv.FormatFloat(v, 'g', -1, 64), what client_golang's expfmt writes
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("selector", "name", "labels", "expected"),
    [
        ('{__name__=~".+"}', "up", {}, True),
        ('{__name__="up"}', "up", {"job": "a"}, True),
        ('{__name__="up"}', "upx", {}, False),
        ('{job="velero"}', "x", {"job": "velero"}, True),
        ('{job="velero"}', "x", {"job": "velero-2"}, False),
        ("up", "up", {}, True),
        ('up{job=~"kube.*",instance!="a"}', "up", {"job": "kube-state-metrics", "instance": "b"}, True),
        ('up{job=~"kube.*",instance!="a"}', "up", {"job": "kube-state-metrics", "instance": "a"}, False),
        ('{job!~"node-.*", job!=""}', "x", {"job": "apiserver"}, True),
        ('{job="a\\"b"}', "x", {"job": 'a"b'}, True),
    ],
)
def test_selector_subset(selector: str, name: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector)(name, tuple(sorted(labels.items()))) is expected


@pytest.mark.parametrize("bad", ['{__name__=~".*"}', "{job=}", "rate(up[5m])", '{job="a"', "", '{job=~"("}'])
def test_selector_outside_the_subset_is_rejected(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(bad)


async def test_simulated_prometheus_http_endpoints() -> None:
    clusters = demo_clusters(("a", "b"))
    async with (
        serve_fleet(clusters, external_labels={"a": {"cluster": "a-own"}}) as fleet,
        aiohttp.ClientSession() as http,
    ):
        url = fleet.url("a")

        async def get(path: str, **params: str) -> tuple[int, str, str]:
            async with http.get(url + path, params=params) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.text()

        status, ctype, body = await get("/federate", **{"match[]": '{__name__=~".+"}'})
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert len(samples(body)) == clusters[0].series_count(clusters[0].timeline.epoch) + 5
        assert 'cluster="a-own"' in body
        status, _, body = await get("/federate", **{"match[]": '{__name__="kube_node_info"}'})
        assert status == 200 and {k[0] for k in samples(body)} == {"kube_node_info"}
        status, _, body = await get("/federate", **{"match[]": '{job="k8gb"}'})
        assert {k[0] for k in samples(body)} >= {"k8gb_gslb_healthy_records", "up"}
        assert (await get("/federate"))[:3:2] == (200, "")  # no match[]: empty, as Prometheus
        status, _, body = await get("/federate", **{"match[]": "rate(up[5m])"})
        assert status == 400 and "parse error" in body
        status, _, body = await get("/metrics")
        assert status == 200 and "# HELP kube_node_info" in body and "a-own" not in body
        fleet["a"].available = False
        assert (await get("/federate", **{"match[]": "up"}))[0] == 503
        assert (await get("/-/healthy"))[0] == 503
        assert (await get("/-/healthy"))[0] == 503
        async with http.get(fleet.url("b") + "/-/ready") as resp:
            assert resp.status == 200


def test_threaded_fleet_serves_while_the_test_thread_blocks() -> None:
    import urllib.request

    with ThreadedFleet(demo_clusters(("a",))) as fleet:
        with urllib.request.urlopen(fleet.url("a") + "/metrics", timeout=10) as resp:
            assert resp.status == 200
            assert b"kube_pod_status_phase" in resp.read()
        assert fleet.target("a").startswith("127.0.0.1:")
        assert f"targets: ['{fleet.target('a')}']" in fleet.scrape_config("a")
        fleet.set_available("a", False)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(fleet.url("a") + "/metrics", timeout=10)
        assert err.value.code == 503
        err.value.close()
