"""What remote-read costs the source Prometheus and the collector, against `/federate`, in one run.

    .venv/bin/python -m bench.remote_read_vs_federate [--series 30000] [--minutes 20] [--max-window 300]
        [--steady-interval 30] [--min-window 60] [--steady-warmup 2] [--steady-cycles 3] [--pulls 10]
        [--vmagent-interval 3]
        [--vmagent-scrapes 8]

One real Prometheus 2.42 (the source, external labels `cluster`, `prometheus`) is given `--series` series
with the label sets of a simulated Kubernetes cluster (observe/demo/fleet.py), written through its
remote-write receiver as exact samples 15s apart (each series its own scrape phase and a few ms of
jitter; counters rise, gauges wander, a few stay constant) for the last `--minutes`. Nothing scrapes it,
so its CPU between two readings of /proc/<pid>/stat (utime+stime) is the work of the client in that
phase; its idle rate is measured too and subtracted. Every collector writes into the same
VictoriaMetrics; samples delivered are the rows it inserted (`vm_rows_inserted_total{type=
"promremotewrite"}`) in the phase. The phases run one after the other, never together:

1. start-up: `observe run --once` (as every observe row: a subprocess, its CPU and peak RSS from
   `os.wait4`) with a selector that matches nothing: the fixed cost, subtracted from the observe rows.
2. federation, the source: `--pulls` GETs of `/federate?match[]={__name__=~".+"}` with observe's own
   headers (gzip, as vmagent asks too). One pull delivers one sample per series, so delivering the
   samples a remote-read backfill delivers takes (samples per series) pulls: the per-sample figure is
   CPU per pull / series, and the table's arithmetic line shows it scaled.
3. federation, the collectors: `observe run --once` with `protocol: federate` (one cold cycle: parse,
   series cache fill, encode), and vmagent 1.79 scraping the same `/federate` with `stream_parse: true`
   (its documented setting for big targets) every `--vmagent-interval`, measured over `--vmagent-scrapes`
   intervals after two warm-up ones (its CPU from /proc, its VmHWM).
4. remote-read backfill: `observe run --once` reading the whole range (`start_from` = all of it,
   `max_window` windows, budget unlimited), once with STREAMED_XOR_CHUNKS (the default: XOR chunks decoded
   in Python) and once with SAMPLES only (the source decodes; observe's `ACCEPTED` is set in the child
   by the launcher below, the code path is the production one).
5. remote-read steady state: a window of max(`--steady-interval`, `--min-window`) / 15 new samples per
   series is written after each cursor, and `observe run --once` goes on from it: what a normal read
   costs (a steady cycle reads once `remote_read.min_window` is due), where the per-series
   work (index lookup, labels, one frame) is spread over a few samples only. Prometheus 2.42 trims a
   head chunk to the query's range (it decodes and re-encodes it: source CPU per sample), so the
   collector decodes only the window's samples; the "chunks" line shows it. These `--once` runs are cold
   (a new process: its label cache empty), so their collector figures are an upper bound; their source
   figures are what a cycle of that length costs the source, warm or cold.
6. remote-read steady state, warm: a long-running `observe run` every `--steady-interval` with
   `min_window: --min-window`, with the next samples written as they fall due (each 15s grid point once
   all its phases have passed), measured over `--steady-cycles` reads after `--steady-warmup`, from an
   idle collector (queue drained) to an idle
   collector: what a collector that has been running costs per sample, like vmagent's measured scrapes.
   The source also ingests the writes then, so its CPU is not counted in these rows.

The machine is shared and noisy: read the ratios, and run it twice.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from observe.config import RemoteReadConfig
from observe.demo.fleet import SimulatedCluster
from observe.protocol import remote_write
from observe.protocol.remote_read import (
    REQUEST_HEADERS,
    SAMPLES,
    STREAMED_XOR_CHUNKS,
    Query,
    decode_chunked_body,
    encode_read_request,
)
from observe.protocol.series_selector import parse_selector
from observe.protocol.xor_chunk import decode_xor
from observe.sources.prometheus_federate import ACCEPT
from tests.servers import Server, free_port, start_prometheus, start_victoria_metrics, stop_process

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRAPE_MS = 15_000
SAFETY_LAG_S = 1.0  # the bench writes before it reads: no scrape is ever in flight, 1s is margin enough
SELECT_ALL = '{__name__=~".+"}'
SELECT_NONE = '{__name__="observe_bench_matches_nothing"}'
EXTERNAL = {"cluster": "src-1", "prometheus": "monitoring/k8s"}
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# Runs observe's CLI with the remote-read response types it offers set (production code path otherwise).
_LAUNCH = (
    "import sys\n"
    "import observe.sources.prometheus_remote_read as rr\n"
    "rr.ACCEPTED = tuple(int(t) for t in sys.argv[1].split(','))\n"
    "from observe.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


# -- measuring --------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def vm_rows(vm: Server) -> float:
    with urllib.request.urlopen(vm.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('vm_rows_inserted_total{type="promremotewrite"}')
    )


def vm_rows_settled(vm: Server, timeout: float = 30.0) -> float:
    """`vm_rows` once it stopped moving: VictoriaMetrics shows a request's rows in its counter a moment
    after it answered (seen here: a run's rows appeared only in the next reading)."""
    deadline = time.monotonic() + timeout
    last = vm_rows(vm)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = vm_rows(vm)
        if now == last:
            return now
        last = now
    return last


@dataclass
class Row:
    name: str
    samples: float  # delivered (rows VictoriaMetrics inserted, or samples in the federate bodies)
    series: int
    source_cpu: float | None = None  # net of the source's idle rate
    collector_cpu: float | None = None  # net of observe's start-up run
    peak_rss: int | None = None
    net_rss: int | None = None  # observe: peak minus the start-up run's peak

    def per_million(self, cpu: float | None) -> float | None:
        return None if cpu is None or not self.samples else cpu / (self.samples / 1e6)


# -- the source's data -------------------------------------------------------------------------------------
class Data:
    """The series written into the source: realistic label sets, 15s apart per series, each with its phase."""

    def __init__(self, nseries: int, seed: int = 1) -> None:
        sim = SimulatedCluster.for_series_count("src", nseries, seed=seed)
        text = sim.federate(time.time(), external_labels={}, job="federate", instance="sim")
        self.labels: list[bytes] = []
        self.kinds: list[int] = []  # 0 counter, 1 gauge, 2 constant
        self.values: list[float] = []
        rnd = self.rnd = random.Random(seed)
        for line in text.splitlines():
            m = _LINE.match(line)
            if m is None or line.startswith("#") or len(self.labels) >= nseries:
                continue
            name = m.group(1)
            pairs = dict(_LABEL.findall(m.group(2) or ""))
            pairs["__name__"] = name
            self.labels.append(remote_write.encode_labels(sorted(pairs.items())))
            counter = name.endswith(("_total", "_count", "_sum", "_bucket"))
            self.kinds.append(0 if counter else (2 if name.endswith("_info") or rnd.random() < 0.2 else 1))
            self.values.append(float(rnd.randrange(1, 10**6)))
        self.phases = [rnd.randrange(SCRAPE_MS) for _ in self.labels]
        self.base_ms = 0
        self.written: list[
            int
        ] = []  # grid points written, in order: sample k of a series is near base + 15s k

    @property
    def series(self) -> int:
        return len(self.labels)

    def grid_ms(self, k: int) -> int:
        return self.base_ms + k * SCRAPE_MS

    def write(self, server: Server, ks: list[int], batch: int = 500) -> None:
        """Samples at grid points `ks` (ascending, after every one written so far) for every series."""
        rnd, jitter = self.rnd, (0, 0, 0, 1, -1, 2, -3, 5)
        for first in range(0, self.series, batch):
            entries = []
            for s in range(first, min(first + batch, self.series)):
                v, kind, samples = self.values[s], self.kinds[s], []
                for k in ks:
                    if kind == 0:
                        v += rnd.randrange(50)
                    elif kind == 1:
                        v = round(v * (0.9 + rnd.random() * 0.2), 3)
                    samples.append((v, self.grid_ms(k) + self.phases[s] + rnd.choice(jitter)))
                self.values[s] = v
                entries.append(remote_write.encode_series_samples(self.labels[s], samples))
            req = urllib.request.Request(
                server.url + "/api/v1/write", data=remote_write.compress(b"".join(entries)), method="POST",
                headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                         "X-Prometheus-Remote-Write-Version": "0.1.0"},
            )  # fmt: skip
            with urllib.request.urlopen(req, timeout=120) as resp:
                assert resp.status < 300, resp.status
        self.written.extend(ks)

    def newest_ms(self) -> int:
        return self.grid_ms(self.written[-1]) + SCRAPE_MS if self.written else 0  # phase < 15s

    def keep_fresh(self, server: Server, within_s: float = 120.0) -> None:
        """Federation sees only samples of the last 5m (lookback): scrape on, up to now, between phases."""
        now_ms = int(time.time() * 1000)
        if now_ms - self.newest_ms() < within_s * 1000:
            return
        last = self.written[-1]
        ks = [k for k in range(last + 1, last + 1000) if self.grid_ms(k) + SCRAPE_MS <= now_ms]
        if ks:
            self.write(server, ks)


