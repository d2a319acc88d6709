"""The status page at `/` as an SRE sees it through `kubectl port-forward`: a real `observe run` pulling a
real Prometheus (UP) and a cluster whose port is closed (DOWN), rendered by a real headless Chromium.

Chromium is Debian's `chromium` (the README's test command installs it); missing, the test skips on a
developer's machine and fails in CI, as the real-server tests do. Each run has its own profile dir and a
bounded time, and a hung Chromium is killed by the process group we started, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector_proc import start_collector, write_config
from tests.e2e.test_metrics_path import Exporter, base_config, cluster_prometheus
from tests.fleet_fixtures import FEDERATE
from tests.servers import Server, free_port, require_binary, start_prometheus, wait_until
from tests.status_page_dom import parse

pytestmark = pytest.mark.real_server

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "status-page.png"
CHROMIUM_TIMEOUT = 60.0  # a cold headless start takes 1-3 s here; a minute means it hung


def chromium(binary: str, profile: Path, *args: str) -> str:
    """Run headless Chromium once with a fresh profile; its stdout. Killed (its whole process group, which
    we started) if it outlives CHROMIUM_TIMEOUT or leaves helpers behind."""
    proc = subprocess.Popen(
        [
            binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
            # nothing but the page: no first-run UI, no update or sync traffic, no extensions
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
            *args,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium {' '.join(args)} hung for {CHROMIUM_TIMEOUT}s") from None
    finally:
        # its crash handler may outlive it; gone already (the usual case) is fine
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{err[-3000:]}"
    return out


@pytest.fixture
def chromium_binary() -> str:
    """Debian's chromium, looked for before any server starts (a skip, or in CI a failure, if missing)."""
    return require_binary("chromium")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    exporter = Exporter()
    src = cluster_prometheus(tmp_path, "prom-alpha", exporter)
    centre = start_prometheus(tmp_path / "centre", remote_write_receiver=True, name="centre")
    yield src, centre
    src.stop()
    centre.stop()
    exporter.stop()


def test_status_page_in_chromium_shows_up_and_down_clusters(
    tmp_path: Path, chromium_binary: str, fleet: tuple[Server, Server]
) -> None:
    binary = chromium_binary
    src, centre = fleet
    clusters = [
        {"name": "alpha", "prometheus": {"url": src.url, "timeout": "3s", **FEDERATE}},
        {"name": "gone", "prometheus": {"url": f"http://127.0.0.1:{free_port()}", "timeout": "1s", **FEDERATE}},
    ]
    # 7s: the page's refresh must be the collector's interval (inside the page's 5 s .. 5 min bounds)
    cfg = base_config(tmp_path, clusters, centre.url + "/api/v1/write", interval="7s")
    proc = start_collector(write_config(tmp_path / "observe.yaml", cfg))
    try:

        def both_finished() -> dict[str, Any] | None:
            doc = proc.status()
            done = all(doc["clusters"][c]["prometheus"]["last_finished"] for c in ("alpha", "gone"))
            return doc if done else None

        doc = wait_until(both_finished, 20, message="a finished cycle of both clusters in /status")
        url = proc.url + "/"
        dom_text = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
        shot = tmp_path / "status-page.png"
        chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,800", url)
    finally:
        assert proc.terminate() == 0, proc.log_text()[-3000:]

    page = parse(dom_text)
    assert [(r.cluster, r.state) for r in page.rows] == [("gone", "DOWN"), ("alpha", "UP")]  # DOWN first

    alpha = page.row("alpha").cells
    series = re.fullmatch(r"([\d,]+) series", alpha["size"])
    assert series and int(series.group(1).replace(",", "")) > 0, alpha
    assert alpha["last-success"].endswith("ago") and alpha["error"] == "", alpha

    gone = page.row("gone").cells
    error = " ".join(doc["clusters"]["gone"]["prometheus"]["last_error"].split())
    assert error and error in gone["error"] and gone["error"].startswith("unreachable"), gone
    assert gone["last-success"].startswith("—"), gone  # it never succeeded

    assert page.links["/metrics"] == "metrics" and page.links["/status"] == "status"
    assert page.refresh == "7"
    assert page.scripts == 0 and page.external_references() == [], page.external_references()
    assert "READY" in dom_text and centre.url in dom_text  # the header: ready, the metrics sink

    assert shot.stat().st_size > 10_000  # a rendered page, not a blank 1280x800
    ARTIFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)
