"""Start and stop the real servers the integration tests talk to (Debian's packages).

Every server listens on 127.0.0.1 on a free port, keeps its data in a temp dir, and is stopped by the
PID we started, never by name. A missing binary skips the test on a developer's machine but fails it in
CI (`CI=true`), where the README's test command has installed it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM a process we started (by its PID), SIGKILL it if it is still there after `timeout` seconds;
    its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    """The binary's path; in CI a missing binary is a failure, elsewhere a skip."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (the README's test command installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@dataclass
class Server:
    """A server process we started; `stop()` signals our PID only."""

    name: str
    url: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def open_path(server: Server, path: str, timeout: float = 10.0) -> Any:
    """GET `path` from `server` with the TLS context and headers it was started with (none for most)."""
    request = urllib.request.Request(server.url + path, headers=dict(server.extra.get("headers", {})))
    return urllib.request.urlopen(request, timeout=timeout, context=server.extra.get("ssl_context"))


def _wait_ready(server: Server, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with open_path(server, path, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"{server.name} not ready after {timeout}s ({last}):\n{server.log_tail()}")


def _spawn(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    port: int,
    ready_path: str,
    *,
    scheme: str = "http",
    extra: dict[str, Any] | None = None,
) -> Server:
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(
        name=name,
        url=f"{scheme}://127.0.0.1:{port}",
        port=port,
        workdir=workdir,
        proc=proc,
        log_path=log_path,
        extra=extra or {},
    )
    _wait_ready(server, ready_path)
    return server


def start_prometheus(
    workdir: Path,
    config_yaml: str = "global: {}\n",
    *,
    remote_write_receiver: bool = False,
    extra_args: Sequence[str] = (),
    name: str = "prometheus",
    port: int | None = None,
    web_config_yaml: str | None = None,
    client_ssl: ssl.SSLContext | None = None,
    client_headers: Mapping[str, str] | None = None,
) -> Server:
    """A real Prometheus; `config_yaml` is written to prometheus.yml in `workdir`.

    `web_config_yaml` (Prometheus' --web.config.file: `tls_server_config`, `basic_auth_users`) is written
    to web.yml; with `tls_server_config` the server speaks https. `client_ssl` and `client_headers` are
    what this module's own requests to it (readiness, `prom_query`, `open_path`) use to get in.
    """
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    (workdir / "prometheus.yml").write_text(config_yaml)
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]
    if remote_write_receiver:
        argv.append("--web.enable-remote-write-receiver")
    scheme = "http"
    if web_config_yaml is not None:
        (workdir / "web.yml").write_text(web_config_yaml)
        argv.append(f"--web.config.file={workdir / 'web.yml'}")
        if (yaml.safe_load(web_config_yaml) or {}).get("tls_server_config"):
            scheme = "https"
    argv.extend(extra_args)
    extra = {"ssl_context": client_ssl, "headers": dict(client_headers or {})}
    return _spawn(name, argv, workdir, port, "/-/ready", scheme=scheme, extra=extra)


def start_victoria_metrics(
    workdir: Path, *, extra_args: Sequence[str] = (), name: str = "victoria-metrics"
) -> Server:
    binary = require_binary("victoria-metrics")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        binary,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={workdir / 'data'}",
        "-loggerLevel=WARN",
        "-search.latencyOffset=0s",
        *extra_args,
    ]
    return _spawn(name, argv, workdir, port, "/health")


def start_alertmanager(workdir: Path, config_yaml: str, *, name: str = "alertmanager") -> Server:
    binary = require_binary("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (workdir / "alertmanager.yml").write_text(config_yaml)
    argv = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    return _spawn(name, argv, workdir, port, "/-/ready")


def get_json(url: str, timeout: float = 10.0) -> Any:
    import json

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def prom_query(server: Server, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query against a real Prometheus (or VictoriaMetrics); returns the result vector."""
    import json
    from urllib.parse import urlencode

    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    with open_path(server, f"/api/v1/query?{urlencode(params)}") as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def wait_until(predicate: Any, timeout: float, interval: float = 0.2, message: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
