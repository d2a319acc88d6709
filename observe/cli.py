"""The `observe` command: one subcommand per user task. Only this module exits.

Exit codes: 0 success; 2 bad usage or bad config; 1 a runtime failure (a cluster failed to pull,
data left undelivered, an endpoint unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from observe import __version__
from observe.config import Config, load_config
from observe.errors import ConfigError, ObserveError
from observe.telemetry.log_format import setup_logging

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="observe", description="One place to see and be alerted on every cluster."
    )
    p.add_argument("--version", action="version", version=f"observe {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the collector (SIGTERM: stop pulling, flush, exit 0)")
    run.add_argument("-c", "--config", required=True, type=Path)
    run.add_argument(
        "--once", action="store_true", help="one cycle, flush, exit; non-zero if anything failed"
    )

    check = sub.add_parser("check", help="validate the config and probe every endpoint")
    check.add_argument("-c", "--config", required=True, type=Path)
    check.add_argument("--no-probe", action="store_true", help="validate the config only")

    demo = sub.add_parser("demo", help="run the collector against simulated clusters into the embedded store")
    demo.add_argument("--clusters", type=int, default=3)
    demo.add_argument("--cycles", type=int, default=6)
    demo.add_argument("--interval", type=float, default=1.0)
    demo.add_argument("--data-dir", type=Path, default=None)

    dash = sub.add_parser("dashboards", help="generate Grafana dashboards (and upload them)")
    dash.add_argument("-c", "--config", required=True, type=Path)
    dash.add_argument("-o", "--output", required=True, type=Path)
    dash.add_argument("--upload", action="store_true", help="upsert them into grafana.url")

    rules = sub.add_parser("rules", help="generate Prometheus/Thanos, Loki and Alertmanager rules")
    rules.add_argument("-c", "--config", required=True, type=Path)
    rules.add_argument("-o", "--output", required=True, type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    # Piped output (CI logs, `| less`) gets a wide fixed width: rich's 80-column default truncates tables.
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True)
    try:
        if args.command == "run":
            return _run(load_config(args.config, for_service=True), once=args.once, console=console)
        if args.command == "check":
            cfg = load_config(args.config, for_service=True)
            return _check(cfg, probe=not args.no_probe, console=console)
        if args.command == "demo":
            from observe.demo import run_demo

            return run_demo(
                clusters=args.clusters, cycles=args.cycles, interval=args.interval, data_dir=args.data_dir,
                console=console,
            )  # fmt: skip
        if args.command == "rules":
            from observe.generate.rules import write_rules

            paths = write_rules(load_config(args.config), args.output)
            console.print(f"wrote {len(paths)} files under {args.output}")
            return EXIT_OK
        if args.command == "dashboards":
            return _dashboards(load_config(args.config), args.output, upload=args.upload, console=console)
    except ConfigError as exc:
        err.print(f"[bold red]config error[/] ({len(exc.problems)} problem{'s' * (len(exc.problems) != 1)}):")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        return EXIT_USAGE
    except ObserveError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return EXIT_USAGE


def _run(cfg: Config, *, once: bool, console: Console) -> int:
    from observe.service import Collector

    collector = Collector(cfg, serve_http=not once)
    if once:
        report = asyncio.run(collector.run_once())
        for signal_name in dict.fromkeys(sig for _, sig in report.outcomes):
            outcomes = {cluster: o for (cluster, sig), o in report.outcomes.items() if sig == signal_name}
            figures = list(next(iter(outcomes.values())).figures())
            table = Table(title=f"observe run --once: {signal_name}")
            for col in ("cluster", "up", *figures, "seconds", "error"):
                table.add_column(col)
            for cluster, o in outcomes.items():
                shown = ["" if v is None else str(v) for v in o.figures().values()]
                table.add_row(
                    cluster, "yes" if o.ok else "[red]no[/]", *shown, f"{o.duration:.2f}", o.error or "",
                )  # fmt: skip
            console.print(table)
        left = {k: v for k, v in report.undelivered.items() if v}
        if left:
            console.print(f"[red]undelivered records left in the queue:[/] {left}")
        if report.dropped:
            console.print(f"[red]samples dropped:[/] {report.dropped}")
        return EXIT_OK if report.ok else EXIT_FAILURE

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await collector.run(stop)

    asyncio.run(serve())
    return EXIT_OK


def _check(cfg: Config, *, probe: bool, console: Console) -> int:
    console.print(f"config OK: {len(cfg.clusters)} clusters")
    if not probe:
        return EXIT_OK
    from observe.probe import probe_all

    results = asyncio.run(probe_all(cfg))
    table = Table(title="observe check")
    for col in ("cluster", "endpoint", "url", "result", "detail", "seconds"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.cluster,
            r.endpoint,
            r.url,
            "[green]ok[/]" if r.ok else "[red]FAIL[/]",
            r.detail,
            f"{r.seconds:.2f}",
        )
    console.print(table)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE


def _dashboards(cfg: Config, output: Path, *, upload: bool, console: Console) -> int:
    from observe.generate.dashboards import write_dashboards

    paths = write_dashboards(cfg, output)
    console.print(f"wrote {len(paths)} dashboards under {output}")
    if upload:
        from rich.progress import Progress

        from observe.generate.dashboards import upload_dashboards

        started = time.monotonic()
        with Progress(console=console) as progress:
            task = progress.add_task("uploading", total=len(paths))

            def advance(done: int, total: int, title: str) -> None:
                progress.update(task, completed=done, description=f"uploaded {title}")

            report = upload_dashboards(cfg, paths, progress=advance)
        console.print(
            f"{cfg.grafana.url}: folder {report.folder_uid}{' (created)' * report.folder_created}; "
            f"{len(report.created)} created, {len(report.updated)} updated, "
            f"{len(report.unchanged)} unchanged in {time.monotonic() - started:.1f}s",
            highlight=False,
        )
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
