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

    demo = sub.add_parser(
        "demo", help="metrics and logs of simulated clusters through the collector, an outage, and the count"
    )
    demo.add_argument("--clusters", type=int, default=3)
    demo.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    demo.add_argument("--interval", type=float, default=1.0, help="pull cycle, seconds (default 1)")
    demo.add_argument("--data-dir", type=Path, default=None, help="default: a new temporary directory")
    demo.add_argument(
        "--central", choices=["none", "prometheus"], default="none",
        help="prometheus: a real Prometheus (remote write, generated rules) and Alertmanager as the centre",
    )  # fmt: skip

    dash = sub.add_parser("dashboards", help="generate Grafana dashboards (and upload them)")
    dash.add_argument("-c", "--config", required=True, type=Path)
    dash.add_argument("-o", "--output", required=True, type=Path)
    dash.add_argument("--upload", action="store_true", help="upsert them into grafana.url")

    rules = sub.add_parser("rules", help="generate Prometheus/Thanos, Loki and Alertmanager rules")
    rules.add_argument("-c", "--config", required=True, type=Path)
    rules.add_argument("-o", "--output", required=True, type=Path)

    rbac = sub.add_parser(
        "rbac",
        help="generate least-privilege RBAC and a kubeconfig for each cluster reached through its API server",
    )
    rbac.add_argument("-c", "--config", required=True, type=Path)
    rbac.add_argument("-o", "--output", required=True, type=Path)
    rbac.add_argument(
        "--service-account", default="observe-reader", help="in each workload cluster (default: %(default)s)"
    )
    rbac.add_argument("--namespace", default="observe", help="of --service-account (default: %(default)s)")
    rbac.add_argument(
        "--collector-service-account", default="observe",
        help="the collector's, bound to discovery's Role in the management cluster (default: %(default)s)",
    )  # fmt: skip
    rbac.add_argument("--collector-namespace", default="observe", help="its namespace (default: %(default)s)")

    report = sub.add_parser("report", help="answers read back from the centre or the embedded store")
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    failover = reports.add_parser(
        "failover", help="if a cluster fails, can the others absorb its load? (N-1, as the generated alert)"
    )
    failover.add_argument("-c", "--config", required=True, type=Path)
    failover.add_argument("--format", choices=["table", "csv", "json"], default="table")
    failover.add_argument("--plot", type=Path, metavar="FILE", help="also draw it as a PNG chart")
    failover.add_argument(
        "--at",
        type=_instant,
        metavar="TIME",
        help="RFC 3339 or Unix seconds (default: now; the store: its newest)",
    )
    where = failover.add_mutually_exclusive_group()
    where.add_argument(
        "--query-url", metavar="URL",
        help="the centre's Prometheus query API (default: the server central.remote_write writes to)",
    )  # fmt: skip
    where.add_argument(
        "--store", action="store_true", help="read data_dir/store even with a centre configured"
    )

    config = sub.add_parser("config", help="the config model itself")
    configs = config.add_subparsers(dest="config_command", required=True, metavar="WHAT")
    configs.add_parser("schema", help="print a JSON Schema of observe.yaml for editors")
    reference = configs.add_parser("reference", help="print the README's configuration reference (Markdown)")
    reference.add_argument(
        "--write", type=Path, metavar="README", help="replace it between its markers in README"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    # Piped output (CI logs, `| less`) gets a wide fixed width: rich's 80-column default truncates tables.
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True)
    try:
        if args.command == "run":
            return _run(
                load_config(args.config, for_service=True), once=args.once, console=console, path=args.config
            )
        if args.command == "check":
            cfg = load_config(args.config, for_service=True)
            return _check(cfg, probe=not args.no_probe, console=console)
        if args.command == "demo":
            from observe.demo import run_demo

            return run_demo(
                clusters=args.clusters, duration=args.duration, interval=args.interval, data_dir=args.data_dir,
                central=args.central, console=console,
            )  # fmt: skip
        if args.command == "rules":
            from observe.generate.rules import write_rules

            paths = write_rules(load_config(args.config), args.output)
            console.print(f"wrote {len(paths)} files under {args.output}")
            return EXIT_OK
        if args.command == "dashboards":
            return _dashboards(load_config(args.config), args.output, upload=args.upload, console=console)
        if args.command == "rbac":
            return _rbac(args, console=console)
        if args.command == "report":
            return _report(args, console=console)
        if args.command == "config":
            return _config_schema(args, console=console)
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


