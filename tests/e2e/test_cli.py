"""The `observe` command as an operator meets it: `check`, exit codes, `/status`, `/healthz`, `/readyz`,
JSON logs and SIGTERM, against a real "cluster" Prometheus and a real central receiver."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector_proc import start_collector, write_config
from tests.e2e.test_metrics_path import Exporter, base_config, cluster_prometheus
from tests.e2e.test_tls_auth_real_prometheus import row, squeeze
from tests.fleet_fixtures import FEDERATE
from tests.servers import Server, free_port, prom_query, start_prometheus, wait_until

pytestmark = pytest.mark.real_server

TOKEN = "tok-3f9a-very-secret"


def observe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    exporter = Exporter()
    src = cluster_prometheus(tmp_path, "prom-alpha", exporter)
    centre = start_prometheus(tmp_path / "centre", remote_write_receiver=True, name="centre")
    yield src, centre
    src.stop()
    centre.stop()
    exporter.stop()


def config_with_token(tmp_path: Path, src: Server, centre: Server, **extra: Any) -> Path:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    clusters = [
        {"name": "alpha", "prometheus": {"url": src.url, "timeout": "3s", "bearer_token_file": str(token), **FEDERATE}},
        {"name": "gone", "prometheus": {"url": f"http://127.0.0.1:{free_port()}", "timeout": "1s", **FEDERATE}},
    ]
    return write_config(
        tmp_path / "observe.yaml", base_config(tmp_path, clusters, centre.url + "/api/v1/write", **extra)
    )


def test_check_probes_every_endpoint_and_fails_on_a_dead_one(
    tmp_path: Path, fleet: tuple[Server, Server]
) -> None:
    src, centre = fleet
    done = observe("check", "-c", str(config_with_token(tmp_path, src, centre)))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "config OK: 2 clusters" in out
    alpha = next(line for line in out.splitlines() if "alpha" in line)
    assert "ok" in alpha and "series match" in alpha
    gone = next(line for line in out.splitlines() if "gone" in line)
    assert "FAIL" in gone and "cannot connect" in gone
    central = next(line for line in out.splitlines() if "remote_write" in line)
    assert "ok" in central and "accepted" in central
    assert TOKEN not in out + done.stderr


FEDERATE_WITH_A_BAD_LINE = (
    "# TYPE up untyped\n"
    'up{instance="a:9100",job="node"} 1 1700000000000\n'
    'up{instance="b:9100",job="node"} 1 1700000000000\n'
    "broken{ 1\n"
)


@pytest.fixture
def bad_federate() -> Iterator[str]:
    """A "Prometheus" whose /federate body has one bad line (a real one never serves one: a proxy or an
    exporter passed through can); its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = FEDERATE_WITH_A_BAD_LINE.encode()
            self.send_response(200 if self.path.startswith("/federate?") else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_check_parses_the_federate_body_and_fails_on_bad_lines(
    tmp_path: Path, fleet: tuple[Server, Server], bad_federate: str
) -> None:
    src, centre = fleet
    alpha = {"name": "alpha", "prometheus": {"url": src.url, "timeout": "3s", **FEDERATE}}
    broken = {"name": "broken", "prometheus": {"url": bad_federate, "timeout": "3s", **FEDERATE}}
    receiver = centre.url + "/api/v1/write"
    good = observe(
        "check", "-c", str(write_config(tmp_path / "good.yaml", base_config(tmp_path, [alpha], receiver)))
    )
    assert good.returncode == 0, good.stdout + good.stderr  # the baseline: the real Prometheus parses clean
    done = observe(
        "check",
        "-c",
        str(write_config(tmp_path / "bad.yaml", base_config(tmp_path, [alpha, broken], receiver))),
    )
    assert done.returncode == 1, done.stdout + done.stderr  # the bad line alone fails the check
    alpha_cells, broken_cells = row(done.stdout, "alpha"), row(done.stdout, "broken")
    assert alpha_cells[3] == "ok", alpha_cells
    # cluster, endpoint, url, result, detail, seconds (each cell's wrapped lines joined, spaces removed)
    assert broken_cells[1:5] == [
        "prometheus",
        squeeze(f"{bad_federate}/federate"),  # the URL probed, without its match[] query
        "FAIL",
        squeeze("2 series match, 1 bad line (first: line 4: missing '}' in the labels of 'broken')"),
    ], broken_cells
    rows = done.stdout.splitlines()
    central = next(r for r in rows if "remote_write" in r)
    assert "ok" in central and "accepted" in central


def test_check_rejects_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters:\n  - name: a\n    prometheus: {url: 'htp://x', timout: 3s}\n")
    done = observe("check", "-c", str(bad))
    assert done.returncode == 2
    assert "clusters[0].prometheus.url: not a URL: 'htp://x'" in done.stderr
    assert "clusters[0].prometheus.timout: unknown key" in done.stderr
    assert observe("run", "-c", str(tmp_path / "missing.yaml")).returncode == 2
    assert observe("frobnicate").returncode == 2


def test_service_endpoints_json_logs_and_sigterm(tmp_path: Path, fleet: tuple[Server, Server]) -> None:
    src, centre = fleet
    cfg = config_with_token(tmp_path, src, centre, interval="4s")
    proc = start_collector(cfg)
    try:
        with urllib.request.urlopen(proc.url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(proc.url + "/readyz", timeout=5) as resp:
            assert resp.status == 200
        doc = wait_until(
            lambda: all((d := proc.status())["clusters"][c]["prometheus"]["last_finished"] for c in ("gone", "alpha"))
            and d,
            15,
            message="a finished cycle of both clusters in /status",
        )
        assert doc["clusters"]["alpha"]["prometheus"]["up"] is True, doc["clusters"]["alpha"]
        assert doc["clusters"]["alpha"]["prometheus"]["series"] > 40
        assert doc["clusters"]["gone"]["prometheus"]["up"] is False
        assert doc["clusters"]["gone"]["prometheus"]["last_reason"] == "unreachable"
        assert "alpha/metrics" in doc["queues"]
        raw = json.dumps(doc)
        assert TOKEN not in raw and "token" not in raw  # neither the secret nor where it lives
        wait_until(lambda: prom_query(centre, 'up{cluster="alpha"}'), 20, message="alpha at the centre")
        assert TOKEN not in proc.metrics()
    finally:
        code = proc.terminate()
    assert code == 0  # SIGTERM: stop pulling, flush, exit 0
    lines = [json.loads(line) for line in proc.log_text().splitlines() if line.startswith("{")]
    msgs = [rec["msg"] for rec in lines]
    assert "collector started" in msgs and "collector stopped" in msgs
    failures = [rec for rec in lines if rec["msg"] == "pull failed"]
    assert failures and all(rec["cluster"] == "gone" and rec["reason"] == "unreachable" for rec in failures)
    assert TOKEN not in proc.log_text()


def test_version_and_module_entry_point() -> None:
    done = observe("--version")
    assert done.returncode == 0 and done.stdout.startswith("observe ")
