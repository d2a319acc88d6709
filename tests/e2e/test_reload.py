"""Live changes to the fleet while `observe run` runs, against real Prometheus servers: a cluster added to
the config file is pulled within a cycle, a removed one is stopped, marked stale at the centre, drained and
its state deleted; a config with a mistake (on SIGHUP) is refused and the running one goes on."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.collector_proc import CollectorProcess, start_collector, write_config
from tests.e2e.remote_read_lab import Exporter, central_prometheus, cluster_prometheus
from tests.fleet_fixtures import FEDERATE
from tests.servers import prom_query, wait_until

pytestmark = pytest.mark.real_server


def cluster(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "prometheus": {"url": url, "timeout": "1500ms", "match": ['{job="lab"}'], **extra}}


def doc(tmp: Path, centre_url: str, clusters: list[dict[str, Any]], port: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "interval": "2s",
        "data_dir": str(tmp / "data"),
        "self_metrics": False,
        "shutdown_timeout": "5s",
        "removal_grace": "3s",
        "remote_read": {"safety_lag": "1s", "start_from": "1m", "min_window": "0s"},  # every cycle reads
        "clusters": clusters,
        "central": {"remote_write": {"url": centre_url + "/api/v1/write"}},
    }
    if port is not None:
        d["listen"] = f"127.0.0.1:{port}"
    return d


def rewrite(path: Path, proc: CollectorProcess, content: dict[str, Any]) -> None:
    write_config(path, {**content, "listen": f"127.0.0.1:{proc.port}"})


def test_clusters_added_removed_and_a_bad_config_refused_while_running(tmp_path: Path) -> None:
    exporter = Exporter().start()
    a = cluster_prometheus(tmp_path / "a", exporter, external={}, name="a")
    b = cluster_prometheus(tmp_path / "b", exporter, external={}, name="b")
    centre = central_prometheus(tmp_path / "centre")
    path = tmp_path / "observe.yaml"
    alpha = cluster("alpha", a.url, **FEDERATE)  # federation: its removal shows as staleness at the centre
    write_config(path, doc(tmp_path, centre.url, [alpha]))
    proc = start_collector(path)
    try:
        wait_until(lambda: prom_query(centre, 'lab_scrapes_total{cluster="alpha"}'), 40, message="alpha at the centre")

        # added: beta, read with remote-read, pulled within a cycle of the file changing
        rewrite(path, proc, doc(tmp_path, centre.url, [alpha, cluster("beta", b.url)]))
        wait_until(lambda: prom_query(centre, 'lab_scrapes_total{cluster="beta"}'), 30, message="beta at the centre")
        assert set(proc.status()["clusters"]) == {"alpha", "beta"}

        # a mistake, on SIGHUP: refused, said with its YAML path, the running config goes on
        bad = doc(tmp_path, centre.url, [alpha, cluster("beta", b.url)])
        bad["clusters"][1]["prometheus"]["timout"] = "1s"
        rewrite(path, proc, bad)
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config reload refused" in proc.log_text(), 15, message="the refusal in the log")
        assert "clusters[1].prometheus.timout: unknown key" in proc.log_text()
        # ...and a change only a restart applies is refused the same way
        later = doc(tmp_path, centre.url, [alpha, cluster("beta", b.url)])
        later["interval"] = "3s"
        rewrite(path, proc, later)
        wait_until(lambda: "interval: changed, and only a restart applies it" in proc.log_text(), 15, message="refused")
        before = proc.status()["clusters"]["beta"]["prometheus"]["last_finished"]
        wait_until(lambda: proc.status()["clusters"]["beta"]["prometheus"]["last_finished"] != before, 10,
                   message="beta still pulled")  # fmt: skip

        # removed: alpha stops, its series go stale at the centre at once, its queue drains and is deleted
        rewrite(path, proc, doc(tmp_path, centre.url, [cluster("beta", b.url)]))
        wait_until(lambda: set(proc.status()["clusters"]) == {"beta"}, 15, message="alpha gone from /status")
        wait_until(lambda: not prom_query(centre, 'lab_scrapes_total{cluster="alpha"}'), 15,
                   message="alpha's series stale at the centre")  # fmt: skip
        wait_until(lambda: not (tmp_path / "data" / "queue" / "alpha").exists(), 20, message="alpha's queue removed")
        assert "cluster retired" in proc.log_text()
        assert prom_query(centre, 'lab_scrapes_total{cluster="beta"}')  # beta goes on
        time.sleep(0.5)
    finally:
        code = proc.terminate()
        for s in (a, b, centre):
            s.stop()
        exporter.stop()
    assert code == 0