def _run(cfg: Config, *, once: bool, console: Console, path: Path) -> int:
    from observe.discovery.runner import FleetDiscovery
    from observe.reload import ConfigWatcher
    from observe.runtime import tune_gc
    from observe.service import Collector

    collector = Collector(cfg, serve_http=not once)
    tune_gc()  # after start-up's allocations: they are frozen out of every later collection
    if once:
        from rich.table import Table  # for the report only: a running collector draws none

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
        fleet = FleetDiscovery(collector, cfg)  # the file's clusters plus the inventories', kept live
        watcher = ConfigWatcher(path, fleet)  # SIGHUP, or the file changing on disk: reload
        loop.add_signal_handler(signal.SIGHUP, watcher.hup)
        await collector.start()  # queues open and HTTP up before discovery adds clusters (run() reuses it)
        side = [asyncio.create_task(watcher.run(stop)), asyncio.create_task(fleet.run(stop))]
        await collector.run(stop)
        await asyncio.gather(*side)

    asyncio.run(serve())
    return EXIT_OK


def _check(cfg: Config, *, probe: bool, console: Console) -> int:
    console.print(f"config OK: {len(cfg.clusters)} clusters")
    if not probe:
        return EXIT_OK
    from rich.table import Table

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


def _rbac(args: argparse.Namespace, *, console: Console) -> int:
    from rich.table import Table

    from observe.generate.rbac import Identity, cluster_access, write_rbac

    try:
        identity = Identity(args.service_account, args.namespace, args.collector_service_account,
                            args.collector_namespace)  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"observe rbac: {exc}") from None
    cfg = load_config(args.config)
    paths = write_rbac(cfg, args.output, identity)
    table = Table("cluster", "namespace", "service proxy segment", "verbs", "pin_pod")
    for access in cluster_access(cfg):
        for s in access.services:
            table.add_row(
                access.cluster, s.ref.namespace, s.ref.segment(), ", ".join(s.verbs), "yes" * s.pin_pod
            )
    console.print(table)
    console.print(f"wrote {len(paths)} files under {args.output}")
    return EXIT_OK


def _report(args: argparse.Namespace, *, console: Console) -> int:
    from observe.analysis import failover, render, sources

    cfg = load_config(args.config)
    at = args.at
    if args.store or (args.query_url is None and cfg.central.remote_write is None):
        inputs = sources.read_store(cfg.data_dir / "store", cluster_label=cfg.cluster_label, at=at)
    else:
        client = sources.centre_client(cfg, args.query_url)
        inputs = sources.read_centre(client, cluster_label=cfg.cluster_label, at=at)
    report = failover.failover_report(cfg, inputs)
    if args.format == "table":
        console.print(render.to_table(report))
    else:
        sys.stdout.write(render.to_json(report) if args.format == "json" else render.to_csv(report))
    if args.plot is not None:
        from observe.analysis.plot import write_plot

        width, height = write_plot(report, args.plot)
        # to stderr when stdout is data: `--format csv > out.csv` must stay a clean CSV
        out = console if args.format == "table" else Console(stderr=True)
        out.print(f"wrote {args.plot} ({width}x{height} PNG)", highlight=False)
    return EXIT_OK


def _instant(text: str) -> float:
    """`--at`: Unix seconds or RFC 3339 (a zone-less time is UTC)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time (RFC 3339 or Unix seconds): {text!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _config_schema(args: argparse.Namespace, *, console: Console) -> int:
    from observe.config import reference

    if args.config_command == "schema":
        sys.stdout.write(reference.schema_json())
        return EXIT_OK
    if args.write is None:
        sys.stdout.write(reference.markdown())
        return EXIT_OK
    changed = reference.write_readme(args.write)
    console.print(f"{args.write}: configuration reference {'updated' if changed else 'already current'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
