"""The end of `observe demo`: what the simulation produced against what arrived, per cluster, exactly.

Metrics: every `/federate` reply the simulated Prometheus served is recorded (its samples' timestamp and
how many samples it held). The cycles the collector completed are the ones whose pull window holds
such a reply; their samples are what must have arrived, and arrived is counted in the embedded store
(rows with that timestamp, staleness markers apart) or, with a central Prometheus, with
`count_over_time` over the cluster's own series. A pull interrupted by the stop completed no cycle and
is not counted on either side.

Logs: every log cursor started at the collector's start, so the covered window of a cluster is
[start, its cursor) (plus the entries at the cursor's own nanosecond that it lists as emitted). The
simulation says exactly which entries it wrote in that window (observe/demo/logs.py); the store must
hold each of them once, matched by (timestamp, pod, line).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from rich.console import Console
from rich.table import Table

from observe.config import Config
from observe.demo.logs import NS
from observe.demo.serve import SimulatedFleet
from observe.model import LOGS, METRICS
from observe.sinks.local_store import STORE_SUBDIR, read_logs, read_metrics
from observe.sources.log_cursors import CursorStore, entry_key

if TYPE_CHECKING:
    from observe.demo.run import Seen

__all__ = ["summarize"]

_SLACK_S = 0.005  # the server stamps a reply a moment after the pull started; clocks are the same clock


async def summarize(
    cfg: Config, seen: Seen, fleet: SimulatedFleet, centre: Any, watch: Any, *, console: Console,
) -> int:  # fmt: skip
    """Print the tables; 0 when nothing was lost and the scenario was seen (and alerted on) as it should."""
    from observe.demo.run import ALERT, SELECTOR

    store = Path(cfg.data_dir) / STORE_SUBDIR
    try:
        logs = read_logs(store)
        metrics = read_metrics(store) if centre is None else None
    except ImportError as exc:
        console.print(f"[yellow]{exc}[/]")
        return 1
    where = (
        "the central Prometheus (metrics) and the embedded store (logs)" if centre else "the embedded store"
    )
    table = Table(title=f"What the simulation produced, and what arrived in {where}")
    for col in (
        "cluster", "outage", "cycles", "samples produced", "samples stored", "stale markers", "lost",
        "log window", "entries produced", "entries stored", "lost ", "duplicates",
    ):  # fmt: skip
        table.add_column(
            col,
            justify="left" if col in ("cluster", "outage") else "right",
            no_wrap=col in ("cluster", "outage"),
        )
    problems: list[str] = []
    session = aiohttp.ClientSession() if centre is not None else None
    try:
        for name in seen.clusters:
            # -- metrics: the replies served to the cycles the collector completed
            served = fleet[name].served
            cycles = seen.ok_cycles.get(name, [])
            covered = {
                ts for ts in served if any(a - _SLACK_S <= ts / 1000 <= b + _SLACK_S for a, b in cycles)
            }
            produced = sum(served[ts] for ts in covered)
            stale: int | str = "-"
            if metrics is not None:
                rows = metrics[metrics["cluster"] == name]
                stamps = rows["timestamp"].dt.as_unit("ms").array.asi8
                fresh = ~rows["stale"].to_numpy()
                stored = int((fresh & rows.assign(ms=stamps)["ms"].isin(covered).to_numpy()).sum())
                stale = int(rows["stale"].sum())
            else:
                from observe.demo.centre import count_samples

                assert session is not None
                stored = await count_samples(session, centre, name, time.time() - seen.started + 5)
            lost = produced - stored
            # -- logs: every entry of the covered window
            sim = fleet.clusters[name]
            cursor = CursorStore(Path(cfg.data_dir) / "log_cursors", name).load(SELECTOR)
            start_ns = int(seen.started * NS)
            end_ns = cursor.start_ns if cursor is not None else start_ns
            expected = sim.logs.entries(start_ns, end_ns)
            if cursor is not None and cursor.seen:
                expected += [
                    e
                    for e in sim.logs.entries(end_ns, end_ns + 1)
                    if entry_key(e[1], e[0], e[2], e[3]) in cursor.seen
                ]
            want = Counter((ts, dict(labels)["pod"], line) for ts, labels, line, _ in expected)
            mine = logs[(logs["cluster"] == name)]
            mine = mine[mine["timestamp"].dt.as_unit("ns").array.asi8 >= start_ns]
            got = Counter(
                (int(ts.value), json.loads(labels)["pod"], line)
                for ts, labels, line in zip(mine["timestamp"], mine["labels"], mine["line"], strict=True)
            )
            entries_lost = sum((want - got).values())
            duplicates = sum(n - 1 for n in got.values() if n > 1)
            extra = sum((got - want).values()) - duplicates
            # -- the outage
            outage = "-"
            if name == seen.victim:
                down = seen.failed.get((name, METRICS), 0), seen.failed.get((name, LOGS), 0)
                back = all((name, s) in seen.ok_after_back for s in (METRICS, LOGS))
                # failed cycles, metrics/logs
                outage = f"{down[0]}/{down[1]} down, " + ("back" if back else "[red]not back[/]")
                if seen.schedule_done and (not all(down) or not back):
                    problems.append(f"{name}: the outage was not seen and recovered from on both signals")
            window = (end_ns - start_ns) / NS
            table.add_row(
                name, outage, str(len(cycles)), f"{produced:,}", f"{stored:,}", f"{stale:,}" if stale != "-" else "-",
                _lost(lost), f"{window:.0f}s", f"{sum(want.values()):,}", f"{sum(got.values()):,}",
                _lost(entries_lost), _lost(duplicates),
            )  # fmt: skip
            if not cycles or produced == 0:
                problems.append(f"{name}: no metrics cycle completed")
            if lost:
                problems.append(
                    f"{name}: {lost:,} samples produced and not stored ({produced:,} vs {stored:,})"
                )
            if not want:
                problems.append(f"{name}: no log entry in the covered window")
            if entries_lost or duplicates or extra:
                problems.append(
                    f"{name}: log entries lost {entries_lost}, duplicated {duplicates}, unexpected {extra}"
                )
    finally:
        if session is not None:
            await session.close()
    console.print(table)
    if centre is not None and watch is not None and watch is not True:
        problems += _alerts(watch, seen, ALERT, console)
    if metrics is not None:
        console.print(
            f"Metrics: {store / 'metrics'}   Logs: {store / 'logs'}   (Parquet, cluster=<name>/hour=<YYYY-MM-DDTHH>/)"
        )
    else:
        console.print(f"Logs: {store / 'logs'}   (Parquet, cluster=<name>/hour=<YYYY-MM-DDTHH>/)")
    console.print(
        f"""Read them:  python -c "import pandas as pd; print(pd.read_parquet('{store / "logs"}'))\"""",
        markup=False,
        highlight=False,
    )
    if problems:
        for p in problems:
            console.print(f"[red]problem:[/] {p}", highlight=False)
        return 1
    verdict = "nothing lost, nothing duplicated" + (", the outage alerted on and resolved" if centre else "")
    console.print(f"[bold green]OK:[/] {verdict}" + (" (interrupted early)" if seen.interrupted else ""))
    return 0


