"""The README's commands, run as written, so the README cannot drift from what works.

`./scripts/demo` (the first of the two commands) is run with the arguments the README shows for a shorter
run; every `observe ...` line of the README's shell blocks whose subcommand works offline is run with
`observe.yaml` standing for the example config (deploy/observe.example.yaml) and its output directories in
a temporary directory. The second command, `./scripts/test`, is what runs this test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OFFLINE = {"rules", "dashboards", "rbac", "config"}  # need no server; `demo` is run below, `check`/`run` need a fleet


def shell_lines() -> list[str]:
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def test_the_two_commands_are_the_scripts_ci_runs() -> None:
    lines = shell_lines()
    assert lines[:2] == ["./scripts/demo", "./scripts/test"]
    for script in ("scripts/demo", "scripts/test"):
        assert os.access(ROOT / script, os.X_OK), script
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.real_server  # the demo's optional centre is not used here, but its run takes ~30s
def test_scripts_demo_runs_as_the_readme_shows(tmp_path: Path) -> None:
    shorter = next(line for line in shell_lines() if line.startswith("observe demo --duration"))
    args = [*shlex.split(shorter)[2:], "--data-dir", str(tmp_path / "data")]
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo"), *args], capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK: nothing lost, nothing duplicated" in done.stdout


def test_every_offline_observe_line_of_the_readme_runs(tmp_path: Path) -> None:
    example = ROOT / "deploy" / "observe.example.yaml"
    ran = []
    for line in shell_lines():
        words = shlex.split(line.replace("[--upload]", "").replace("[--format table|csv|json]", ""))
        if words[0] != "observe" or len(words) < 2 or words[1] not in OFFLINE or "--upload" in words:
            continue
        redirect = None
        if ">" in words:
            at = words.index(">")
            redirect, words = tmp_path / words[at + 1], words[:at]
        words = [str(example) if w == "observe.yaml" else w for w in words]
        words = [str(tmp_path / w) if w.endswith("/") else w for w in words]  # output directories
        done = subprocess.run(
            [sys.executable, "-m", "observe", *words[1:]], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert done.returncode == 0, f"{line}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        if redirect is not None:
            redirect.write_text(done.stdout)
            json.loads(done.stdout)  # `config schema` prints JSON
        ran.append(words[1])
    assert {"rules", "dashboards", "config"} <= set(ran), ran
