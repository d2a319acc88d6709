"""`observe demo`: the real collector against simulated clusters, metrics and logs, for about a minute.

It serves N simulated clusters on loopback (`observe.demo.serve`: a simulated Prometheus answering
`/federate` and a simulated Loki answering `query_range` per cluster), builds a config in memory
pointing at them, and runs the real collector loop (`Collector.run`) with a live view per cluster and
signal (state, series, samples/s, entries/s, lag, queue). With no centre (the default) both signals go
to the embedded Parquet store under `data_dir`; with `--central prometheus` a real Prometheus receives
the metrics (remote write) and evaluates the rules generated for this fleet, with a real Alertmanager
behind it (observe/demo/centre.py), while the logs still go to the embedded store.

The scenario, as fractions of `--duration` (each step announced):
    0.25  the last cluster degrades: a node goes NotReady, a container per namespace crash-loops (and
          logs its crash), the apiserver answers 5xx
    0.40  it is taken off the network: its Prometheus and Loki answer 503 (its pods keep logging)
    0.70  it is back and healthy: the collector catches up its logs from where its cursor stopped
At the end (or on Ctrl-C) the collector flushes and stops, and the summary counts per cluster what the
simulation produced against what arrived (observe/demo/summary.py): for metrics the samples of every
cycle the collector completed, for logs every entry of the covered window, exactly. With a centre it
also shows the cluster-missing alert firing and resolving for that cluster only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from observe.config import Config, parse_config
from observe.demo.fleet import SimulatedCluster
from observe.demo.logs import NS
from observe.demo.serve import SimulatedFleet
from observe.generate.dashboards import write_dashboards
from observe.generate.rules import write_rules
from observe.model import LOGS, METRICS
from observe.sources.log_cursors import Cursor, CursorStore

__all__ = ["run_demo"]

log = logging.getLogger("observe.demo")

SELECTOR: Final = '{namespace=~".+"}'  # every stream of the simulated Loki
SELF_CLUSTER: Final = "observe-demo"
ALERT: Final = "FleetClusterTelemetryMissing"  # the generated per-cluster "no telemetry" alert (fleet.py)
# (fraction of --duration, step); the steps are _Scenario's methods
_STEPS: Final = ((0.25, "degrade"), (0.40, "take_down"), (0.70, "bring_back"))
Central = Literal["none", "prometheus"]


@dataclass(frozen=True)
class _Spec:
    name: str
    labels: dict[str, str]
    nodes: int
    namespaces: int
    pods_per_namespace: int
    external_labels: dict[str, str]


_FLEET: Final = (
    _Spec(
        "prod-eu-1", {"region": "eu-west-1", "provider": "aws", "env": "prod"}, 4, 5, 9,
        {"prometheus": "monitoring/k8s", "prometheus_replica": "prometheus-k8s-0"},
    ),
    # This Prometheus already stamps its own cluster name: ours wins, theirs moves to exported_cluster.
    _Spec(
        "prod-us-1", {"region": "us-east-1", "provider": "gcp", "env": "prod"}, 3, 4, 6,
        {"cluster": "gke_acme_us-east1_prod", "prometheus": "monitoring/k8s",
         "prometheus_replica": "prometheus-k8s-1"},
    ),
    _Spec(
        "edge-onprem-1", {"region": "on-prem-fra", "provider": "onprem", "env": "prod"}, 3, 3, 4,
        {"prometheus": "monitoring/prometheus", "prometheus_replica": "prometheus-0"},
    ),
)  # fmt: skip


def _specs(n: int) -> list[_Spec]:
    out = list(_FLEET[:n])
    for i in range(len(out), n):
        out.append(
            _Spec(f"sim-{i + 1}", {"region": f"sim-{i + 1}", "provider": "sim", "env": "dev"}, 2, 2, 3, {})
        )
    return out


@dataclass
class Seen:
    """What the demo saw of the run; the summary counts against it. Times are Unix seconds."""

    started: float  # the collector's start: every log cursor starts here
    clusters: list[str]
    victim: str
    ok_cycles: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metrics (start, end)
    failed: dict[tuple[str, str], int] = field(default_factory=dict)  # (cluster, signal) -> failed cycles
    ok_after_back: set[tuple[str, str]] = field(default_factory=set)
    last: dict[tuple[str, str], Any] = field(default_factory=dict)  # the latest outcome
    last_ok: dict[tuple[str, str], float] = field(default_factory=dict)
    back_at: float | None = None
    schedule_done: bool = False
    interrupted: bool = False


def run_demo(
    *,
    clusters: int,
    duration: float,
    interval: float,
    data_dir: Path | None,
    console: Console,
    central: Central = "none",
) -> int:
    """Run the demo; returns the exit code (0 nothing lost, 1 a loss or a failure, 2 bad arguments)."""
    if clusters < 1 or not 0 < interval <= 30 or duration < 8 * interval:
        console.print(
            f"[red]observe demo:[/] need --clusters >= 1, 0 < --interval <= 30 and --duration >= 8 intervals "
            f"(got {clusters}, {interval:g}, {duration:g})"
        )
        return 2
    if central == "prometheus":
        from observe.demo.centre import missing_binaries

        missing = missing_binaries()
        if missing:
            console.print(f"[red]observe demo --central prometheus:[/] not on the PATH: {', '.join(missing)}")
            return 2
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="observe-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    quiet = logging.getLogger().getEffectiveLevel() >= logging.INFO
    if quiet:  # the live view says what happens; per-cycle warnings of the outage would scroll it away
        logging.getLogger("observe").setLevel(logging.ERROR)
    try:
        return asyncio.run(
            _demo(
                _specs(clusters), duration=duration, interval=interval, data_dir=data_dir, console=console,
                central=central,
            )
        )  # fmt: skip
    finally:
        if quiet:
            logging.getLogger("observe").setLevel(logging.NOTSET)


def _config(
    specs: list[_Spec], fleet: SimulatedFleet, *, interval: float, data_dir: Path, duration: float,
    remote_write: str | None = None, receiver_url: str | None = None,
) -> Config:  # fmt: skip
    # The production floor is a 1s interval; simulated clusters on loopback can take faster cycles, so the
    # config is validated at >= 1s and the interval lowered afterwards (model_copy does not re-validate).
    timeout = min(10.0, 0.8 * interval)
    outage = (_STEPS[2][0] - _STEPS[1][0]) * duration
    missing_for = max(2.0, min(10.0, round(outage / 3)))  # fires a third into the outage, at the latest 10s
    data: dict[str, Any] = {
        "interval": max(1.0, interval),
        "data_dir": str(data_dir),
        "self_cluster": SELF_CLUSTER,
        "shutdown_timeout": "15s",
        # Read each Loki up to a second ago: the simulated one writes every line exactly when it is due.
        "logs": {"safety_lag": 1.0},
        "alerts": {
            "evaluation_interval": 1.0,
            "cluster_missing_for": missing_for,
            "collector_down_for": missing_for,
            **({"receiver_url": receiver_url} if receiver_url else {}),
        },
        "clusters": [
            {
                "name": s.name,
                "labels": s.labels,
                # the simulated Prometheus serves /federate only (no remote-read)
                "prometheus": {"url": fleet.url(s.name), "timeout": timeout, "protocol": "federate"},
                "loki": {"url": fleet.loki_url(s.name), "timeout": timeout, "selectors": [SELECTOR]},
            }
            for s in specs
        ],
    }
    if remote_write is not None:
        data["central"] = {"remote_write": {"url": remote_write}}
    cfg = parse_config(data, source="observe demo")
    return cfg.model_copy(update={"interval": interval}) if interval < 1 else cfg


class _Scenario:
    """The outage, one announced step at a time."""

    def __init__(self, fleet: SimulatedFleet, victim: SimulatedCluster, seen: Seen) -> None:
        self.fleet, self.victim, self.seen = fleet, victim, seen

    def degrade(self) -> str:
        self.victim.fail()
        return (
            f"[yellow]{self.victim.name} degrades:[/] a node goes NotReady, a container per namespace "
            "crash-loops (and logs its crash), the apiserver answers 5xx"
        )

    def take_down(self) -> str:
        self.fleet.set_available(self.victim.name, False)
        return (
            f"[bold yellow]{self.victim.name} is taken down:[/] its Prometheus and Loki answer 503 "
            "(its pods keep logging into its Loki)"
        )

    def bring_back(self) -> str:
        self.victim.recover()
        self.fleet.set_available(self.victim.name, True)
        self.seen.back_at = time.time()
        return f"[green]{self.victim.name} is back and healthy:[/] the collector resumes from its cursors"


async def _demo(
    specs: list[_Spec],
    *,
    duration: float,
    interval: float,
    data_dir: Path,
    console: Console,
    central: Central,
) -> int:
    from observe.service import Collector  # the service pulls in every component; only the demo run needs it

    names = [s.name for s in specs]
    sims = [
        SimulatedCluster(
            s.name, nodes=s.nodes, namespaces=s.namespaces, pods_per_namespace=s.pods_per_namespace, seed=i,
            peers=[n for n in names if n != s.name],
        )
        for i, s in enumerate(specs)
    ]  # fmt: skip
    victim = sims[-1]
    external = {s.name: s.external_labels for s in specs}
    centre: Any = None
    webhook = _Webhook()
    async with SimulatedFleet(sims, external_labels=external, loki=True) as fleet:
        kw: dict[str, Any] = {"interval": interval, "data_dir": data_dir, "duration": duration}
        if central == "prometheus":
            from observe.demo.centre import RealCentre

            await webhook.start()
            cfg = _config(specs, fleet, receiver_url=webhook.url, **kw)
            write_rules(cfg, data_dir / "rules")
            centre = RealCentre(data_dir / "centre", rules_dir=data_dir / "rules", evaluation_interval=1.0)
            try:
                await centre.start()
            except RuntimeError as exc:
                centre.stop()
                await webhook.stop()
                console.print(f"[red]the central Prometheus or Alertmanager did not start:[/] {exc}")
                return 1
            cfg = _config(specs, fleet, remote_write=centre.remote_write_url, receiver_url=webhook.url, **kw)
        else:
            cfg = _config(specs, fleet, **kw)
        _intro(cfg, sims, fleet, centre, console, duration=duration)
        started = time.time()
        for s in sims:  # every cursor starts now, so the covered window is known to the nanosecond
            CursorStore(Path(cfg.data_dir) / "log_cursors", s.name).save(SELECTOR, Cursor(int(started * NS)))
        seen = Seen(started=started, clusters=names, victim=victim.name)
        collector = Collector(cfg, serve_http=False)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupted.set)
        watch: Any = None
        try:
            watch = await _watch(
                collector, task, cfg, seen, _Scenario(fleet, victim, seen), centre,
                duration=duration, interrupted=interrupted, console=console,
            )  # fmt: skip
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), cfg.shutdown_timeout + 10)
            if not task.done():
                task.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
        failed = task.done() and not task.cancelled() and task.exception() is not None
        if failed:
            console.print(f"[red]the collector failed:[/] {task.exception()!r}")
        from observe.demo.summary import summarize

        try:
            code = await summarize(cfg, seen, fleet, centre, watch, console=console)
        finally:
            if centre is not None:
                centre.stop()
            await webhook.stop()
    if failed or watch is None:
        code = 1
    return _generate(cfg, data_dir, console) or code


def _intro(
    cfg: Config, sims: list[SimulatedCluster], fleet: SimulatedFleet, centre: Any, console: Console, *,
    duration: float,
) -> None:  # fmt: skip
    where = (
        f"metrics to a real Prometheus at {centre.prometheus.url} (Alertmanager {centre.alertmanager.url}), "
        "logs to the embedded store"
        if centre is not None
        else "metrics and logs to the embedded store"
    )
    console.print(
        f"[bold]observe demo[/]: {len(sims)} simulated clusters for {duration:g}s, a cycle every "
        f"{cfg.interval:g}s; {where} under {cfg.data_dir}"
    )
    for s in sims:
        console.print(
            f"  {s.name:<16} simulated Prometheus {fleet.url(s.name)}/federate "
            f"({s.series_count(time.time()):,} series), simulated Loki {fleet.loki_url(s.name)} "
            f"({len(s.logs.streams)} streams)",
            highlight=False,
        )


async def _watch(
    collector: Any, task: asyncio.Task[None], cfg: Config, seen: Seen, scenario: _Scenario, centre: Any, *,
    duration: float, interrupted: asyncio.Event, console: Console,
) -> Any:  # fmt: skip
    """Follow every pipeline's last outcome, run the scenario and the live view until `duration` has
    passed (after the centre's warm-up); returns the alert watch (or True without a centre)."""
    steps = list(_STEPS)
    alert_watch: Any = True
    session = aiohttp.ClientSession() if centre is not None else None
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:

            def say(text: str, t: float) -> None:
                live.console.print(f"[dim]t={t:5.1f}s[/] {text}")

            begin = time.time()
            if centre is not None:
                from observe.demo.centre import AlertWatch

                await _warm_up(session, centre, seen, say, interrupted, lambda: _follow(collector, seen))  # type: ignore[arg-type]
                begin = time.time()
                alert_watch = AlertWatch(centre, begin, frozenset(seen.clusters))
                say(
                    "the central Prometheus has every cluster's telemetry and no alert: the scenario starts",
                    0,
                )
            next_alert_poll = 0.0
            while not interrupted.is_set():
                now = time.time()
                t = now - begin
                if task.done():
                    say("[red]the collector stopped unexpectedly[/]", t)
                    return None
                _follow(collector, seen)
                while steps and t >= steps[0][0] * duration:
                    _, step = steps.pop(0)
                    say(getattr(scenario, step)(), t)
                if centre is not None and now >= next_alert_poll:
                    next_alert_poll = now + 1.0
                    for event in await alert_watch.poll(session):
                        say(event, t)
                live.update(_view(collector, seen, t, duration))
                if t >= duration:
                    seen.schedule_done = True
                    say("time is up: the collector stops pulling, flushes its queues and stops", t)
                    break
                await asyncio.sleep(0.1)
            if interrupted.is_set():
                seen.interrupted = True
                say("[yellow]interrupted:[/] the collector flushes its queues and stops", time.time() - begin)
                if seen.back_at is None and steps and steps[0][1] == "bring_back":
                    say(scenario.bring_back(), time.time() - begin)
            return alert_watch
    finally:
        console.print()  # the live view's last frame stays; what follows starts below it
        if session is not None:
            await session.close()


async def _warm_up(
    session: aiohttp.ClientSession, centre: Any, seen: Seen, say: Callable[[str, float], None],
    interrupted: asyncio.Event, follow: Callable[[], None],
) -> None:  # fmt: skip
    """Until Prometheus holds `up` of every cluster and ALERT is not active for any (bounded: 60 s): the
    rules evaluate before the first remote write arrives, when every cluster is still missing."""
    from observe.demo.centre import get_json

    say("waiting for every cluster's first samples to reach the central Prometheus", 0)
    deadline = time.monotonic() + 60
    query = (
        f"{centre.prometheus.url}/api/v1/query?query=count%20by%20(cluster)%20(up%7Bself_cluster%3D%22%22%7D)"
    )
    while time.monotonic() < deadline and not interrupted.is_set():
        follow()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            up = {r["metric"].get("cluster") for r in (await get_json(session, query))["data"]["result"]}
            alerts = (await get_json(session, f"{centre.prometheus.url}/api/v1/alerts"))["data"]["alerts"]
            if set(seen.clusters) <= up and not [a for a in alerts if a["labels"].get("alertname") == ALERT]:
                return
        await asyncio.sleep(0.1)
    say("[yellow]the central Prometheus is still missing a cluster after 60 s; going on[/]", 0)


def _follow(collector: Any, seen: Seen) -> None:
    """Record each pipeline's newly finished cycle."""
    if not collector.ready:
        return
    for signal_name in (METRICS, LOGS):
        for name, pipeline in collector.pulling(signal_name).items():
            key = (name, signal_name)
            outcome = pipeline.last
            before = seen.last.get(key)
            if outcome.finished_at is None or (
                before is not None and before.finished_at == outcome.finished_at
            ):
                continue
            seen.last[key] = outcome
            if outcome.ok:
                seen.last_ok[key] = outcome.finished_at
                if signal_name == METRICS:
                    start = outcome.finished_at - outcome.duration
                    seen.ok_cycles.setdefault(name, []).append((start, outcome.finished_at))
                if seen.back_at is not None and outcome.finished_at > seen.back_at:
                    seen.ok_after_back.add(key)
            else:
                seen.failed[key] = seen.failed.get(key, 0) + 1


def _view(collector: Any, seen: Seen, t: float, duration: float) -> Group:
    table = Table(title=None, expand=False)
    for col, justify in (
        ("cluster", "left"), ("signal", "left"), ("state", "left"), ("series", "right"),
        ("samples/s", "right"), ("entries/s", "right"), ("lag", "right"), ("queued (oldest)", "right"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    queues = collector.status_document()["queues"] if collector.ready else {}
    interval = collector.cfg.interval
    now = time.time()
    for name in seen.clusters:
        for signal_name in (METRICS, LOGS):
            key = (name, signal_name)
            o = seen.last.get(key)
            q = queues.get(f"{name}/{signal_name}", {})
            queue = (
                f"{q['records']} ({q['oldest_age_seconds']:.0f}s)"
                if q.get("records")
                else ("0" if q else "-")
            )
            if o is None:
                state = "[dim]starting[/]"
            else:
                state = "[green]up[/]" if o.ok else f"[red]DOWN[/] ({o.reason})"
            series = samples = entries = lag = "-"
            if o is not None and signal_name == METRICS:
                series = f"{o.series:,}"
                samples = f"{o.samples / interval:,.0f}" if o.ok else "0"
                if key in seen.last_ok:
                    lag = f"{now - seen.last_ok[key]:.1f}s"
            elif o is not None:
                entries = f"{o.entries / interval:,.0f}" if o.ok else "0"
                lag = "-" if o.lag_seconds is None else f"{o.lag_seconds:.1f}s"
            table.add_row(name, signal_name, state, series, samples, entries, lag, queue)
    head = Text.from_markup(f"[bold]t={t:5.1f}s[/] of {duration:g}s   (Ctrl-C stops early, with the summary)")
    return Group(head, table)


class _Webhook:
    """Alertmanager's webhook receivers, in-process on loopback: the notifications it sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from observe.demo.serve import serve_app

        app = web.Application()
        app.router.add_post("/{receiver}", self._receive)
        self._runner, self.url = await serve_app(app, "127.0.0.1")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        with contextlib.suppress(ValueError):
            self.received.append({"receiver": request.match_info["receiver"], **await request.json()})
        return web.Response(text="ok")


def _generate(cfg: Config, data_dir: Path, console: Console) -> int:
    """Dashboards and rules for the demo fleet; 1 if a generator failed."""
    code = 0
    generators: tuple[tuple[Callable[[Config, Path], list[Path]], str], ...] = (
        (write_dashboards, "dashboards"),
        (write_rules, "rules"),
    )
    for write, sub in generators:
        out = data_dir / sub
        try:
            paths = write(cfg, out)
        except Exception as exc:  # a generator bug must not hide the demo's results above
            log.exception("generator failed", extra={"generator": f"{write.__module__}.{write.__name__}"})
            console.print(f"[red]{sub}: generation failed: {exc}[/]")
            code = 1
            continue
        console.print(f"{sub}: wrote {len(paths)} files under {out}")
    return code
