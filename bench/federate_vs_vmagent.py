"""observe vs vmagent on the same job, in the same run: federate N simulated clusters and remote-write
every sample into the same VictoriaMetrics.

    .venv/bin/python -m bench.federate_vs_vmagent [--series 100000] [--clusters 2] [--interval 10] [--cycles 6]

Both collectors pull the same `/federate` endpoints (served by bench/sim_sources.py in a third
process), stamp a `cluster` label, and write to one VictoriaMetrics. Measured per collector, over a
steady-state window that starts after two warm-up cycles (the first cycle fills observe's series cache):

- CPU-seconds per million samples forwarded: the collector process' utime+stime (from /proc) over the
  window, divided by the rows VictoriaMetrics inserted from it in that window;
- peak RSS (VmHWM) per active series.

The machines are shared and noisy: read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

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


def vm_rows(vm_url: str) -> float:
    """Rows VictoriaMetrics has inserted from remote-write so far."""
    with urllib.request.urlopen(vm_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith('vm_rows_inserted_total{type="promremotewrite"}'):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Result:
    name: str
    samples: float
    cpu: float
    peak_rss: int
    series: int

    @property
    def cpu_per_million(self) -> float:
        return self.cpu / (self.samples / 1e6) if self.samples else float("inf")

    @property
    def rss_per_series(self) -> float:
        return self.peak_rss / self.series


def measure(name: str, proc: subprocess.Popen[bytes], vm_url: str, interval: float, warmup: int, cycles: int, series: int) -> Result:
    try:
        time.sleep(interval * warmup + interval / 2)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early with {proc.returncode}")
        cpu0, rows0 = cpu_seconds(proc.pid), vm_rows(vm_url)
        time.sleep(interval * cycles)
        cpu1, rows1 = cpu_seconds(proc.pid), vm_rows(vm_url)
        rss = peak_rss_bytes(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    time.sleep(interval)  # let the receiver settle before the next collector starts
    return Result(name, rows1 - rows0, cpu1 - cpu0, rss, series)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=100_000, help="series per simulated cluster")
    p.add_argument("--clusters", type=int, default=2)
    p.add_argument("--interval", type=float, default=10.0, help="pull interval, seconds")
    p.add_argument("--warmup", type=int, default=2, help="cycles before the measured window")
    p.add_argument("--cycles", type=int, default=6, help="cycles in the measured window")
    args = p.parse_args(argv)
    for binary in ("victoria-metrics", "vmagent"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed (Debian package victoria-metrics)", file=sys.stderr)
            return 2
    names = [f"bench-{chr(ord('a') + i)}" for i in range(args.clusters)]
    total_series = 0
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="observe-bench-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            src_port, vm_port = free_port(), free_port()
            src = subprocess.Popen(
                [sys.executable, "-m", "bench.sim_sources", "--port", str(src_port), "--clusters", ",".join(names),
                 "--series", str(args.series)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(src)
            vm = subprocess.Popen(
                ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}", f"-storageDataPath={tmp / 'vm'}",
                 "-loggerLevel=ERROR"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(vm)
            vm_url = f"http://127.0.0.1:{vm_port}"
            wait_http(vm_url + "/health", 30, vm)
            src_url = f"http://127.0.0.1:{src_port}"
            for n in names:
                wait_http(f"{src_url}/{n}/federate", 120, src)
                with urllib.request.urlopen(f"{src_url}/{n}/federate", timeout=30) as resp:
                    total_series += int(resp.headers["X-Series"])
            print(f"sources ready: {len(names)} clusters, {total_series:,} series; interval {args.interval:g}s, "
                  f"{args.warmup} warm-up + {args.cycles} measured cycles each", flush=True)  # fmt: skip

            # -- observe ---------------------------------------------------------------------------
            cfg = {
                "interval": f"{args.interval}s",
                "data_dir": str(tmp / "observe-data"),
                "listen": f"127.0.0.1:{free_port()}",
                "self_metrics": False,
                "clusters": [
                    {"name": n, "prometheus": {"url": f"{src_url}/{n}", "timeout": f"{args.interval * 0.9}s"}}
                    for n in names
                ],
                "central": {"remote_write": {"url": f"{vm_url}/api/v1/write"}},
            }
            (tmp / "observe.yaml").write_text(yaml.safe_dump(cfg))
            obs = subprocess.Popen(
                [sys.executable, "-m", "observe", "--log-level", "warning", "run", "-c", str(tmp / "observe.yaml")],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp / "observe.log", "wb"),  # noqa: SIM115
            )  # fmt: skip
            procs.append(obs)
            print("measuring observe ...", flush=True)
            r_obs = measure("observe", obs, vm_url, args.interval, args.warmup, args.cycles, total_series)

            # -- vmagent ---------------------------------------------------------------------------
            scrape = {
                "global": {"scrape_interval": f"{args.interval}s", "scrape_timeout": f"{args.interval * 0.9}s"},
                "scrape_configs": [
                    {
                        "job_name": n,
                        "honor_labels": True,
                        "honor_timestamps": True,
                        "metrics_path": f"/{n}/federate",
                        "params": {"match[]": ['{__name__=~".+"}']},
                        "static_configs": [{"targets": [f"127.0.0.1:{src_port}"], "labels": {"cluster": n}}],
                    }
                    for n in names
                ],
            }
            (tmp / "vmagent.yaml").write_text(yaml.safe_dump(scrape))
            vma = subprocess.Popen(
                ["vmagent", f"-promscrape.config={tmp / 'vmagent.yaml'}", f"-remoteWrite.url={vm_url}/api/v1/write",
                 f"-remoteWrite.tmpDataPath={tmp / 'vmagent-data'}", f"-httpListenAddr=127.0.0.1:{free_port()}",
                 "-loggerLevel=ERROR", "-promscrape.maxScrapeSize=512MiB"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(vma)
            print("measuring vmagent ...", flush=True)
            r_vma = measure("vmagent", vma, vm_url, args.interval, args.warmup, args.cycles, total_series)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()

    print()
    print(f"{'collector':<10} {'samples':>12} {'CPU s':>8} {'CPU s / 1M samples':>20} {'peak RSS':>10} {'RSS / series':>13}")
    for r in (r_obs, r_vma):
        print(
            f"{r.name:<10} {r.samples:>12,.0f} {r.cpu:>8.2f} {r.cpu_per_million:>20.2f} "
            f"{r.peak_rss / 2**20:>8.0f}Mi {r.rss_per_series:>11.0f} B"
        )
    print(
        f"\nratio observe/vmagent: CPU per sample {r_obs.cpu_per_million / r_vma.cpu_per_million:.2f}, "
        f"memory per series {r_obs.rss_per_series / r_vma.rss_per_series:.2f}  (target <= 1.0; goal 0.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
