"""The metrics path end to end, against real servers only: "cluster" Prometheus servers scraping an
exporter, the `observe` command as an operator runs it, and a real central receiver (Prometheus with
--web.enable-remote-write-receiver, or VictoriaMetrics). Counts of what was pulled, queued and what
arrived are compared exactly.
"""

from __future__ import annotations

import random
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from observe.protocol.exposition import parse_text
from observe.protocol.remote_write import decode_write_request, decompress
from observe.queue.durable import DurableQueue
from tests.collector_proc import CollectorProcess, run_once, start_collector, write_config
from tests.e2e.http_fixtures import ReceiverProxy, ThreadedApp, bad_sources_app
from tests.fleet_fixtures import FEDERATE
from tests.servers import Server, free_port, prom_query, start_prometheus, start_victoria_metrics, wait_until

pytestmark = pytest.mark.real_server

TRICKY = 'say "hi" \\ back\nnewline, café ☕'


class Exporter:
    """A prometheus_client exporter with known series, served on a free loopback port."""

    def __init__(self, rooms: int = 40) -> None:
        self.registry = CollectorRegistry()
        temp = Gauge(
            "demo_temperature_celsius", "Room temperature.", ["room", "note"], registry=self.registry
        )
        for i in range(rooms):
            temp.labels(f"room-{i:03d}", TRICKY if i == 0 else "plain").set(i * 1.5 - 3)
        reqs = Counter("demo_requests", "Requests.", ["code"], registry=self.registry)
        reqs.labels("200").inc(1234)
        reqs.labels("500").inc(7)
        hist = Histogram("demo_latency_seconds", "Latency.", registry=self.registry, buckets=(0.1, 1, 10))
        for v in (0.05, 0.5, 5, 50):
            hist.observe(v)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cluster_prometheus(
    tmp: Path, name: str, exporter: Exporter, external: dict[str, str] | None = None
) -> Server:
    ext = f"  external_labels: {external!r}\n" if external else ""
    cfg = (
        f"global:\n  scrape_interval: 1s\n{ext}"
        f"scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{exporter.target}']}}]\n"
    )
    server = start_prometheus(tmp / name, cfg, name=name)
    wait_until(
        lambda: prom_query(server, 'up{job="demo"} == 1'), 20, message=f"{name} to scrape the exporter"
    )
    return server


def federate(server: Server) -> str:
    q = urllib.parse.urlencode({"match[]": '{__name__=~".+"}'})
    with urllib.request.urlopen(f"{server.url}/federate?{q}", timeout=10) as resp:
        return str(resp.read().decode())


def expected_series(
    body: str, cluster: str, static: dict[str, str]
) -> dict[frozenset[tuple[str, str]], float]:
    """What the centre must hold for one source, computed independently of observe's own transform:
    our labels win and a source's own value moves to exported_<name> (Prometheus' honor_labels: false)."""
    samples, errors = parse_text(body)
    assert not errors
    out: dict[frozenset[tuple[str, str]], float] = {}
    for name, labels, value, _ in samples:
        d = dict(labels)
        d["__name__"] = name
        for k, v in {"cluster": cluster, **static}.items():
            if k in d:
                d[f"exported_{k}"] = d[k]
            d[k] = v
        out[frozenset(d.items())] = value
    return out


def central_series(centre: Server, cluster: str) -> dict[frozenset[tuple[str, str]], float]:
    result = prom_query(centre, f'{{cluster="{cluster}",self_cluster=""}}')
    return {frozenset(r["metric"].items()): float(r["value"][1]) for r in result}


def raw_samples(
    centre: Server, selector: str, window: str = "1h"
) -> dict[frozenset[tuple[str, str]], list[Any]]:
    """Every stored sample of the matching series (a range-vector instant query returns raw samples)."""
    result = prom_query(centre, f"{selector}[{window}]")
    return {frozenset(r["metric"].items()): r["values"] for r in result}


