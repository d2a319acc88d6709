"""observe vs vmagent on the same job, in the same run: federate N simulated clusters and remote-write
every sample into the same VictoriaMetrics.

    .venv/bin/python -m bench.federate_vs_vmagent [--series 100000] [--clusters 2] [--interval 10] [--cycles 6]
        [--collectors observe,vmagent,vmagent-stream] [--scale 1,4,10] [--dead]

Every collector pulls the same `/federate` endpoints (served by bench/sim_sources.py in a process of its
own), stamps a `cluster` label, and writes to one VictoriaMetrics; they run one after the other, never
together. Measured per collector, over a steady-state window that starts after the warm-up cycles (the
first cycle fills observe's series cache):

- CPU-seconds per million samples forwarded: the collector process' utime+stime (from /proc) over the
  window, divided by the rows VictoriaMetrics inserted from it in that window;
- peak RSS (VmHWM, start-up and the first cycle included) per active series;
- for observe, its mean pull-cycle time (pull + parse + encode + queue) of the clusters that answer.

The peer at its best. vmagent 1.79 is run twice: with its defaults, and as its docs advise for big
targets and low memory (https://docs.victoriametrics.com/vmagent.html#stream-parsing-mode):
`stream_parse: true` in each scrape config, so a body is parsed and forwarded 64 KiB at a time instead
of whole. Its defaults already switch to stream parsing for bodies over
`-promscrape.minResponseSizeForStreamParse` (1 MB; our bodies are ~31 MB), so the two rows should be
close; both are printed and the ratio is against the better (lower) of them, per figure. Left at their
defaults on purpose: `-memory.allowedPercent` (it sizes vmagent's caches, which this job barely uses),
`-remoteWrite.maxDiskUsagePerURL` (a bound on the disk buffer, which stays empty while the receiver keeps
up), `-promscrape.noStaleMarkers` (it would save memory by doing less than observe does: observe
sends staleness markers).

`--scale 1,4,10` adds observe's scale curve: the same measurement with 1, 4 and 10 clusters of `--series`
each, and with `--dead`, the largest again plus one cluster whose endpoint accepts connections and never
answers (its pulls time out), to show it adds nothing to the others' cycle time.

The machines are shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
COLLECTORS = ("observe", "vmagent", "vmagent-stream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def scrape(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode()).splitlines()


def vm_rows(vm_url: str) -> float:
    """Rows VictoriaMetrics has inserted from remote-write so far."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape(vm_url + "/metrics")
        if line.startswith('vm_rows_inserted_total{type="promremotewrite"}')
    )


