"""`observe demo --central prometheus`: a real Prometheus as the centre and a real Alertmanager behind it.

Both are the binaries on the PATH (Prometheus >= 2.33 for `--web.enable-remote-write-receiver`), run as
child processes on loopback ports with their data under `<data_dir>/centre/`, and stopped by the PIDs we
started (SIGTERM, then SIGKILL after 10 s). Prometheus receives the collector's remote write on
`/api/v1/write` (https://prometheus.io/docs/prometheus/latest/querying/api/#remote-write-receiver),
evaluates the rules `observe rules` generated for the demo's fleet (`rules/prometheus/*.yaml`) and sends
its alerts to the Alertmanager, which runs the generated `rules/alertmanager/alertmanager.yaml` with its
webhook receivers pointed at the demo (`alerts.receiver_url`).

`AlertWatch` follows the alerts as a person would: Prometheus' `GET /api/v1/alerts` (pending, firing;
an alert that leaves the list after firing has resolved) and Alertmanager's `GET /api/v2/alerts` (the
alerts it holds, resolved ones excluded).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

__all__ = ["AlertState", "AlertWatch", "RealCentre", "count_samples", "get_json", "missing_binaries"]

BINARIES: Final = ("prometheus", "prometheus-alertmanager")
_ALERTMANAGER_NAMES: Final = ("prometheus-alertmanager", "alertmanager")  # Debian's name, upstream's


def missing_binaries() -> list[str]:
    """The binaries `--central prometheus` needs that are not on the PATH."""
    out = [] if shutil.which("prometheus") else ["prometheus"]
    if not any(shutil.which(n) for n in _ALERTMANAGER_NAMES):
        out.append("prometheus-alertmanager")
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Process:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the PID we started, SIGKILL it if it is still there after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class RealCentre:
    """Prometheus + Alertmanager processes; `start()` blocks until both are ready (or raises RuntimeError)."""

    def __init__(self, workdir: Path, *, rules_dir: Path, evaluation_interval: float) -> None:
        self.workdir = workdir
        self.rules_dir = rules_dir
        self.evaluation_interval = evaluation_interval
        self.prometheus: _Process | None = None
        self.alertmanager: _Process | None = None

    @property
    def remote_write_url(self) -> str:
        assert self.prometheus is not None
        return f"{self.prometheus.url}/api/v1/write"

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        am_port, prom_port = _free_port(), _free_port()
        am_bin = next(shutil.which(n) for n in _ALERTMANAGER_NAMES if shutil.which(n))
        self.alertmanager = self._spawn(
            "alertmanager",
            [
                str(am_bin),
                f"--config.file={self.rules_dir / 'alertmanager' / 'alertmanager.yaml'}",
                f"--storage.path={self.workdir / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",  # one instance: no gossip port
                "--log.level=warn",
            ],
            f"http://127.0.0.1:{am_port}",
        )
        interval = f"{max(1, round(self.evaluation_interval))}s"
        config = {
            "global": {"evaluation_interval": interval, "scrape_interval": interval},
            "rule_files": [str(p) for p in sorted((self.rules_dir / "prometheus").glob("*.yaml"))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=True))
        self.prometheus = self._spawn(
            "prometheus",
            [
                str(shutil.which("prometheus")),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ],
            f"http://127.0.0.1:{prom_port}",
        )
        async with aiohttp.ClientSession() as session:
            for p, path in ((self.alertmanager, "/-/ready"), (self.prometheus, "/-/ready")):
                await _wait_ready(session, p, path, within=30.0)

    def stop(self) -> None:
        for p in (self.prometheus, self.alertmanager):
            if p is not None:
                p.stop()

    def _spawn(self, name: str, argv: list[str], url: str) -> _Process:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return _Process(name, url, proc, log_path)


async def _wait_ready(session: aiohttp.ClientSession, p: _Process, path: str, *, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.log_tail()}")
        try:
            async with session.get(p.url + path, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{p.name} not ready after {within:.0f}s:\n{p.log_tail()}")


@dataclass
class AlertState:
    """One alert (by name and cluster) as the demo saw it: seconds since the demo started, or None."""

    name: str
    cluster: str
    pending: float | None = None
    firing: float | None = None
    in_alertmanager: float | None = None
    resolved: float | None = None


@dataclass
class AlertWatch:
    """Polls Prometheus' and Alertmanager's alert lists; `poll()` returns what changed, as event texts."""

    centre: RealCentre
    started: float
    fleet: frozenset[str]  # the demo's cluster names: alerts outside them (Watchdog, ...) are not followed
    alerts: dict[tuple[str, str], AlertState] = field(default_factory=dict)

    async def poll(self, session: aiohttp.ClientSession) -> list[str]:
        assert self.centre.prometheus is not None and self.centre.alertmanager is not None
        now = time.time() - self.started
        events: list[str] = []
        try:
            prom = await get_json(session, f"{self.centre.prometheus.url}/api/v1/alerts")
            am = await get_json(session, f"{self.centre.alertmanager.url}/api/v2/alerts")
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return events  # the next poll tries again
        active: set[tuple[str, str]] = set()
        for a in prom["data"]["alerts"]:
            key = self._key(a["labels"])
            if key is None:
                continue
            active.add(key)
            st = self.alerts.setdefault(key, AlertState(*key))
            if st.resolved is not None and st.pending is not None:  # it came back: a new episode
                st.pending = st.firing = st.in_alertmanager = st.resolved = None
            if st.pending is None:  # pending is not told: many alerts wait out a long `for` and never fire
                st.pending = now
            if a["state"] == "firing" and st.firing is None:
                st.firing = now
                events.append(f"Prometheus: {key[0]}{{cluster={key[1]}}} [bold red]firing[/]")
        for a in am:
            key = self._key(a["labels"])
            held = self.alerts.get(key) if key is not None else None
            if (
                key is not None
                and held is not None
                and held.in_alertmanager is None
                and held.resolved is None
            ):
                held.in_alertmanager = now
                events.append(f"Alertmanager received {key[0]}{{cluster={key[1]}}}")
        for key, st in self.alerts.items():
            if key not in active and st.resolved is None and st.pending is not None:
                st.resolved = now
                if st.firing is not None:
                    events.append(f"Prometheus: {key[0]}{{cluster={key[1]}}} [green]resolved[/]")
        return events

    def _key(self, labels: dict[str, str]) -> tuple[str, str] | None:
        cluster = labels.get("cluster", "")
        return (labels.get("alertname", ""), cluster) if cluster in self.fleet else None


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
        resp.raise_for_status()
        return await resp.json()


async def count_samples(
    session: aiohttp.ClientSession, centre: RealCentre, cluster: str, window: float
) -> int:
    """The samples of `cluster`'s own series the central Prometheus holds over the last `window` seconds
    (not the collector's self-metrics, recording rules or ALERTS; staleness markers are not samples).

    Counted from the raw range vector: `count_over_time` over series of different names but the same
    labels fails in Prometheus 2.x ("vector cannot contain metrics with the same labelset")."""
    assert centre.prometheus is not None
    selector = f'{{cluster="{cluster}",self_cluster="",__name__!~"ALERTS|ALERTS_FOR_STATE|.+:.+"}}'
    query = f"{selector}[{max(1, int(window) + 1)}s]"
    async with session.post(
        f"{centre.prometheus.url}/api/v1/query",
        data={"query": query},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as resp:
        resp.raise_for_status()
        doc = await resp.json()
    return sum(len(series["values"]) for series in doc["data"]["result"])