def base_config(tmp: Path, clusters: list[dict[str, Any]], receiver_url: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "interval": "5s",
        "data_dir": str(tmp / "observe-data"),
        "listen": f"127.0.0.1:{free_port()}",
        "self_cluster": "mgmt",
        "clusters": clusters,
        "central": {"remote_write": {"url": receiver_url, "min_backoff": "100ms", "max_backoff": "1s"}},
        "shutdown_timeout": "10s",
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    yield exp
    exp.stop()


@pytest.fixture
def two_clusters(tmp_path: Path, exporter: Exporter) -> Iterator[tuple[Server, Server]]:
    a = cluster_prometheus(tmp_path, "prom-alpha", exporter)
    # beta's Prometheus already stamps cluster and region: both collide with ours.
    b = cluster_prometheus(tmp_path, "prom-beta", exporter, {"cluster": "src-b", "region": "src-region"})
    yield a, b
    a.stop()
    b.stop()


def clusters_for(a: Server, b: Server) -> list[dict[str, Any]]:
    return [
        {"name": "alpha", "labels": {"region": "eu-west-1", "env": "prod"},
         "prometheus": {"url": a.url, "timeout": "3s", **FEDERATE}},
        {"name": "beta", "labels": {"region": "us-east-1"}, "prometheus": {"url": b.url, "timeout": "3s", **FEDERATE}},
    ]  # fmt: skip


def assert_centre_matches_sources(centre: Server, a: Server, b: Server) -> None:
    for cluster, src, static in (
        ("alpha", a, {"region": "eu-west-1", "env": "prod"}),
        ("beta", b, {"region": "us-east-1"}),
    ):
        want = expected_series(federate(src), cluster, static)
        got = wait_until(
            lambda c=cluster, w=want: (lambda g: g if set(g) == set(w) else None)(central_series(centre, c)),  # type: ignore[misc]
            20,
            message=f"centre to hold exactly {cluster}'s series",
        )
        assert set(got) == set(want)
        for labels, value in want.items():
            if dict(labels)["__name__"].startswith("demo_"):  # the exporter's values are fixed
                assert got[labels] == pytest.approx(value), dict(labels)
        # Exactly once: a single sample per series, no duplicate from a retry or a second label spelling.
        stored = raw_samples(centre, f'{{cluster="{cluster}",self_cluster=""}}')
        assert stored and {len(values) for values in stored.values()} == {1}


@pytest.mark.parametrize("receiver", ["prometheus", "victoria-metrics"])
def test_run_once_delivers_every_federated_series_exactly_once(
    tmp_path: Path, two_clusters: tuple[Server, Server], receiver: str
) -> None:
    a, b = two_clusters
    if receiver == "prometheus":
        centre = start_prometheus(tmp_path / "centre", remote_write_receiver=True, name="centre")
        url = centre.url + "/api/v1/write"
    else:
        centre = start_victoria_metrics(tmp_path / "centre")
        url = centre.url + "/api/v1/write"
    try:
        cfg = write_config(tmp_path / "observe.yaml", base_config(tmp_path, clusters_for(a, b), url))
        done = run_once(cfg)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "alpha" in done.stdout and "beta" in done.stdout
        assert_centre_matches_sources(centre, a, b)
        # beta's own cluster/region labels were kept as exported_*, never lost.
        beta = central_series(centre, "beta")
        assert all(dict(k).get("exported_cluster") == "src-b" for k in beta)
        assert all(dict(k).get("exported_region") == "src-region" for k in beta)
        # The collector's own metrics arrived too, labelled with self_cluster.
        up = wait_until(
            lambda: prom_query(centre, 'observe_cluster_up{self_cluster="mgmt"}'), 20, message="self-metrics"
        )
        assert {r["metric"]["cluster"]: r["value"][1] for r in up} == {"alpha": "1", "beta": "1"}
    finally:
        centre.stop()


def queued_samples(queue_dir: Path, scratch: Path) -> set[tuple[frozenset[tuple[str, str]], int]]:
    """Every (series, timestamp) in a queue, read from a copy so the real one is untouched."""
    shutil.copytree(queue_dir, scratch)
    q = DurableQueue(scratch, max_bytes=2**30, segment_bytes=2**20, max_age=1e9)
    out: set[tuple[frozenset[tuple[str, str]], int]] = set()
    try:
        while records := q.peek_group(1000):
            for rec in records:
                for labels, samples in decode_write_request(decompress(rec.payload)):
                    out.update((frozenset(labels), ts) for _, ts in samples)
                q.ack(rec.seq)
    finally:
        q.close()
    return out


def central_sample_count(centre: Server, selector: str) -> int:
    return sum(len(v) for v in raw_samples(centre, selector).values())


def test_centre_down_then_up_and_sigkill_mid_send_lose_nothing(tmp_path: Path, exporter: Exporter) -> None:
    src = cluster_prometheus(tmp_path, "prom-alpha", exporter)
    centre_port = free_port()
    # A slow link (0.2s a request, 2 in flight, 10 samples each) makes the replay last long enough to be
    # killed in the middle of it many times.
    proxy = ReceiverProxy(target=f"http://127.0.0.1:{centre_port}/api/v1/write", delay=0.2).start()
    clusters = [{"name": "alpha", "prometheus": {"url": src.url, "timeout": "3s", **FEDERATE}}]
    cfg_dict = base_config(
        tmp_path, clusters, proxy.url + "/api/v1/write", shutdown_timeout="1s", self_metrics=False
    )
    cfg_dict["central"]["remote_write"].update(max_samples_per_send=10, max_in_flight=2)
    cfg = write_config(tmp_path / "observe.yaml", cfg_dict)
    centre: Server | None = None
    try:
        # 1. The centre is down for several cycles: every run fails to deliver and keeps its data queued.
        for _ in range(6):
            done = run_once(cfg)
            assert done.returncode == 1, done.stdout + done.stderr
            assert "undelivered" in done.stdout
            time.sleep(1.1)  # let the source scrape again so each cycle brings new samples
        queue_dir = tmp_path / "observe-data" / "queue" / "alpha" / "metrics"
        expected = queued_samples(queue_dir, tmp_path / "queue-copy")
        assert len(expected) >= 6 * 40  # six cycles of at least the 40 room series
        # 2. The source goes away (nothing new is pulled), the centre comes up, and the collector is
        #    SIGKILLed at random moments while it replays the backlog through a slow link.
        src.stop()
        centre = start_prometheus(
            tmp_path / "centre", remote_write_receiver=True, name="centre", port=centre_port
        )
        rng = random.Random(7)
        kills_mid_send = 0
        for _ in range(8):
            proc = start_collector(cfg)
            time.sleep(rng.uniform(0.2, 0.8))
            if proc.metric_value("observe_queue_records", cluster="alpha") > 0:
                kills_mid_send += 1
            proc.kill()
        # 3. A last run finishes the replay.
        final = start_collector(cfg)
        wait_until(
            lambda: final.metric_value("observe_queue_records", cluster="alpha") == 0, 60, message="drained"
        )
        assert final.terminate() == 0
        assert kills_mid_send >= 4  # most kills hit the collector with requests in flight
        got = central_sample_count(centre, '{cluster="alpha"}')
        assert got == len(expected), f"queued {len(expected)} samples, centre holds {got}"
        # Order held: the receiver rejected nothing as out of order (such a 400 would be logged and dropped).
        assert "out of order" not in final.log_text()
    finally:
        proxy.stop()
        src.stop()
        if centre is not None:
            centre.stop()


def test_queue_bound_drops_oldest_and_counts_it(tmp_path: Path) -> None:
    big = Exporter(rooms=3000)
    src = cluster_prometheus(tmp_path, "prom-alpha", big)
    dead = f"http://127.0.0.1:{free_port()}/api/v1/write"
    clusters = [{"name": "alpha", "prometheus": {"url": src.url, "timeout": "2s", **FEDERATE}}]
    cfg_dict = base_config(tmp_path, clusters, dead, interval="3s", self_metrics=False)
    cfg_dict["queue"] = {"max_bytes": "256KiB", "segment_bytes": "64KiB"}
    proc: CollectorProcess | None = None
    try:
        proc = start_collector(write_config(tmp_path / "observe.yaml", cfg_dict))
        dropped = wait_until(
            lambda: proc.metric_value("observe_dropped_samples_total", cluster="alpha", reason="queue_full"),
            60,
            message="queue_full drops",
        )
        assert dropped > 0
        assert proc.metric_value("observe_queue_bytes", cluster="alpha") <= 256 * 1024
        queued = proc.metric_value("observe_samples_queued_total", cluster="alpha")
        assert queued > dropped  # the newest data is kept, the oldest went
    finally:
        if proc is not None:
            proc.terminate()
        src.stop()
        big.stop()


def test_stopped_source_goes_stale_and_the_other_cluster_keeps_arriving(
    tmp_path: Path, two_clusters: tuple[Server, Server]
) -> None:
    a, b = two_clusters
    centre = start_prometheus(tmp_path / "centre", remote_write_receiver=True, name="centre")
    cfg_dict = base_config(tmp_path, clusters_for(a, b), centre.url + "/api/v1/write", interval="1s")
    for c in cfg_dict["clusters"]:
        c["prometheus"]["timeout"] = "800ms"
    proc: CollectorProcess | None = None
    try:
        proc = start_collector(write_config(tmp_path / "observe.yaml", cfg_dict))
        wait_until(lambda: prom_query(centre, 'up{cluster="beta"}'), 20, message="beta at the centre")
        b.stop()
        wait_until(
            lambda: proc.metric_value("observe_cluster_up", cluster="beta") == 0, 20, message="beta down"
        )
        assert proc.metric_value("observe_cluster_up", cluster="alpha") == 1
        # Staleness markers: an instant query no longer returns beta's series (no 5-minute flat line).
        wait_until(
            lambda: not prom_query(centre, '{cluster="beta",self_cluster=""}'), 20, message="beta stale"
        )
        # alpha keeps arriving every cycle.
        first = float(prom_query(centre, 'timestamp(up{cluster="alpha"})')[0]["value"][1])
        wait_until(
            lambda: float(prom_query(centre, 'timestamp(up{cluster="alpha"})')[0]["value"][1]) > first + 1.5,
            20,
            message="alpha's newer samples",
        )
        # The centre learns beta is down from the collector's own shipped metrics.
        wait_until(
            lambda: prom_query(centre, 'observe_cluster_up{cluster="beta",self_cluster="mgmt"} == 0'),
            20,
            message="observe_cluster_up 0 at the centre",
        )
        assert proc.terminate() == 0
    finally:
        if proc is not None:
            proc.terminate()
        centre.stop()


def test_broken_sources_fail_alone_with_clear_reasons(
    tmp_path: Path, two_clusters: tuple[Server, Server]
) -> None:
    a, _ = two_clusters
    bad = ThreadedApp(bad_sources_app(lambda: federate(a), huge_bytes=3 * 2**20)).start()
    centre = start_prometheus(tmp_path / "centre", remote_write_receiver=True, name="centre")
    clusters: list[dict[str, Any]] = [{"name": "alpha", "prometheus": {"url": a.url, "timeout": "3s", **FEDERATE}}]
    for case in ("html", "unauthorized", "malformed", "huge", "hang"):
        prom: dict[str, Any] = {"url": f"{bad.url}/{case}", "timeout": "2s", "max_response_bytes": "1MiB"}
        clusters.append({"name": f"bad-{case}", "prometheus": prom})
    try:
        cfg = write_config(
            tmp_path / "observe.yaml", base_config(tmp_path, clusters, centre.url + "/api/v1/write")
        )
        done = run_once(cfg, extra=("--log-level", "debug"))
        out = done.stdout
        assert done.returncode == 1  # some clusters failed: the run says so
        for needle in ("HTML", "401", "1MiB limit", "no complete answer within the timeout of 2s"):
            assert needle.lower() in (out + done.stderr).lower(), needle
        # The good cluster arrived in full; the malformed one lost only its two broken lines.
        want_alpha = expected_series(federate(a), "alpha", {})
        wait_until(
            lambda: set(central_series(centre, "alpha")) == set(want_alpha), 20, message="alpha complete"
        )
        malformed = central_series(centre, "bad-malformed")
        assert len(malformed) == len(want_alpha)
        assert "bad exposition line skipped" in done.stderr
        for case in ("html", "unauthorized", "huge", "hang"):
            assert not central_series(centre, f"bad-{case}")
    finally:
        bad.stop()
        centre.stop()


@pytest.mark.parametrize(
    ("script", "lands", "reason"),
    [
        ([(429, {"Retry-After": "1"}, "slow down")] * 2, True, "throttled"),
        ([(503, {}, "receiver unavailable")] * 3, True, "http_5xx"),
        ([(400, {}, "out of bounds")] * 100, False, "permanent_error"),
        ([(409, {}, "conflict: duplicate sample")] * 100, False, "permanent_error"),
    ],
)
def test_receiver_errors_are_retried_or_dropped_by_status(
    tmp_path: Path,
    exporter: Exporter,
    script: list[tuple[int, dict[str, str], str]],
    lands: bool,
    reason: str,
) -> None:
    src = cluster_prometheus(tmp_path, "prom-alpha", exporter)
    centre = start_prometheus(tmp_path / "centre", remote_write_receiver=True, name="centre")
    proxy = ReceiverProxy(target=centre.url + "/api/v1/write", script=list(script)).start()
    clusters = [{"name": "alpha", "prometheus": {"url": src.url, "timeout": "3s", **FEDERATE}}]
    cfg_dict = base_config(tmp_path, clusters, proxy.url + "/api/v1/write", self_metrics=False)
    try:
        done = run_once(write_config(tmp_path / "observe.yaml", cfg_dict))
        if lands:
            assert done.returncode == 0, done.stdout + done.stderr
            assert proxy.seen[: len(script)] == [s for s, _, _ in script]
            want = expected_series(federate(src), "alpha", {})
            wait_until(lambda: set(central_series(centre, "alpha")) == set(want), 20, message="all samples")
        else:
            # Dropped, counted and logged once with the receiver's message; nothing retried forever.
            assert done.returncode == 1, done.stdout + done.stderr
            assert "samples dropped" in done.stdout and "alpha/permanent_error" in done.stdout
            assert not central_series(centre, "alpha")
            assert done.stderr.count(script[0][2]) == 1, done.stderr
    finally:
        proxy.stop()
        src.stop()
        centre.stop()