def pull_seconds(observe_url: str, clusters: list[str]) -> tuple[float, float]:
    """(sum, count) of observe's pull durations of `clusters` so far (observe_pull_duration_seconds)."""
    total = count = 0.0
    for line in scrape(observe_url + "/metrics"):
        if line.startswith("observe_pull_duration_seconds_") and 'source="prometheus"' in line:
            if not any(f'cluster="{c}"' in line for c in clusters):
                continue
            if line.startswith("observe_pull_duration_seconds_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("observe_pull_duration_seconds_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


@dataclass
class Result:
    name: str
    clusters: int
    series: int
    samples: float
    cpu: float
    peak_rss: int
    cycle: float | None = None  # observe's mean pull-cycle seconds of the answering clusters

    @property
    def cpu_per_million(self) -> float:
        return self.cpu / (self.samples / 1e6) if self.samples else float("inf")

    @property
    def rss_per_series(self) -> float:
        return self.peak_rss / self.series


@contextlib.contextmanager
def silent_endpoint() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog does) and never answers one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Bench:
    """One sim-source process and one VictoriaMetrics, shared by every collector run."""

    def __init__(self, args: argparse.Namespace, tmp: Path, names: list[str]) -> None:
        self.args, self.tmp, self.names = args, tmp, names
        self.procs: list[subprocess.Popen[bytes]] = []
        self.series: dict[str, int] = {}

    def start(self) -> None:
        self.src_port, vm_port = free_port(), free_port()
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.sim_sources", "--port", str(self.src_port), "--clusters",
             ",".join(self.names), "--series", str(self.args.series)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        vm = subprocess.Popen(
            ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}", f"-storageDataPath={self.tmp / 'vm'}",
             "-loggerLevel=ERROR"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(vm)
        self.vm_url = f"http://127.0.0.1:{vm_port}"
        wait_http(self.vm_url + "/health", 30, vm)
        self.src_url = f"http://127.0.0.1:{self.src_port}"
        for n in self.names:
            wait_http(f"{self.src_url}/{n}/federate", 60 + 10 * len(self.names), self.procs[0])
            with urllib.request.urlopen(f"{self.src_url}/{n}/federate", timeout=60) as resp:
                self.series[n] = int(resp.headers["X-Series"])

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    def run(self, collector: str, clusters: list[str], dead_port: int | None = None) -> Result:
        a = self.args
        total = sum(self.series[n] for n in clusters)
        if collector == "observe":
            proc, url = self._observe(clusters, dead_port)
        else:
            proc, url = self._vmagent(clusters, stream=collector == "vmagent-stream"), None
        try:
            time.sleep(a.interval * a.warmup + a.interval / 2)
            if proc.poll() is not None:
                raise RuntimeError(f"{collector} exited early with {proc.returncode}")
            cpu0, rows0 = cpu_seconds(proc.pid), vm_rows(self.vm_url)
            pull0 = pull_seconds(url, clusters) if url else (0.0, 0.0)
            time.sleep(a.interval * a.cycles)
            cpu1, rows1 = cpu_seconds(proc.pid), vm_rows(self.vm_url)
            pull1 = pull_seconds(url, clusters) if url else (0.0, 0.0)
            rss = peak_rss_bytes(proc.pid)
        finally:
            stop(proc)
        time.sleep(min(a.interval, 5))  # let the receiver settle before the next collector starts
        n = pull1[1] - pull0[1]
        cycle = (pull1[0] - pull0[0]) / n if url and n else None
        name = collector if dead_port is None else f"{collector}+dead"
        return Result(name, len(clusters), total, rows1 - rows0, cpu1 - cpu0, rss, cycle)

    def _observe(self, clusters: list[str], dead_port: int | None) -> tuple[subprocess.Popen[bytes], str]:
        a = self.args
        timeout = f"{a.interval * 0.9:g}s"
        targets = [(n, f"{self.src_url}/{n}") for n in clusters]
        if dead_port is not None:
            targets.append(("silent", f"http://127.0.0.1:{dead_port}"))
        listen = f"127.0.0.1:{free_port()}"
        cfg = {
            "interval": f"{a.interval:g}s",
            "data_dir": str(self.tmp / f"observe-data-{time.monotonic_ns()}"),
            "listen": listen,
            "self_metrics": False,
            # The simulated clusters serve /federate only: `auto` would try remote-read first.
            "clusters": [{"name": n, "prometheus": {"url": u, "timeout": timeout, "protocol": "federate"}}
                         for n, u in targets],
            "central": {"remote_write": {"url": f"{self.vm_url}/api/v1/write"}},
        }  # fmt: skip
        path = self.tmp / "observe.yaml"
        path.write_text(yaml.safe_dump(cfg))
        proc = subprocess.Popen(
            [sys.executable, "-m", "observe", "--log-level", "error", "run", "-c", str(path)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "observe.log", "ab"),  # noqa: SIM115
        )  # fmt: skip
        return proc, f"http://{listen}"

    def _vmagent(self, clusters: list[str], *, stream: bool) -> subprocess.Popen[bytes]:
        a = self.args
        config = {
            "global": {"scrape_interval": f"{a.interval:g}s", "scrape_timeout": f"{a.interval * 0.9:g}s"},
            "scrape_configs": [
                {
                    "job_name": n,
                    "honor_labels": True,
                    "honor_timestamps": True,
                    "metrics_path": f"/{n}/federate",
                    "params": {"match[]": ['{__name__=~".+"}']},
                    "static_configs": [{"targets": [f"127.0.0.1:{self.src_port}"], "labels": {"cluster": n}}],
                    **({"stream_parse": True} if stream else {}),
                }
                for n in clusters
            ],
        }
        path = self.tmp / "vmagent.yaml"
        path.write_text(yaml.safe_dump(config))
        data = self.tmp / f"vmagent-data-{time.monotonic_ns()}"
        return subprocess.Popen(
            ["vmagent", f"-promscrape.config={path}", f"-remoteWrite.url={self.vm_url}/api/v1/write",
             f"-remoteWrite.tmpDataPath={data}", f"-httpListenAddr=127.0.0.1:{free_port()}",
             "-loggerLevel=ERROR", "-promscrape.maxScrapeSize=512MiB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


def print_table(results: list[Result]) -> None:
    print(f"{'collector':<16} {'clusters':>8} {'series':>10} {'samples':>12} {'CPU s':>8} {'CPU s/1M':>9} "
          f"{'peak RSS':>10} {'RSS/series':>11} {'cycle s':>8}")  # fmt: skip
    for r in results:
        cycle = f"{r.cycle:>8.2f}" if r.cycle is not None else f"{'-':>8}"
        print(
            f"{r.name:<16} {r.clusters:>8} {r.series:>10,} {r.samples:>12,.0f} {r.cpu:>8.2f} "
            f"{r.cpu_per_million:>9.2f} {r.peak_rss / 2**20:>8.0f}Mi {r.rss_per_series:>9.0f} B {cycle}"
        )
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=100_000, help="series per simulated cluster")
    p.add_argument("--clusters", type=int, default=2, help="clusters in the observe-vs-vmagent comparison")
    p.add_argument("--interval", type=float, default=10.0, help="pull interval, seconds")
    p.add_argument("--warmup", type=int, default=2, help="cycles before the measured window")
    p.add_argument("--cycles", type=int, default=6, help="cycles in the measured window")
    p.add_argument("--collectors", default=",".join(COLLECTORS), help="comma-separated; empty to skip")
    p.add_argument("--scale", default="", help="observe's scale curve: cluster counts, e.g. 1,4,10")
    p.add_argument(
        "--dead", action="store_true", help="scale curve: the largest again plus one silent cluster"
    )
    args = p.parse_args(argv)
    collectors = [c for c in args.collectors.split(",") if c]
    scale = [int(n) for n in args.scale.split(",") if n]
    if unknown := set(collectors) - set(COLLECTORS):
        p.error(f"unknown collectors {sorted(unknown)}; known: {', '.join(COLLECTORS)}")
    for binary in ("victoria-metrics", "vmagent"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed (Debian package victoria-metrics)", file=sys.stderr)
            return 2
    most = max([args.clusters if collectors else 0, *scale])
    names = [f"bench-{i:02d}" for i in range(most)]
    with tempfile.TemporaryDirectory(prefix="observe-bench-") as tmp_s:
        bench = Bench(args, Path(tmp_s), names)
        try:
            bench.start()
            print(f"sources ready: {len(names)} clusters of ~{args.series:,} series; interval {args.interval:g}s, "
                  f"{args.warmup} warm-up + {args.cycles} measured cycles per run", flush=True)  # fmt: skip
            results = []
            for c in collectors:
                print(f"measuring {c} on {args.clusters} clusters ...", flush=True)
                results.append(bench.run(c, names[: args.clusters]))
            curve = []
            for n in scale:
                print(f"measuring observe on {n} clusters ...", flush=True)
                curve.append(bench.run("observe", names[:n]))
            if args.dead and scale:
                with silent_endpoint() as port:
                    print(f"measuring observe on {scale[-1]} clusters + 1 that never answers ...", flush=True)
                    curve.append(bench.run("observe", names[: scale[-1]], dead_port=port))
        finally:
            bench.close()

    print()
    if results:
        print_table(results)
        report_ratios(results)
    if curve:
        print("scale curve (observe):")
        print_table(curve)
    return 0


def report_ratios(results: list[Result]) -> None:
    by = {r.name: r for r in results}
    obs = by.get("observe")
    peers = [r for r in results if r.name.startswith("vmagent")]
    if obs is None or not peers:
        return
    cpu_peer = min(peers, key=lambda r: r.cpu_per_million)
    mem_peer = min(peers, key=lambda r: r.rss_per_series)
    print(
        f"ratio observe / best vmagent: CPU per sample {_ratio(obs.cpu_per_million, cpu_peer.cpu_per_million)} "
        f"(against {cpu_peer.name}; target <= 0.6), memory per series "
        f"{_ratio(obs.rss_per_series, mem_peer.rss_per_series)} (against {mem_peer.name}; target <= 1.0)"
    )
    print(flush=True)


def _ratio(ours: float, theirs: float) -> str:
    # A tiny run can see a peer use no CPU tick at all (the clock counts 10 ms at a time).
    return f"{ours / theirs:.2f}" if theirs else "n/a"


if __name__ == "__main__":
    sys.exit(main())
