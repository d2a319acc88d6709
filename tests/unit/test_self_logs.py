"""The collector's own logs reach a (fake) central Loki, labelled self_cluster, and never block."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

from observe.config import parse_config
from observe.telemetry.own_logs import ship_own_logs, stop_shipping
from tests.loki_api_fake import FakeLoki


def _cfg(tmp_path: Path, push_url: str, **logs: object) -> object:
    return parse_config({
        "data_dir": str(tmp_path),
        "self_cluster": "mgmt",
        "clusters": [{"name": "alpha", "loki": {"url": "http://127.0.0.1:1", "selectors": ['{a="b"}']}}],
        "central": {"loki": {"url": push_url, "tenant": "fleet"}},
        "logs": logs,
    })  # fmt: skip


async def test_own_logs_reach_fake_central_loki_with_self_cluster(tmp_path: Path) -> None:
    central = await FakeLoki(auth_enabled=True).start()
    handler = ship_own_logs(_cfg(tmp_path, central.push_url), logger="observe.test_self_logs")  # type: ignore[arg-type]
    assert handler is not None
    try:
        logging.getLogger("observe.test_self_logs.x").warning("pull failed", extra={"cluster": "alpha"})
        handler.flush_event.set()
        deadline = time.monotonic() + 10
        while not central.entries("fleet") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            handler.flush_event.set()
        [(_, labels, line, _)] = central.entries("fleet")
        assert labels == (("app", "observe"), ("self_cluster", "mgmt"))
        doc = json.loads(line)
        assert doc["message"] == "pull failed" and doc["cluster"] == "alpha" and doc["level"] == "WARNING"
    finally:
        stop_shipping(handler, logger="observe.test_self_logs")
        await central.stop()


def test_own_logs_never_block_when_the_centre_hangs(tmp_path: Path) -> None:
    # A server that accepts connections and never answers: the worst case for a blocking client.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/loki/api/v1/push"
        handler = ship_own_logs(_cfg(tmp_path, url), logger="observe.test_self_logs_hung")  # type: ignore[arg-type]
        assert handler is not None
        handler.max_buffered = 1000
        try:
            logger = logging.getLogger("observe.test_self_logs_hung")
            handler.flush_event.set()
            start = time.monotonic()
            for i in range(5000):
                logger.warning("busy", extra={"i": i})
            assert time.monotonic() - start < 2.0  # emit only enqueues
            assert handler.buffer.qsize() <= 1000 and handler.dropped >= 2000  # and the buffer is capped
        finally:
            stop_shipping(handler, logger="observe.test_self_logs_hung")


def test_opt_out_and_no_central_loki_ship_nothing(tmp_path: Path) -> None:
    assert ship_own_logs(_cfg(tmp_path, "http://127.0.0.1:9/loki/api/v1/push", ship_own_logs=False)) is None  # type: ignore[arg-type]
    cfg = parse_config(
        {"clusters": [{"name": "a", "loki": {"url": "http://127.0.0.1:1", "selectors": ['{a="b"}']}}]}
    )
    assert ship_own_logs(cfg) is None
