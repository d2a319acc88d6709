"""Log entries per second per core through observe's logs path, end to end: pull from a cluster's Loki
API (query_range), normalize, queue (fsync per append), push to a central Loki (snappy protobuf).

    .venv/bin/python -m bench.logs_pipeline [--entries 300000] [--streams 50]

The two Lokis are the test suite's fake Loki (tests/loki_api_fake.py), each in a process of its own, so
their CPU is not counted. The cluster's Loki is seeded with Kubernetes-like lines of mixed length (40 to
600 bytes: access logs, JSON logs, stack-trace lines) over the last 50 minutes; the collector starts with
`logs.start_from: 1h` and catches up. Measured: the collector process' utime+stime (from /proc) from
start until the central Loki acknowledged every entry (observe_log_entries_sent_total), so the figure
includes start-up (~0.4 s of imports) and idle waiting on the fakes: a conservative bound. A second row
leaves out start-up: CPU from the moment the collector's /metrics first answers (imports, config and
queue opening done) to the last acknowledgement. /metrics is polled every 50 ms until it answers, then
once a second (see POLL_RUNNING).

No peer is run: none of the usual Loki-to-Loki shippers (Promtail, Grafana Alloy, Vector) is installed on
this machine or in its package lists, so the figure stands alone against the issue's target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Final

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
# /metrics is polled often until it first answers (the start-up row's boundary), then once a second: each
# scrape costs the collector ~1 ms of CPU (12 KB of exposition text), which five scrapes a second added to
# the figure (a real Prometheus scrapes every 15 s or so). The collector is idle once it has caught up, so
# seeing the end up to a second late adds no CPU.
POLL_STARTING: Final = 0.05
POLL_RUNNING: Final = 1.0
NS = 1_000_000_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def k8s_line(rng: random.Random, i: int) -> str:
    kind = rng.random()
    if kind < 0.5:  # access log, ~120 B
        return (
            f'10.2.{i % 250}.{i % 199} - - [01/May/2024:12:00:{i % 60:02d} +0000] "GET /api/v1/items/{i % 9973} '
            f'HTTP/1.1" {rng.choice((200, 200, 200, 404, 500))} {rng.randint(100, 90000)} "-" "kube-probe/1.29"'
        )
    if kind < 0.85:  # structured JSON log, ~250 B
        return (
            f'{{"ts":"2024-05-01T12:00:00.{i % 1000:03d}Z","level":"{rng.choice(("info", "warn", "error"))}",'
            f'"msg":"request handled","service":"checkout","trace_id":"{rng.getrandbits(64):016x}",'
            f'"user_id":{rng.randint(1, 10**6)},"duration_ms":{rng.random() * 300:.2f},"path":"/cart/{i % 500}"}}'
        )
    if kind < 0.95:  # short line, ~40 B
        return f"I0501 12:00:00.{i % 10**6:06d} 1 controller.go:{i % 400}] synced"
    return "\tat com.example.shop." + ".".join(f"Component{j}" for j in range(rng.randint(10, 40)))  # long


async def serve(port: int, entries: int, streams: int) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.loki_api_fake import FakeLoki

    fake = FakeLoki(port=port, max_line_size=2**20)
    rng = random.Random(7)
    end = time.time_ns() - 120 * NS
    step = 50 * 60 * NS // max(entries, 1)
    per = entries // streams if streams else 0
    for s in range(streams):
        labels = {"namespace": f"team-{s % 7}", "pod": f"checkout-{s}-5d9c7b8f6-x2k4q", "container": "app",
                  "job": f"team-{s % 7}/checkout", "stream": "stdout"}  # fmt: skip
        fake.add(labels, [(end - (per - i) * step * streams + s, k8s_line(rng, i)) for i in range(per)])
    await fake.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: run a fake Loki on this port
    args = ap.parse_args(argv)
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.entries, args.streams))
        return
    total = args.entries // args.streams * args.streams
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ports = {}
            for name, n in (("cluster", total), ("central", 0)):
                ports[name] = free_port()
                cmd = [sys.executable, "-m", "bench.logs_pipeline", "--serve", str(ports[name]), "--entries", str(n),
                       "--streams", str(args.streams if n else 0)]  # fmt: skip
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
                procs.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            listen = free_port()
            cfg = {
                "interval": "5s", "data_dir": f"{tmp}/data", "listen": f"127.0.0.1:{listen}", "self_metrics": False,
                "clusters": [{"name": "bench", "loki": {"url": f"http://127.0.0.1:{ports['cluster']}",
                                                        "selectors": ['{container="app"}'], "timeout": "4s"}}],
                "central": {"loki": {"url": f"http://127.0.0.1:{ports['central']}/loki/api/v1/push"}},
                "logs": {"start_from": "1h", "safety_lag": "1s", "ship_own_logs": False},
            }  # fmt: skip
            Path(tmp, "observe.yaml").write_text(yaml.safe_dump(cfg))
            started = time.monotonic()
            collector = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "observe",
                    "--log-level",
                    "warning",
                    "run",
                    "-c",
                    f"{tmp}/observe.yaml",
                ],
                cwd=ROOT,
            )
            procs.append(collector)
            sent = 0.0
            cpu = 0.0
            cpu_ready: float | None = None  # CPU when /metrics first answered: start-up done
            while sent < total:
                if collector.poll() is not None:
                    raise SystemExit(f"observe exited with {collector.returncode}")
                cpu = cpu_seconds(collector.pid)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=5) as resp:
                        if cpu_ready is None:
                            cpu_ready = cpu
                        for line in resp.read().decode().splitlines():
                            if line.startswith("observe_log_entries_sent_total{"):
                                sent = float(line.rsplit(" ", 1)[1])
                except OSError:
                    pass
                if time.monotonic() - started > 600:
                    raise SystemExit(f"only {sent:.0f} of {total} entries sent after 600s")
                time.sleep(POLL_STARTING if cpu_ready is None else POLL_RUNNING)
            wall = time.monotonic() - started
            steady = cpu - (cpu_ready or 0.0)
            print(f"{total:,} entries in {wall:.1f}s wall (peer: none run, see the module docstring)")
            print(f"{'measured':<22} {'CPU s':>7} {'entries/s per core':>19}")
            print(f"{'including start-up':<22} {cpu:>7.2f} {total / cpu:>19,.0f}")
            rate = f"{total / steady:>19,.0f}" if steady > 0 else f"{'-':>19}"
            print(f"{'after start-up':<22} {steady:>7.2f} {rate}")
        finally:
            for proc in reversed(procs):  # the collector first: it would log the fakes going away
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()


if __name__ == "__main__":
    main()
