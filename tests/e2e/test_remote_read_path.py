"""Lossless metrics through remote-read, against real Prometheus servers (and VictoriaMetrics as a centre).

Each test runs `observe run` as a user does, against a cluster Prometheus scraping an exporter every second,
and compares what the centre holds with what the source holds, sample by sample (timestamp and value
bits, staleness markers included), for the window the collector's cursor says it covered.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.collector_proc import CollectorProcess, start_collector, write_config
from tests.e2e.http_fixtures import ThreadedApp
from tests.e2e.remote_read_lab import (
    SELECTOR,
    Exporter,
    as_centre,
    central_prometheus,
    cluster_prometheus,
    cursor_ms,
    diff,
    raw,
    receiver_errors,
    stale_bits,
    victoria_export,
)
from tests.servers import Server, free_port, start_victoria_metrics, wait_until

pytestmark = pytest.mark.real_server

EXTERNAL = {"cluster": "theirs"}
ALPHA = SELECTOR[:-1] + ',cluster="alpha"}'  # cluster alpha's series at the centre


def config(
    tmp: Path, urls: list[str], write_url: str, *, interval: str = "5s", min_window: str = "10s", **prometheus: Any
) -> Path:
    doc = {
        "interval": interval,
        "data_dir": str(tmp / "data"),
        "self_metrics": False,
        "shutdown_timeout": "10s",
        "queue": {"fsync": "always"},
        # min_window 10s: every other cycle reads and the others only check the source (the default 2m
        # reads every fourth 30s cycle): every test here runs with cycles that wait
        "remote_read": {"start_from": "10m", "safety_lag": "2s", "max_window": "20s", "min_window": min_window},
        "clusters": [
            {
                "name": "alpha",
                "prometheus": {
                    "url": urls[0], "replica_urls": urls[1:], "protocol": "remote_read", "timeout": "4s",
                    "match": [SELECTOR], **prometheus,
                },
            }
        ],
        "central": {"remote_write": {"url": write_url, "min_backoff": "100ms", "max_backoff": "1s"}},
    }  # fmt: skip
    return write_config(tmp / "observe.yaml", doc)


def covered(data_dir: Path, at_least_ms: int, proc: CollectorProcess, timeout: float = 40) -> None:
    """Wait until the collector's cursor passed `at_least_ms`."""

    def passed() -> bool:
        assert proc.proc.poll() is None, proc.log_text()[-3000:]
        try:
            return cursor_ms(data_dir, "alpha") >= at_least_ms
        except FileNotFoundError:
            return False

    wait_until(passed, timeout, interval=0.5, message="the remote-read cursor to pass the mark")


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_centre_holds_the_source(src: Server, centre: Server, data_dir: Path, **kw: Any) -> int:
    end = cursor_ms(data_dir, "alpha")
    want = as_centre(raw(src, end), cluster="alpha", **kw)
    got = raw(centre, end, ALPHA)
    assert sum(len(p) for p in want.values()) > 0
    problems = diff(want, got)
    assert not problems, "\n".join(problems[:20])
    return sum(len(p) for p in want.values())


@pytest.fixture
def exporter() -> Any:
    e = Exporter().start()
    yield e
    e.stop()


def test_every_sample_arrives_once_in_order_at_a_5s_interval_over_1s_scrapes(
    tmp_path: Path, exporter: Exporter
) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)
    centre = central_prometheus(tmp_path / "centre")
    try:
        time.sleep(4)  # history from before the collector's first start: start_from reads it
        proc = start_collector(config(tmp_path, [src.url], centre.url + "/api/v1/write"))
        try:
            started = now_ms()
            covered(tmp_path / "data", started, proc)
            exporter.drop.add(3)  # the source marks lab_value{i="3"} stale on its next scrape
            covered(tmp_path / "data", now_ms() + 3000, proc)
        finally:
            assert proc.terminate() == 0
        samples = assert_centre_holds_the_source(src, centre, tmp_path / "data")
        # ~1 sample per second per series over >10s: far more than federation's one per 5s cycle
        series = len(raw(src, cursor_ms(tmp_path / "data", "alpha")))
        assert samples > series * 10
        marked = raw(centre, cursor_ms(tmp_path / "data", "alpha"), '{__name__="lab_value",i="3"}')
        assert [b for points in marked.values() for _, b in points][-1] == stale_bits()  # bit for bit
        assert receiver_errors(centre) == 0  # nothing out of order, nothing refused
    finally:
        src.stop()
        centre.stop()


