"""LogQL parsed with Grafana's own grammar (`@grafana/lezer-logql`, the one its query editor uses), run by
Node.js from tests/js/parse_logql.mjs, so checking a query's syntax needs no Loki server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.servers import require_binary

JS = Path(__file__).resolve().parent / "js"


def parse_logql(exprs: list[str]) -> list[dict[str, Any]]:
    """One `{"errors": [...], "groupings": [...]}` per expression (see parse_logql.mjs). Without the npm
    packages the test fails in CI and is skipped elsewhere, as `require_binary` does for node itself."""
    node = require_binary("node")
    if not (JS / "node_modules" / "@grafana" / "lezer-logql").is_dir():
        msg = "tests/js/node_modules is missing: run `npm ci` in tests/js (the README's test command does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    done = subprocess.run(
        [node, "parse_logql.mjs"], cwd=JS, input=json.dumps(exprs), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(exprs)
    return results