def _lost(n: int) -> str:
    return "0" if n == 0 else f"[red]{n:,}[/]"


def _alerts(watch: Any, seen: Seen, alert: str, console: Console) -> list[str]:
    """The alerts that fired (and `alert` for the victim, fired or not); those only pending are named below."""
    title = "Alerts the central Prometheus fired for the fleet's clusters (t = seconds into the scenario)"
    table = Table(title=title)
    for col in ("alert", "cluster", "pending", "firing", "in Alertmanager", "resolved"):
        table.add_column(col)

    def at(v: float | None) -> str:
        return "-" if v is None else f"t={v:.0f}s"

    fired = {key: st for key, st in watch.alerts.items() if st.firing is not None}
    shown = {**fired, **{k: v for k, v in watch.alerts.items() if k == (alert, seen.victim)}}
    for (name, cluster), st in sorted(shown.items()):
        table.add_row(name, cluster, at(st.pending), at(st.firing), at(st.in_alertmanager), at(st.resolved))
    if not shown:
        table.add_row("(none)", "", "", "", "", "")
    console.print(table)
    waiting = sorted({name for key, st in watch.alerts.items() if key not in fired for name in [key[0]]})
    if waiting:
        console.print(
            f"[dim]Pending only (their `for` is longer than the demo): {', '.join(waiting)}[/]",
            highlight=False,
        )
    problems = []
    others = sorted({c for (_, c) in fired if c != seen.victim})
    if others:
        problems.append(f"alerts fired for clusters that stayed up: {', '.join(others)}")
    if seen.schedule_done:
        st = watch.alerts.get((alert, seen.victim))
        if st is None or st.firing is None:
            problems.append(f"{alert} did not fire for {seen.victim}")
        elif st.resolved is None:
            problems.append(f"{alert} for {seen.victim} did not resolve after it came back")
    return problems
