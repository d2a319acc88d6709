"""bench/remote_read_vs_federate.py runs end to end at a tiny size and prints every row, so it cannot rot.

Never a timed assertion: a tiny run's figures on a shared machine mean nothing. It starts a real
Prometheus, VictoriaMetrics and vmagent, hence `real_server`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_server

ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "federate x2 (bench GETs)",
    "observe federate --once",
    "vmagent stream_parse",
    "remote-read streamed XOR backfill",
    "remote-read SAMPLES backfill",
    "remote-read streamed XOR 15s cold",
    "remote-read SAMPLES 15s cold",
    "remote-read streamed XOR 15s warm",
    "remote-read SAMPLES 15s warm",
)


@pytest.mark.timeout(420)
def test_remote_read_vs_federate_prints_every_row() -> None:
    for binary in ("prometheus", "victoria-metrics", "vmagent"):
        from tests.servers import require_binary

        require_binary(binary)
    done = subprocess.run(
        [sys.executable, "-m", "bench.remote_read_vs_federate", "--series", "300", "--minutes", "2",
         "--pulls", "2", "--vmagent-interval", "1", "--vmagent-scrapes", "2", "--steady-interval", "15", "--min-window", "0",
         "--steady-warmup", "1", "--steady-cycles", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=360, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ROWS:
        assert any(line.startswith(name) for line in lines), name
    assert any(line.startswith("federation arithmetic:") for line in lines)
    backfill = next(line for line in lines if line.startswith("remote-read streamed XOR backfill ")).split()
    expected = (
        next(line for line in lines if line.startswith("chunks:")).rsplit(" expected", 1)[0].split()[-1]
    )
    assert backfill[4] == expected  # every sample written was delivered, counted by VictoriaMetrics
    for kind in ("streamed XOR", "SAMPLES"):  # the warm runs delivered the samples that fell due meanwhile
        name = f"remote-read {kind} 15s warm "
        warm = next(line for line in lines if line.startswith(name))
        assert float(warm[len(name) :].split()[0].replace(",", "")) > 0, warm