# -- one run of each client --------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.idle_rate = 0.0  # the source's CPU-seconds per second with no client

    def start(self) -> None:
        a = self.args
        ext = "".join(f"    {k}: {v}\n" for k, v in EXTERNAL.items())
        self.src = start_prometheus(
            self.tmp / "source",
            f"global:\n  external_labels:\n{ext}",
            remote_write_receiver=True,
            name="source",
        )
        self.vm = start_victoria_metrics(self.tmp / "vm")
        self.data = Data(a.series)
        samples = a.minutes * 60_000 // SCRAPE_MS
        now_ms = int(time.time() * 1000)
        self.data.base_ms = now_ms - (samples + 1) * SCRAPE_MS
        t0 = time.monotonic()
        self.data.write(self.src, list(range(samples)))
        print(f"source ready: {self.data.series:,} series x {samples} samples (15s apart) written in "
              f"{time.monotonic() - t0:.0f}s", flush=True)  # fmt: skip

    def close(self) -> None:
        for server in (getattr(self, "vm", None), getattr(self, "src", None)):
            if server is not None:
                server.stop()

    def measure_idle(self, seconds: float) -> None:
        c0 = cpu_seconds(self.src.proc.pid)
        time.sleep(seconds)
        self.idle_rate = (cpu_seconds(self.src.proc.pid) - c0) / seconds

    def _source_net(self, cpu: float, seconds: float) -> float:
        return max(0.0, cpu - self.idle_rate * seconds)

    # observe, one `run --once` in a subprocess
    def observe_once(
        self,
        name: str,
        *,
        protocol: str,
        data_dir: Path,
        accepted: tuple[int, ...] = (STREAMED_XOR_CHUNKS, SAMPLES),
        selector: str = SELECT_ALL,
        interval: float = 3600.0,
        start_from: float = 300.0,
    ) -> tuple[float, int, float, float]:
        """(collector CPU s, collector peak RSS, source CPU s net of idle, rows delivered)."""
        a = self.args
        cfg = {
            "interval": f"{interval:g}s",  # a remote-read cycle reads for at most `interval`
            "data_dir": str(data_dir),
            "self_metrics": False,
            "shutdown_timeout": "600s",
            "remote_read": {
                "start_from": f"{start_from:.0f}s", "safety_lag": f"{SAFETY_LAG_S:g}s",
                "max_window": f"{a.max_window:g}s", "backfill_limit": f"{max(3600.0, start_from + 60):.0f}s",
            },
            "clusters": [{"name": "src", "prometheus": {
                "url": self.src.url, "protocol": protocol, "match": [selector], "timeout": f"{min(interval * 0.9, 300):g}s",
            }}],
            "central": {"remote_write": {"url": self.vm.url + "/api/v1/write"}},
        }  # fmt: skip
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = self.tmp / f"{name}.log"
        argv = [sys.executable, "-c", _LAUNCH, ",".join(map(str, accepted)),
                "--log-level", "warning", "run", "--once", "-c", str(path)]  # fmt: skip
        rows0, src0, t0 = vm_rows_settled(self.vm), cpu_seconds(self.src.proc.pid), time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        status, usage = _wait4(proc, timeout=900)
        src_cpu, seconds = cpu_seconds(self.src.proc.pid) - src0, time.monotonic() - t0
        if status != 0:
            raise RuntimeError(f"{name}: observe exited with {status}:\n{log.read_text()[-3000:]}")
        rows = vm_rows_settled(self.vm) - rows0
        return (
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss * 1024,
            self._source_net(src_cpu, seconds),
            rows,
        )

    def federate_pulls(self, n: int) -> Row:
        url = self.src.url + "/federate?" + urllib.parse.urlencode({"match[]": SELECT_ALL})
        headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip"}  # what observe's session sends (and vmagent)
        samples = 0
        c0, t0 = cpu_seconds(self.src.proc.pid), time.monotonic()
        for i in range(n):
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as resp:
                body = resp.read()
                gzipped = resp.headers.get("Content-Encoding") == "gzip"
            if i == 0:  # counted once, outside the source's work: every pull of static data is the same
                text = gzip.decompress(body) if gzipped else body
                per_pull = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
            samples += per_pull
        cpu = self._source_net(cpu_seconds(self.src.proc.pid) - c0, time.monotonic() - t0)
        return Row(f"federate x{n} (bench GETs)", samples, self.data.series, source_cpu=cpu)

    def vmagent(self) -> Row:
        a = self.args
        config = {
            "global": {"scrape_interval": f"{a.vmagent_interval:g}s", "scrape_timeout": f"{a.vmagent_interval:g}s"},
            "scrape_configs": [{
                "job_name": "federate", "honor_labels": True, "honor_timestamps": True, "metrics_path": "/federate",
                "params": {"match[]": [SELECT_ALL]}, "stream_parse": True,
                "static_configs": [{"targets": [self.src.url.removeprefix("http://")]}],
            }],
        }  # fmt: skip
        path = self.tmp / "vmagent.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(
            ["vmagent", f"-promscrape.config={path}", f"-remoteWrite.url={self.vm.url}/api/v1/write",
             f"-remoteWrite.tmpDataPath={self.tmp / 'vmagent-data'}", f"-httpListenAddr=127.0.0.1:{free_port()}",
             "-loggerLevel=ERROR", "-promscrape.maxScrapeSize=1GiB"],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / "vmagent.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        try:
            time.sleep(a.vmagent_interval * 2.5)  # warm-up: start-up and the first scrapes
            if proc.poll() is not None:
                raise RuntimeError(f"vmagent exited with {proc.returncode}")
            c0, s0, r0, t0 = (
                cpu_seconds(proc.pid),
                cpu_seconds(self.src.proc.pid),
                vm_rows(self.vm),
                time.monotonic(),
            )
            time.sleep(a.vmagent_interval * a.vmagent_scrapes)
            c1, s1, r1 = cpu_seconds(proc.pid), cpu_seconds(self.src.proc.pid), vm_rows(self.vm)
            rss = peak_rss_bytes(proc.pid)
        finally:
            stop_process(proc, 30)
        src = self._source_net(s1 - s0, time.monotonic() - t0)
        return Row("vmagent stream_parse", r1 - r0, self.data.series, source_cpu=src, collector_cpu=c1 - c0,
                   peak_rss=rss)  # fmt: skip

    def observe_warm(self, name: str, *, data_dir: Path, accepted: tuple[int, ...]) -> Row:
        """A long-running `observe run` at `--steady-interval`, measured over `--steady-cycles` cycles after
        `--steady-warmup` ones (the first reads the gap since the backfill and fills the label cache), while
        a writer thread adds each 15s sample of every series once all its phases have passed, as scrapes
        would. CPU and delivered rows are read with the collector idle (the queue drained) at both ends;
        the source is busy with the writes too, so its CPU is not counted in this row."""
        a, data = self.args, self.data
        stop = threading.Event()

        def write_due() -> None:
            while not stop.is_set():
                now_ms = time.time() * 1000
                last = data.written[-1]
                ks = [k for k in range(last + 1, last + 200) if data.grid_ms(k) + SCRAPE_MS <= now_ms]
                if ks:
                    data.write(self.src, ks)
                stop.wait(0.5)

        writer = threading.Thread(target=write_due, name="scrapes", daemon=True)
        writer.start()
        listen = f"127.0.0.1:{free_port()}"
        cfg = {
            "interval": f"{a.steady_interval:g}s", "data_dir": str(data_dir), "listen": listen, "self_metrics": False,
            # a sample is written up to 15s after its timestamp (its phase): read only behind that
            "remote_read": {"safety_lag": "20s", "max_window": f"{a.max_window:g}s", "backfill_limit": "3600s",
                            "min_window": f"{a.min_window:g}s"},
            "clusters": [{"name": "src", "prometheus": {
                "url": self.src.url, "protocol": "remote_read", "match": [SELECT_ALL],
                "timeout": f"{a.steady_interval * 0.9:g}s",
            }}],
            "central": {"remote_write": {"url": self.vm.url + "/api/v1/write"}},
        }  # fmt: skip
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        argv = [sys.executable, "-c", _LAUNCH, ",".join(map(str, accepted)),
                "--log-level", "warning", "run", "-c", str(path)]  # fmt: skip
        with open(self.tmp / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://{listen}/metrics"
        try:
            limit = max(a.steady_interval, a.min_window) * (a.steady_warmup + a.steady_cycles + 4) + 120
            deadline = time.monotonic() + limit
            self._cycles_done(url, proc, a.steady_warmup, deadline)
            rows0, cpu0 = vm_rows_settled(self.vm), cpu_seconds(proc.pid)
            self._cycles_done(url, proc, a.steady_warmup + a.steady_cycles, deadline)
            rows1, cpu1 = vm_rows_settled(self.vm), cpu_seconds(proc.pid)
            rss = peak_rss_bytes(proc.pid)
        finally:
            stop.set()
            stop_process(proc, 60)
            writer.join(60)
        return Row(name, rows1 - rows0, data.series, collector_cpu=cpu1 - cpu0, peak_rss=rss)

    @staticmethod
    def _cycles_done(url: str, proc: subprocess.Popen[bytes], n: int, deadline: float) -> None:
        """Wait until observe has read `n` times (observe_pull_duration_seconds_count: a cycle that waits
        for min_window does not count)."""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"observe exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    text = resp.read().decode()
            except OSError:
                text = ""
            done = sum(
                float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("observe_pull_duration_seconds_count") and 'source="prometheus"' in line
            )  # fmt: skip
            if done >= n:
                return
            time.sleep(2.0)  # each poll renders observe's /metrics: seldom, so it adds little to the row
        raise RuntimeError(f"observe did not finish {n} cycles in time")

    def chunk_overhead(self, start_ms: int, end_ms: int) -> tuple[float, float]:
        """(samples in the chunks the source sent, samples inside the window), per series, for one window."""
        q = [Query(start_ms + 1, end_ms, parse_selector(SELECT_ALL))]
        req = urllib.request.Request(self.src.url + "/api/v1/read", data=encode_read_request(q, [STREAMED_XOR_CHUNKS]),
                                     headers=dict(REQUEST_HEADERS), method="POST")  # fmt: skip
        with urllib.request.urlopen(req, timeout=120) as resp:
            body = resp.read()
        decoded = inside = nseries = 0
        for frame in decode_chunked_body(body):
            for series in frame.series:
                nseries += 1
                for chunk in series.chunks:
                    ts = decode_xor(chunk.data)[0]
                    decoded += len(ts)
                    inside += sum(1 for t in ts if start_ms < t <= end_ms)
        return decoded / max(nseries, 1), inside / max(nseries, 1)


def _wait4(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, resource.struct_rusage]:
    """Reap our child by its PID with its own rusage (CPU, max RSS); bounded: SIGKILL after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)


# -- the run -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="observe-bench-rr-") as tmp_s:
        tmp = Path(tmp_s)
        bench = Bench(args, tmp)
        try:
            bench.start()
            return phases(bench, tmp)
        finally:
            bench.close()


def phases(bench: Bench, tmp: Path) -> list[Row]:
    a, data, rows = bench.args, bench.data, []
    n = data.series
    bench.measure_idle(3.0)

    print("start-up cost (observe run --once, a selector that matches nothing) ...", flush=True)
    startups = [bench.observe_once(f"startup{i}", protocol="remote_read", data_dir=tmp / f"startup{i}",
                                   selector=SELECT_NONE) for i in range(2)]  # fmt: skip
    start_cpu = min(s[0] for s in startups)  # the fixed cost; noise only adds to it
    start_rss = min(s[1] for s in startups)

    def observe_row(name: str, got: tuple[float, int, float, float]) -> Row:
        cpu, rss, src, delivered = got
        return Row(name, delivered, n, source_cpu=src, collector_cpu=max(0.0, cpu - start_cpu),
                   peak_rss=rss, net_rss=max(0, rss - start_rss))  # fmt: skip

    print(f"federation: {a.pulls} pulls by the bench, observe --once, vmagent ...", flush=True)
    data.keep_fresh(bench.src)
    fed = bench.federate_pulls(a.pulls)
    rows.append(fed)
    data.keep_fresh(bench.src)
    rows.append(observe_row("observe federate --once", bench.observe_once(
        "federate", protocol="federate", data_dir=tmp / "federate")))  # fmt: skip
    data.keep_fresh(bench.src)
    rows.append(bench.vmagent())

    print("remote-read backfill: streamed XOR chunks, then SAMPLES ...", flush=True)
    per_series = len(data.written)
    start_from = time.time() - data.grid_ms(data.written[0]) / 1000 + 60
    dirs = {"xor": tmp / "rr-xor", "samples": tmp / "rr-samples"}
    accepted = {"xor": (STREAMED_XOR_CHUNKS, SAMPLES), "samples": (SAMPLES,)}
    for kind, label in (("xor", "streamed XOR"), ("samples", "SAMPLES")):
        got = bench.observe_once(f"rr-{kind}", protocol="remote_read", data_dir=dirs[kind],
                                 accepted=accepted[kind], start_from=start_from)  # fmt: skip
        rows.append(observe_row(f"remote-read {label} backfill", got))
    cursor_ms = int((time.time() - SAFETY_LAG_S) * 1000)  # at or after both cursors

    window_s = max(a.steady_interval, a.min_window)  # what one steady read covers
    steady = max(1, round(window_s * 1000 / SCRAPE_MS))
    first = next(
        k for k in range(data.written[-1] + 1, data.written[-1] + 10_000) if data.grid_ms(k) > cursor_ms + 10
    )
    ks = list(range(first, first + steady))
    ready_ms = data.grid_ms(ks[-1]) + SCRAPE_MS + int(SAFETY_LAG_S * 1000) + 500
    wait = max(0.0, ready_ms / 1000 - time.time())
    print(f"remote-read steady state: {steady} new samples per series; waiting {wait:.0f}s for them to be "
          f"older than the safety lag ...", flush=True)  # fmt: skip
    bench.measure_idle(max(3.0, wait))  # the source with no client: its idle rate, measured while we wait
    data.write(bench.src, ks)
    for kind, label in (("xor", "streamed XOR"), ("samples", "SAMPLES")):
        got = bench.observe_once(f"rr-{kind}-steady", protocol="remote_read", data_dir=dirs[kind],
                                 accepted=accepted[kind], interval=a.steady_interval)  # fmt: skip
        rows.append(observe_row(f"remote-read {label} {window_s:g}s cold", got))
    window_end = data.grid_ms(ks[-1]) + SCRAPE_MS
    in_chunks, inside = bench.chunk_overhead(data.grid_ms(ks[0]) - 1, window_end)

    print(f"remote-read steady state, warm: `observe run` every {a.steady_interval:g}s (min_window "
          f"{a.min_window:g}s), {a.steady_cycles} reads "
          f"measured after {a.steady_warmup}, new samples written as they fall due ...", flush=True)  # fmt: skip
    for kind, label in (("xor", "streamed XOR"), ("samples", "SAMPLES")):
        rows.append(bench.observe_warm(f"remote-read {label} {a.steady_interval:g}s warm", data_dir=dirs[kind],
                                       accepted=accepted[kind]))  # fmt: skip

    print()
    print_table(rows)
    report(rows, fed, n, per_series, steady, in_chunks, inside, start_cpu, start_rss, bench.idle_rate)
    return rows


def _fmt(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def print_table(rows: list[Row]) -> None:
    print(f"{'row':<34} {'samples':>11} {'src CPU s':>9} {'src s/1M':>9} {'coll CPU s':>10} {'coll s/1M':>9} "
          f"{'peak RSS':>9} {'RSS/ser':>8} {'net RSS/ser':>11}")  # fmt: skip
    for r in rows:
        peak = None if r.peak_rss is None else r.peak_rss / 2**20
        per = None if r.peak_rss is None else r.peak_rss / r.series
        net = None if r.net_rss is None else r.net_rss / r.series
        print(
            f"{r.name:<34} {r.samples:>11,.0f} {_fmt(r.source_cpu, '.2f', 9)} "
            f"{_fmt(r.per_million(r.source_cpu), '.3f', 9)} {_fmt(r.collector_cpu, '.2f', 10)} "
            f"{_fmt(r.per_million(r.collector_cpu), '.2f', 9)} {_fmt(peak, '.0f', 7)}Mi "
            f"{_fmt(per, '.0f', 6)} B {_fmt(net, '.0f', 9)} B"
        )
    print()


def report(
    rows: list[Row],
    fed: Row,
    n: int,
    per_series: int,
    steady: int,
    in_chunks: float,
    inside: float,
    start_cpu: float,
    start_rss: int,
    idle_rate: float,
) -> None:
    fed_pm = fed.per_million(fed.source_cpu) or float("nan")
    pulls = fed.samples / n
    per_pull = (fed.source_cpu or 0.0) / pulls
    print(f"observe start-up (subtracted): {start_cpu:.2f} CPU s, {start_rss / 2**20:.0f} MiB peak; "
          f"source idle (subtracted): {idle_rate * 1000:.1f} ms CPU per s")  # fmt: skip
    print(f"federation arithmetic: {per_pull:.3f} source CPU s per pull of {n:,} samples; the backfill's "
          f"{per_series} samples per series take {per_series} pulls = {per_pull * per_series:.2f} CPU s "
          f"({fed_pm:.3f} s per 1M samples)")  # fmt: skip
    print(f"chunks: a {steady * 15}s window's streamed reply held {in_chunks:.1f} samples per series in its "
          f"chunks, {inside:.1f} of them inside the window; the backfill delivered {per_series} per series, "
          f"{n * per_series:,} expected")  # fmt: skip
    vm = next((r for r in rows if r.name.startswith("vmagent")), None)
    vm_pm = vm.per_million(vm.collector_cpu) if vm else None
    vm_rss = vm.peak_rss / vm.series if vm and vm.peak_rss else None
    for r in rows:
        if not r.name.startswith(("remote-read", "observe")):
            continue
        src = r.per_million(r.source_cpu)
        shown = "    -" if src is None else f"{src / fed_pm:5.2f}"
        line = f"{r.name:<34} source/federate per sample {shown} (target <= 0.3)"
        if vm_pm:
            coll = (r.per_million(r.collector_cpu) or 0.0) / vm_pm
            line += f"   collector/vmagent CPU per sample {coll:5.2f} (target <= 1.0)"
        if vm_rss and r.peak_rss:
            line += f"   RSS/series vs vmagent {r.peak_rss / r.series / vm_rss:4.2f} (net {(r.net_rss or 0) / r.series / vm_rss:4.2f})"
        print(line)
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=30_000, help="series in the source")
    p.add_argument("--minutes", type=int, default=20, help="minutes of 15s samples written before the runs")
    p.add_argument(
        "--max-window", type=float, default=300.0, help="observe's remote_read.max_window, seconds"
    )
    p.add_argument("--steady-interval", type=float, default=30.0, help="the steady-state cycle, seconds")
    p.add_argument("--min-window", type=float, default=RemoteReadConfig().min_window,
                   help="observe's remote_read.min_window, seconds (default: observe's)")  # fmt: skip
    p.add_argument("--steady-warmup", type=int, default=2, help="warm run: reads before the measured ones")
    p.add_argument("--steady-cycles", type=int, default=3, help="warm run: reads measured")
    p.add_argument("--pulls", type=int, default=10, help="federate GETs to time the source's cost per pull")
    p.add_argument("--vmagent-interval", type=float, default=3.0, help="vmagent's scrape_interval, seconds")
    p.add_argument(
        "--vmagent-scrapes", type=int, default=8, help="scrape intervals in vmagent's measured window"
    )
    args = p.parse_args(argv)
    for binary in ("prometheus", "victoria-metrics", "vmagent"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed", file=sys.stderr)
            return 2
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
