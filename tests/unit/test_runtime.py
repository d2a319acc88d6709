"""`observe run` tunes the garbage collector once, after start-up (observe/runtime.py)."""

from __future__ import annotations

import subprocess
import sys

from observe.runtime import GC_THRESHOLDS


def test_tune_gc_raises_the_thresholds_and_freezes_what_start_up_made() -> None:
    code = (
        "import gc, observe.runtime as r\n"
        "before = gc.get_freeze_count()\n"
        "r.tune_gc()\n"
        "print(gc.get_threshold(), before, gc.get_freeze_count() > before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(")", 1)[0] + ")" == str(GC_THRESHOLDS)
    assert out.split()[-2:] == ["0", "True"]
