"""Every benchmark entry point runs end to end at tiny sizes and prints its table, so bench/ cannot rot.

Never a timed assertion: the figures of a tiny run on a shared machine mean nothing. The benchmarks start
real collectors and receivers (vmagent, victoria-metrics, prometheus), hence `real_server`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_server

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: float = 240) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _row(lines: list[str], first: str) -> list[str]:
    rows = [line.split() for line in lines if line.split()[:1] == [first]]
    assert rows, f"no {first!r} row in:\n" + "\n".join(lines)
    return rows[0]


def test_federate_vs_vmagent_prints_every_collector_and_the_scale_curve() -> None:
    out = _run(
        "bench.federate_vs_vmagent", "--series", "300", "--clusters", "1", "--interval", "1",
        "--warmup", "1", "--cycles", "1", "--scale", "1,2", "--dead",
    )  # fmt: skip
    for name in ("observe", "vmagent", "vmagent-stream", "observe+dead"):
        assert len(_row(out, name)) == 10, name  # every column, `cycle s` as `-` for vmagent
    assert any(line.startswith("ratio observe / best vmagent:") for line in out)
    curve = out[out.index("scale curve (observe):") :]
    assert [r.split()[1] for r in curve if r.split()[:1] == ["observe"]] == ["1", "2"]  # clusters column


def test_hot_path_prints_cold_and_warm() -> None:
    out = _run("bench.hot_path", "--series", "500", "--cycles", "2")
    assert any(line.startswith("cold cycle:") for line in out)
    assert any(line.startswith("warm cycle:") for line in out)


def test_logs_pipeline_prints_both_rows() -> None:
    out = _run("bench.logs_pipeline", "--entries", "500", "--streams", "5")
    assert _row(out, "including")[:2] == ["including", "start-up"]
    assert _row(out, "after")[:2] == ["after", "start-up"]


def test_remote_read_decode_runs() -> None:
    out = _run("bench.remote_read_decode")  # fixed small sizes (1000 series x 200 samples): seconds
    assert any(line.startswith("streamed: frames+protobuf") for line in out)
    assert any(line.startswith("SAMPLES:  snappy+protobuf") for line in out)


def test_remote_read_source_prints_both_ways_and_every_window() -> None:
    out = _run("bench.remote_read_source", "--series", "300", "--requests", "2", "--rounds", "1")
    for way in ("read-lands", "read-batched", "fed-lands", "fed-batched"):
        row = _row(out, way)
        assert float(row[-1]) > 0, row  # a wall time per request: the requests were answered and read
    for window in ("30s", "60s", "90s", "120s", "300s"):
        assert _row(out, window)[-1].endswith("x")  # the cost per sample against /federate
