"""Run the real `observe` command as a subprocess, the way an operator does, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.servers import free_port, stop_process


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_once(
    config: Path, *, timeout: float = 120.0, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`observe run --once -c config`; returns the finished process (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "observe", *extra, "run", "--once", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@dataclass
class CollectorProcess:
    """A long-running `observe run` we started; stopped or killed by its PID only."""

    proc: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def status(self) -> dict[str, Any]:
        """The `/status` JSON document."""
        with urllib.request.urlopen(self.url + "/status", timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def metric_value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for fam in text_string_to_metric_families(self.metrics()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def terminate(self, timeout: float = 30.0) -> int:
        return stop_process(self.proc, timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_collector(
    config: Path, *, config_dict: dict[str, Any] | None = None, ready_timeout: float = 20.0
) -> CollectorProcess:
    """Start `observe run -c config` listening on a free port; wait for /readyz."""
    port = free_port()
    data = yaml.safe_load(config.read_text()) if config_dict is None else config_dict
    data["listen"] = f"127.0.0.1:{port}"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    log_path = config.with_suffix(f".{int(time.time() * 1000)}.log")
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "observe", "--log-format", "json", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    cp = CollectorProcess(proc, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"observe exited with {proc.returncode}:\n{cp.log_text()}")
        try:
            with urllib.request.urlopen(cp.url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return cp
        except OSError:
            pass
        time.sleep(0.1)
    cp.kill()
    raise RuntimeError(f"observe not ready after {ready_timeout}s:\n{cp.log_text()}")