def source_requests(src: Server, handler: str) -> float:
    """Requests the source answered on `handler`, by its own prometheus_http_requests_total."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(src.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "prometheus_http_requests_total" and s.labels.get("handler") == handler
    )


def test_cycles_that_wait_for_min_window_ask_the_source_less_and_lose_nothing(
    tmp_path: Path, exporter: Exporter
) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)
    centre = central_prometheus(tmp_path / "centre")
    data = tmp_path / "data"
    try:
        time.sleep(3)
        # cycles 2s apart, min_window 8s: a cycle reads once 7s are due, so every fourth one reads
        proc = start_collector(
            config(tmp_path, [src.url], centre.url + "/api/v1/write", interval="2s", min_window="8s", timeout="1500ms")
        )
        try:
            covered(data, now_ms() - 2000, proc)  # the first cycle read
            reads, probes = source_requests(src, "/api/v1/read"), source_requests(src, "/-/ready")
            since = time.monotonic()
            covered(data, now_ms() + 16_000, proc, timeout=40)
            cycles = (time.monotonic() - since) / 2
            asked = source_requests(src, "/api/v1/read") - reads
            checked = source_requests(src, "/-/ready") - probes
        finally:
            assert proc.terminate() == 0
        assert 2 <= asked <= cycles / 2, (asked, cycles)  # ~one read per 4 cycles, not one per cycle
        assert checked >= asked, (checked, asked)  # the cycles in between asked only whether it was up
        assert_centre_holds_the_source(src, centre, data)  # every sample, in order, whatever the wait
        assert receiver_errors(centre) == 0
    finally:
        src.stop()
        centre.stop()


def test_victoria_metrics_as_the_centre_holds_every_sample(tmp_path: Path, exporter: Exporter) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)
    vm = start_victoria_metrics(tmp_path / "vm")
    try:
        time.sleep(3)
        proc = start_collector(config(tmp_path, [src.url], vm.url + "/api/v1/write"))
        try:
            covered(tmp_path / "data", now_ms() + 8000, proc)
        finally:
            assert proc.terminate() == 0
        end = cursor_ms(tmp_path / "data", "alpha")
        want = {
            labels: [(ts, v) for ts, v in _floats(points) if not math.isnan(v)]
            for labels, points in as_centre(raw(src, end), cluster="alpha").items()
        }

        def arrived() -> dict[Any, Any] | None:
            got = {k: [(ts, v) for ts, v in p if ts <= end and not math.isnan(v)] for k, p in victoria_export(vm).items()}
            return got if got == want else None

        wait_until(arrived, 20, interval=1.0, message="VictoriaMetrics to hold exactly the source's samples")
    finally:
        src.stop()
        vm.stop()


def test_a_stopped_and_repeatedly_killed_collector_fills_the_gap_in_order(tmp_path: Path, exporter: Exporter) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)
    centre = central_prometheus(tmp_path / "centre")
    cfg = config(tmp_path, [src.url], centre.url + "/api/v1/write")
    data = tmp_path / "data"
    try:
        proc = start_collector(cfg)
        covered(data, now_ms(), proc)
        assert proc.terminate() == 0
        time.sleep(15)  # the collector is down: 15 scrapes per series it never saw
        for _ in range(3):  # killed mid-window, three times
            proc = start_collector(cfg)
            time.sleep(2.5)
            proc.kill()
        proc = start_collector(cfg)
        try:
            covered(data, now_ms(), proc)
        finally:
            assert proc.terminate() == 0
        assert_centre_holds_the_source(src, centre, data)
        assert receiver_errors(centre) == 0
    finally:
        src.stop()
        centre.stop()


def test_a_centre_down_for_several_cycles_loses_nothing(tmp_path: Path, exporter: Exporter) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)
    port = free_port()
    centre = central_prometheus(tmp_path / "centre", port=port)
    proc = start_collector(config(tmp_path, [src.url], centre.url + "/api/v1/write"))
    try:
        covered(tmp_path / "data", now_ms(), proc)
        centre.stop()
        time.sleep(16)  # three cycles with nowhere to send: the queue holds them
        centre = central_prometheus(tmp_path / "centre", port=port)  # same data dir, same port
        covered(tmp_path / "data", now_ms(), proc)
        wait_until(lambda: proc.metric_value("observe_queue_records", cluster="alpha") == 0, 30, message="queue drained")
        assert proc.terminate() == 0
        assert_centre_holds_the_source(src, centre, tmp_path / "data")
        assert receiver_errors(centre) == 0
    finally:
        proc.kill()
        src.stop()
        centre.stop()


def test_a_source_down_then_up_invents_nothing_and_the_other_cluster_goes_on(
    tmp_path: Path, exporter: Exporter
) -> None:
    port = free_port()
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL, port=port)
    other = cluster_prometheus(tmp_path / "other", exporter, external={"cluster": "b-own"}, name="other")
    centre = central_prometheus(tmp_path / "centre")
    cfg_path = config(tmp_path, [src.url], centre.url + "/api/v1/write")
    import yaml

    doc = yaml.safe_load(cfg_path.read_text())
    beta = {**doc["clusters"][0], "name": "beta", "prometheus": {**doc["clusters"][0]["prometheus"], "url": other.url}}
    doc["clusters"].append(beta)
    write_config(cfg_path, doc)
    proc = start_collector(cfg_path)
    try:
        covered(tmp_path / "data", now_ms(), proc)
        src.stop()
        down_from = now_ms()
        wait_until(lambda: proc.status()["clusters"]["alpha"]["prometheus"]["up"] is False, 20, message="alpha down")
        beta_before = cursor_ms(tmp_path / "data", "beta")
        # the other cluster is not held back: it goes on reading (every other cycle: min_window)
        wait_until(lambda: cursor_ms(tmp_path / "data", "beta") > beta_before, 16, message="beta reads on")
        src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL, port=port)
        up_from = now_ms()
        covered(tmp_path / "data", up_from + 2000, proc)
        assert proc.terminate() == 0
        assert_centre_holds_the_source(src, centre, tmp_path / "data")
        # nothing invented for the window the source was down: no sample of alpha's between the two
        got = raw(centre, cursor_ms(tmp_path / "data", "alpha"), ALPHA)
        inside = [ts for points in got.values() for ts, _ in points if down_from + 1500 < ts < up_from - 1500]
        assert inside == []
        assert receiver_errors(centre) == 0
    finally:
        proc.kill()
        for s in (src, other, centre):
            s.stop()


def test_an_ha_pair_fails_over_and_the_centre_sees_one_series_per_target(tmp_path: Path, exporter: Exporter) -> None:
    a = cluster_prometheus(tmp_path / "a", exporter, external={**EXTERNAL, "replica": "a"}, name="replica-a")
    b = cluster_prometheus(tmp_path / "b", exporter, external={**EXTERNAL, "replica": "b"}, name="replica-b")
    centre = central_prometheus(tmp_path / "centre")
    proc = start_collector(config(tmp_path, [a.url, b.url], centre.url + "/api/v1/write", replica_label="replica"))
    try:
        covered(tmp_path / "data", now_ms(), proc)
        a.stop()
        stopped = now_ms()
        covered(tmp_path / "data", stopped + 8000, proc)
        status = proc.status()["clusters"]["alpha"]["prometheus"]
        assert status["up"] is True and b.url in status["url"]
        assert proc.terminate() == 0
        end = cursor_ms(tmp_path / "data", "alpha")
        got = raw(centre, end)
        assert all(dict(labels).get("replica") is None for labels in got)  # one series, not one per replica
        want_series = {labels for labels in as_centre(raw(b, end), cluster="alpha", drop=("replica",))}
        assert set(got) == want_series
        # no gap: every second of the run has samples of every series at the centre
        for labels, points in got.items():
            times = [ts for ts, _ in points]
            gaps = [t2 - t1 for t1, t2 in itertools.pairwise(times)]
            assert max(gaps) < 3000, (dict(labels), max(gaps))
        assert receiver_errors(centre) == 0
    finally:
        proc.kill()
        for s in (a, b, centre):
            s.stop()


def test_a_source_behind_a_get_only_proxy_falls_back_to_federation_and_says_so(
    tmp_path: Path, exporter: Exporter
) -> None:
    import aiohttp
    from aiohttp import web

    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)

    async def get_only(request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=405, text="method not allowed by the proxy")
        async with aiohttp.ClientSession() as s, s.get(src.url + request.path_qs) as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", get_only)
    proxy = ThreadedApp(app).start()
    centre = central_prometheus(tmp_path / "centre")
    cfg = config(tmp_path, [proxy.url], centre.url + "/api/v1/write", protocol="auto")
    check = observe("check", "-c", str(cfg))
    rows = {line.split("│")[2].strip(): line for line in check.stdout.splitlines() if line.count("│") > 5}
    assert "WARNING: the collector falls back to federation" in rows["prometheus/remote_read"], check.stdout
    assert "series match" in rows["prometheus"], check.stdout  # ... and federation is probed instead
    proc = start_collector(cfg)
    try:
        doc = wait_until(
            lambda: (d := proc.status())["clusters"]["alpha"]["prometheus"].get("protocol") == "federate" and d,
            20, message="the fallback in /status",
        )  # fmt: skip
        section = doc["clusters"]["alpha"]["prometheus"]
        assert "405" in section["fallback_reason"]
        wait_until(lambda: proc.status()["clusters"]["alpha"]["prometheus"]["up"], 20, message="federating")
        assert proc.metric_value("observe_source_protocol", cluster="alpha", protocol="federate") == 1
        wait_until(lambda: raw(centre, now_ms()), 20, message="federated samples at the centre")
    finally:
        assert proc.terminate() == 0
        proxy.stop()
        src.stop()
        centre.stop()
    assert "falling back to federation" in proc.log_text()


def test_observe_check_reports_the_protocol_each_replica_speaks(tmp_path: Path, exporter: Exporter) -> None:
    src = cluster_prometheus(tmp_path / "src", exporter, external=EXTERNAL)
    centre = central_prometheus(tmp_path / "centre")
    try:
        # Prometheus applies its first targets after ~5s (the scrape manager's reload tick), then scrapes.
        wait_until(lambda: raw(src, now_ms() - 1500), 20, message="samples in the source")
        dead = f"http://127.0.0.1:{free_port()}"
        cfg = config(tmp_path, [src.url, dead], centre.url + "/api/v1/write", remote_read={"safety_lag": "1s"})
        done = observe("check", "-c", str(cfg))
        lines = [line for line in done.stdout.splitlines() if "prometheus/remote_read" in line]
        assert len(lines) == 2, done.stdout  # one row per replica
        assert "streamed_xor_chunks" in lines[0] and "FAIL" not in lines[0], done.stdout
        assert "FAIL" in lines[1] and "cannot connect" in done.stdout, done.stdout
        assert done.returncode == 1  # the dead replica fails the check
    finally:
        src.stop()
        centre.stop()


def observe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observe", *args], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


def _floats(points: list[tuple[int, int]]) -> list[tuple[int, float]]:
    import struct

    return [(ts, struct.unpack("<d", struct.pack("<Q", b))[0]) for ts, b in points]
