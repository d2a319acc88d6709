"""`observe demo`: the collector on its embedded default, against simulated clusters, in a few seconds.

It serves N simulated clusters on loopback ports (`observe.demo.serve`), builds a config in memory
pointing at them with no central receiver (so the embedded Parquet store under `data_dir` is the sink),
runs the real collector loop (`Collector.run`) for a few cycles, then reads the store back with pandas
and prints what arrived per cluster. Halfway through, the last cluster degrades (a node goes NotReady,
containers crash-loop, the apiserver answers 5xx: its node's series vanish and get staleness markers);
for the final cycle its Prometheus stops answering (every series it had gets a staleness marker). One
cluster's Prometheus already carries a `cluster` external label, which the collector keeps as
`exported_cluster`: the "collisions" column. Dashboards and rules for the same config are generated
into `data_dir`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from observe.config import Config, parse_config
from observe.demo.fleet import SimulatedCluster
from observe.demo.serve import SimulatedFleet
from observe.generate.dashboards import write_dashboards
from observe.generate.rules import write_rules

__all__ = ["run_demo"]

log = logging.getLogger("observe.demo")


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


def run_demo(*, clusters: int, cycles: int, interval: float, data_dir: Path | None, console: Console) -> int:
    """Run the demo; returns the exit code (0 ok, 1 the collector or the store failed, 2 bad arguments)."""
    if clusters < 1 or cycles < 1 or not 0 < interval <= 300:
        console.print(
            f"[red]observe demo:[/] need --clusters >= 1, --cycles >= 1 and 0 < --interval <= 300 "
            f"(got {clusters}, {cycles}, {interval})"
        )
        return 2
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="observe-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(
        _demo(_specs(clusters), cycles=cycles, interval=interval, data_dir=data_dir, console=console)
    )


def _config(specs: list[_Spec], fleet: SimulatedFleet, *, interval: float, data_dir: Path) -> Config:
    # The production floor is a 1s interval; simulated clusters on loopback can take faster cycles, so the
    # config is validated at >= 1s and the interval lowered afterwards (model_copy does not re-validate).
    timeout = min(10.0, 0.8 * interval)
    cfg = parse_config(
        {
            "interval": max(1.0, interval),
            "data_dir": str(data_dir),
            "self_cluster": "observe-demo",
            "shutdown_timeout": "15s",
            "clusters": [
                {
                    "name": s.name,
                    "labels": s.labels,
                    "prometheus": {"url": fleet.url(s.name), "timeout": timeout},
                }
                for s in specs
            ],
        },
        source="observe demo",
    )
    return cfg.model_copy(update={"interval": interval}) if interval < 1 else cfg


async def _demo(specs: list[_Spec], *, cycles: int, interval: float, data_dir: Path, console: Console) -> int:
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
    half = max(1, cycles // 2)
    async with SimulatedFleet(sims, external_labels={s.name: s.external_labels for s in specs}) as fleet:
        cfg = _config(specs, fleet, interval=interval, data_dir=data_dir)
        console.print(
            f"[bold]observe demo[/]: {len(sims)} simulated clusters, {cycles} cycles every {interval:g}s, "
            f"embedded store under {data_dir}"
        )
        for s in sims:
            console.print(
                f"  {s.name:<16} {fleet.url(s.name)}/federate  ({s.series_count(time.time()):,} series)"
            )
        collector = Collector(cfg, serve_http=False)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        last: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + cycles * interval + 60
            ok = await _watch(
                collector, task, stop, cycles=cycles, half=half, victim=victim, fleet=fleet, last=last,
                console=console, deadline=deadline,
            )  # fmt: skip
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), cfg.shutdown_timeout + 10)
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            console.print(f"[red]the collector failed:[/] {task.exception()!r}")
            return 1
    code = _summary(cfg, last, victim=victim.name, console=console)
    if not ok:
        code = 1
    return _generate(cfg, data_dir, console) or code


async def _watch(
    collector: Any,
    task: asyncio.Task[None],
    stop: asyncio.Event,
    *,
    cycles: int,
    half: int,
    victim: SimulatedCluster,
    fleet: SimulatedFleet,
    last: dict[str, Any],
    console: Console,
    deadline: float,
) -> bool:
    """Follow the collector's cycles through each cluster's last report, stage the failures between cycles,
    and stop the collector after `cycles`; False if it died or ran out of time."""
    seen: dict[str, float | None] = {}
    done: dict[str, int] = {}
    reported = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("pull cycles", total=cycles)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if task.done():
                return False
            if not collector.ready:
                continue
            pulling = collector.pulling("metrics")
            for name, cm in pulling.items():
                finished = cm.last.finished_at
                if finished is not None and finished != seen.get(name):
                    seen[name] = finished
                    done[name] = done.get(name, 0) + 1
                    last[name] = cm.last
            k = min((done.get(name, 0) for name in pulling), default=0)
            while reported < k and reported < cycles:
                reported += 1
                progress.update(bar, completed=reported)
                cells = []
                for name in pulling:
                    c = last[name]
                    cells.append(
                        f"{name} [green]{c.series:,} series[/]"
                        if c.ok
                        else f"{name} [red]DOWN ({c.reason})[/]"
                    )
                progress.console.print(f"cycle {reported}/{cycles}: " + " | ".join(cells))
                # Stage the failures between cycles, so the next pull sees them.
                if reported == half and reported < cycles:
                    victim.fail()
                    progress.console.print(
                        f"[yellow]{victim.name} degrades:[/] a node goes NotReady (its exporters vanish), "
                        "containers crash-loop, the apiserver answers 5xx"
                    )
                if reported == cycles - 1 and cycles >= 3:
                    fleet[victim.name].available = False
                    progress.console.print(
                        f"[yellow]{victim.name}'s Prometheus stops answering (HTTP 503)[/]"
                    )
            if reported >= cycles:
                stop.set()
                return True
    console.print("[red]the demo did not finish its cycles in time[/]")
    return False


def _summary(cfg: Config, last: dict[str, Any], *, victim: str, console: Console) -> int:
    from observe.sinks.local_store import STORE_SUBDIR, read_metrics

    store = Path(cfg.data_dir) / STORE_SUBDIR  # where the service puts the embedded store
    try:
        df = read_metrics(store)
    except ImportError as exc:
        console.print(f"[yellow]{exc}[/]")
        return 1
    table = Table(title="What arrived in the embedded store (read back with pandas)")
    for col, justify in (
        ("cluster", "left"), ("last pull", "left"), ("series pulled", "right"), ("series stored", "right"),
        ("samples stored", "right"), ("stale markers", "right"), ("collisions", "right"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    code = 0
    for name in [c.name for c in cfg.clusters] + [cfg.self_cluster]:
        rows = df[df["cluster"] == name]
        fresh = rows[~rows["stale"]]
        series = len(fresh[["metric", "labels"]].drop_duplicates())
        collided = fresh[fresh["labels"].str.contains(f'"exported_{cfg.cluster_label}":', regex=False)]
        collisions = len(collided[["metric", "labels"]].drop_duplicates())
        c = last.get(name)
        if name == cfg.self_cluster:
            status, pulled = "[dim]collector self-metrics[/]", "-"
        elif c is None:
            status, pulled = "[red]never pulled[/]", "0"
        else:
            status = "[green]up[/]" if c.ok else f"[red]down[/] ({c.reason})"
            if name == victim:
                status += " [yellow]degraded[/]"
            pulled = f"{c.series:,}"
        if len(rows) == 0 and name != cfg.self_cluster:
            code = 1
        table.add_row(
            name,
            status,
            pulled,
            f"{series:,}",
            f"{len(rows):,}",
            f"{int(rows['stale'].sum()):,}",
            f"{collisions:,}",
        )
    console.print(table)
    console.print(
        f"Parquet files: {store / 'metrics'}  (Hive-partitioned: cluster=<name>/hour=<YYYY-MM-DDTHH>/)"
    )
    console.print(
        f"""Read them:  python -c "import pandas as pd; print(pd.read_parquet('{store / "metrics"}'))\"""",
        markup=False,
        highlight=False,
    )
    return code


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
