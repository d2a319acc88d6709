"""Per-cluster TLS and credentials against a real Prometheus 2.42 that serves its API over TLS, requires a
client certificate and checks basic auth (`--web.config.file`:
https://prometheus.io/docs/prometheus/latest/configuration/https/), pulled by the real `observe run --once`,
`observe run` and `observe check` commands and delivered to a real central Prometheus receiver.

Certificates come from the openssl CLI, the password hash from the `bcrypt` package (Prometheus'
`basic_auth_users` takes bcrypt hashes only). One TLS Prometheus, one plain one and the centre serve every
case in this module; each case uses its own cluster names, so its series at the centre are its own.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import bcrypt
import pytest

from tests.collector_proc import run_once, start_collector, write_config
from tests.e2e.test_metrics_path import Exporter, central_series, cluster_prometheus, expected_series
from tests.fleet_fixtures import FEDERATE
from tests.servers import (
    Server,
    free_port,
    open_path,
    prom_query,
    require_binary,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.real_server

USER = "observe"
# Same length on purpose: rotating one into the other in place keeps the file's size.
PASSWORD = "correct-horse-battery-staple-41"
WRONG = "wrong-horse-battery-staple-0042"
SERVER_NAME = "prometheus.cluster-a.test"
SELF = "mgmt"


# -- the PKI, made with the openssl CLI ------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA the server does not trust
    rogue_key: Path


def _openssl(d: Path, *args: str) -> None:
    subprocess.run([require_binary("openssl"), *args], cwd=d, check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> None:
    _openssl(
        d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=observe test {name}",
    )  # fmt: skip


def _leaf(d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(
        ext + "basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-set_serial", "7",
        "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


def make_pki(d: Path) -> PKI:
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _leaf(d, "server", "ca", f"subjectAltName=IP:127.0.0.1,DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _leaf(d, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return PKI(
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
        rogue_cert=d / "rogue.crt",
        rogue_key=d / "rogue.key",
    )


# -- the servers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    pki: PKI
    tls_prom: Server  # https only, client certificate required, basic auth
    plain_prom: Server
    centre: Server


def web_config(pki: PKI) -> str:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()  # 4: fast, still bcrypt
    return (
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        f"  client_ca_file: {pki.ca}\n"
        "basic_auth_users:\n"
        f"  {USER}: '{hashed}'\n"
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("tls-fleet")
    pki = make_pki(tmp / "pki")
    exporter = Exporter(rooms=5)
    client = ssl.create_default_context(cafile=str(pki.ca))
    client.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    scrape = (
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{exporter.target}']}}]\n"
    )
    servers: list[Server] = []
    try:
        tls_prom = start_prometheus(
            tmp / "prom-tls", scrape, name="prom-tls", web_config_yaml=web_config(pki), client_ssl=client,
            client_headers={"Authorization": basic(USER, PASSWORD)},
        )  # fmt: skip
        servers.append(tls_prom)
        assert tls_prom.url.startswith("https://")
        servers.append(plain := cluster_prometheus(tmp, "prom-plain", exporter))
        servers.append(centre := start_prometheus(tmp / "centre", remote_write_receiver=True, name="centre"))
        wait_until(lambda: prom_query(tls_prom, 'up{job="demo"} == 1'), 20, message="prom-tls to scrape")
        yield Fleet(pki, tls_prom, plain, centre)
    finally:
        for server in servers:
            server.stop()
        exporter.stop()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- configs and runs -------------------------------------------------------------------------------


def password_file(tmp: Path, value: str, name: str = "password") -> Path:
    path = tmp / name
    path.write_text(value + "\n")
    return path


def tls_cluster(
    name: str,
    fleet: Fleet,
    password: Path | None,
    *,
    ca: bool = True,
    cert: str = "client",  # "client", "rogue" or "none"
    server_name: str | None = None,
    insecure: bool = False,
    url: str | None = None,
    timeout: str = "3s",
) -> dict[str, Any]:
    pki = fleet.pki
    tls: dict[str, Any] = {}
    if ca:
        tls["ca_file"] = str(pki.ca)
    if cert == "client":
        tls.update(cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    elif cert == "rogue":
        tls.update(cert_file=str(pki.rogue_cert), key_file=str(pki.rogue_key))
    if server_name:
        tls["server_name"] = server_name
    if insecure:
        tls["insecure_skip_verify"] = True
    prom: dict[str, Any] = {"url": url or fleet.tls_prom.url, "timeout": timeout, "tls": tls, **FEDERATE}
    if password is not None:
        prom["basic_auth"] = {"username": USER, "password_file": str(password)}
    return {"name": name, "labels": {"region": "eu-west-1"}, "prometheus": prom}


def plain_cluster(name: str, fleet: Fleet) -> dict[str, Any]:
    return {"name": name, "labels": {"region": "us-east-1"},
            "prometheus": {"url": fleet.plain_prom.url, "timeout": "3s", **FEDERATE}}  # fmt: skip


def config(
    tmp: Path, fleet: Fleet, clusters: list[dict[str, Any]], file: str = "observe.yaml", **extra: Any
) -> Path:
    cfg: dict[str, Any] = {
        "interval": "5s",
        "data_dir": str(tmp / "observe-data"),
        "listen": f"127.0.0.1:{free_port()}",
        "self_cluster": SELF,
        "clusters": clusters,
        "central": {
            "remote_write": {
                "url": fleet.centre.url + "/api/v1/write", "min_backoff": "100ms", "max_backoff": "1s",
            }
        },
        "shutdown_timeout": "5s",
        **extra,
    }  # fmt: skip
    return write_config(tmp / file, cfg)


def pull_failures(stderr: str) -> dict[str, dict[str, Any]]:
    """cluster -> its "pull failed" log record, from `--log-format json` output."""
    out: dict[str, dict[str, Any]] = {}
    for line in stderr.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("msg") == "pull failed":
                out[rec["cluster"]] = rec
    return out


def run(cfg: Path) -> tuple[int, str, str]:
    done = run_once(cfg, timeout=60, extra=("--log-format", "json"))
    return done.returncode, done.stdout, done.stderr


def federated(server: Server) -> str:
    with open_path(server, "/federate?" + urlencode({"match[]": '{__name__=~".+"}'})) as resp:
        return str(resp.read().decode())


def assert_arrived(fleet: Fleet, cluster: str, source: Server, static: dict[str, str]) -> None:
    """The centre holds exactly the source's federated series, stamped with `cluster` and its labels."""
    want = expected_series(federated(source), cluster, static)
    assert any(dict(k)["__name__"] == "demo_temperature_celsius" for k in want)
    got = wait_until(
        lambda: (lambda g: g if set(g) == set(want) else None)(central_series(fleet.centre, cluster)),
        15,
        message=f"the centre to hold exactly {cluster}'s series",
    )
    for labels, value in want.items():
        if dict(labels)["__name__"].startswith("demo_"):  # the exporter's values are fixed
            assert got[labels] == pytest.approx(value), dict(labels)


def assert_nothing_arrived(fleet: Fleet, cluster: str) -> None:
    assert central_series(fleet.centre, cluster) == {}


def row(stdout: str, cluster: str) -> list[str]:
    """`cluster`'s row in a rich table: each cell's wrapped lines joined, all whitespace removed (rich
    also breaks long words, so the only robust comparison is without spaces)."""
    rows: list[list[list[str]]] = []  # row -> its lines -> the line's cells
    for line in stdout.splitlines():
        cells = line.split("│")[1:-1]
        if not cells:
            continue
        if cells[0].strip():  # the first column is never empty on a row's first line
            rows.append([])
        if rows:
            rows[-1].append(cells)
    for lines in rows:
        if lines[0][0].strip() == cluster:
            columns = zip(*lines, strict=True)
            return [squeeze("".join(pieces)) for pieces in columns]
    raise AssertionError(f"no row for {cluster} in:\n{stdout}")


def squeeze(text: str) -> str:
    return "".join(text.split())


# -- the cases --------------------------------------------------------------------------------------


def test_mutual_tls_and_basic_auth_deliver_each_clusters_series(tmp_path: Path, fleet: Fleet) -> None:
    """Three clusters point at the same TLS Prometheus with their own settings: the CA, the CA plus a
    server_name (the certificate's DNS name while connecting by IP), and insecure_skip_verify with no CA
    (still with the client certificate and password, which the server requires)."""
    pw = password_file(tmp_path, PASSWORD)
    clusters = [
        tls_cluster("tls-ok", fleet, pw),
        tls_cluster("tls-sni", fleet, pw, server_name=SERVER_NAME),
        tls_cluster("tls-insecure", fleet, pw, ca=False, insecure=True),
        plain_cluster("plain-ok", fleet),
    ]
    code, out, err = run(config(tmp_path, fleet, clusters))
    assert code == 0, out + err
    assert pull_failures(err) == {}
    for name in ("tls-ok", "tls-sni", "tls-insecure"):
        assert_arrived(fleet, name, fleet.tls_prom, {"region": "eu-west-1"})
    assert_arrived(fleet, "plain-ok", fleet.plain_prom, {"region": "us-east-1"})
    up = wait_until(
        lambda: prom_query(fleet.centre, f'observe_cluster_up{{self_cluster="{SELF}",cluster=~"tls-.*"}}'),
        15,
        message="the collector's own metrics",
    )
    assert {r["metric"]["cluster"]: r["value"][1] for r in up} == {
        "tls-ok": "1",
        "tls-sni": "1",
        "tls-insecure": "1",
    }
    assert PASSWORD not in out + err


# Under TLS 1.3 the client's side of the handshake is over before the server checks the client certificate.
# Prometheus 2.42 (Go 1.19) then sends bad_certificate and closes; with our request already unread in its
# socket, the kernel's reset often overtakes the alert (measured: about half the time for a certificate
# from another CA). Either outcome must say what to fix.
RESET_NO_CERT = "the server reset the connection (if it requires a client certificate, set tls.cert_file"
RESET_CERT = "the server reset the connection (a server that refuses our client certificate"

FAILURES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    # case: (tls_cluster arguments, {the reason: what the message says})
    "no-ca": (
        {"ca": False},
        {"tls": "TLS failed: certificate verification failed: unable to get local issuer certificate "
                "(tls.ca_file is not set, so only the system CAs are trusted: set it to the server's CA)"},
    ),
    "wrong-server-name": (
        {"server_name": "prometheus.cluster-b.test"},
        {"tls": "certificate verification failed: Hostname mismatch, certificate is not valid for "
                "'prometheus.cluster-b.test'. (tls.server_name 'prometheus.cluster-b.test' is not a name "
                "in the server's certificate)"},
    ),
    "no-client-cert": (
        {"cert": "none"},
        {"tls": "TLS failed: SSLV3_ALERT_BAD_CERTIFICATE: the server refused the handshake, it wants a "
                "client certificate (set tls.cert_file and tls.key_file)",
         "unreachable": RESET_NO_CERT},
    ),
    "untrusted-client-cert": (
        {"cert": "rogue"},
        {"tls": "TLS failed: SSLV3_ALERT_BAD_CERTIFICATE: the server refused our client certificate",
         "unreachable": RESET_CERT},
    ),
    "wrong-password": (
        {"password": WRONG},
        {"auth": "401 Unauthorized: the server refused our credentials; check basic_auth (username "
                 "'observe' and its password, file "},
    ),
    "no-password": (
        {"password": None},
        {"auth": "401 Unauthorized: the server refused our credentials; no credentials are configured"},
    ),
    "http-to-the-tls-port": (
        {"plain_http": True},
        {"http_4xx": "400 Bad Request: 'Client sent an HTTP request to an HTTPS server.' "
                     "(the server speaks TLS: use an https:// URL)"},
    ),
}  # fmt: skip


def failing_cluster(case: str, tmp: Path, fleet: Fleet) -> dict[str, Any]:
    kwargs = dict(FAILURES[case][0])
    password = kwargs.pop("password", PASSWORD)
    if kwargs.pop("plain_http", False):
        kwargs["url"] = fleet.tls_prom.url.replace("https://", "http://")
    pw = None if password is None else password_file(tmp, password, f"{case}.password")
    return tls_cluster(f"tls-{case}", fleet, pw, **kwargs)


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failing_cluster_says_why_and_the_plain_cluster_still_arrives(
    tmp_path: Path, fleet: Fleet, case: str
) -> None:
    outcomes = FAILURES[case][1]
    name, plain = f"tls-{case}", f"plain-{case}"
    code, out, err = run(
        config(tmp_path, fleet, [failing_cluster(case, tmp_path, fleet), plain_cluster(plain, fleet)])
    )
    assert code == 1, out + err
    failures = pull_failures(err)
    assert set(failures) == {name}, err
    reason, message = failures[name]["reason"], failures[name]["error"]
    assert reason in outcomes, message
    assert message.startswith(f"cluster '{name}': GET "), message
    assert outcomes[reason] in message
    cells = row(out, name)  # the run --once table says it too: cluster, up, ..., error
    assert cells[1] == "no" and squeeze(outcomes[reason]) in cells[-1], cells
    # Secrets never appear: neither password, nor the Authorization header's form of either.
    for secret in (PASSWORD, WRONG, basic(USER, PASSWORD), basic(USER, WRONG)):
        assert secret not in out + err
    assert_nothing_arrived(fleet, name)
    assert_arrived(fleet, plain, fleet.plain_prom, {"region": "us-east-1"})
    # The reason reaches the centre too, in the collector's own metrics.
    failed = wait_until(
        lambda: prom_query(
            fleet.centre, f'observe_pull_failures_total{{self_cluster="{SELF}",cluster="{name}"}}'
        ),
        15,
        message="the pull failure counter at the centre",
    )
    counted = {r["metric"]["reason"]: r["value"][1] for r in failed}
    assert {k: v for k, v in counted.items() if v != "0"} == {reason: "1"}  # (some reasons start at 0)


def test_password_rotated_between_two_once_runs(tmp_path: Path, fleet: Fleet) -> None:
    pw = password_file(tmp_path, WRONG)
    cfg = config(tmp_path, fleet, [tls_cluster("tls-rotate-once", fleet, pw)])
    code, out, err = run(cfg)
    assert code == 1, out + err
    assert pull_failures(err)["tls-rotate-once"]["reason"] == "auth"
    pw.write_text(PASSWORD + "\n")  # fixed in place, same size: the same data_dir and config
    code, out, err = run(cfg)
    assert code == 0, out + err
    assert_arrived(fleet, "tls-rotate-once", fleet.tls_prom, {"region": "eu-west-1"})
    pw.write_text(WRONG + "\n")
    code, out, err = run(cfg)
    assert code == 1, out + err
    assert pull_failures(err)["tls-rotate-once"]["reason"] == "auth"
    assert WRONG not in out + err and PASSWORD not in out + err


def test_password_rotated_under_a_running_collector(tmp_path: Path, fleet: Fleet) -> None:
    """`observe run` (no restart) picks up a rotated password file on its next cycle, both an in-place
    rewrite and an atomic rename (how Kubernetes updates a mounted secret)."""
    name = "tls-rotate-live"
    pw = password_file(tmp_path, WRONG)
    cluster = tls_cluster(name, fleet, pw, timeout="900ms")  # a timeout is shorter than the interval
    collector = start_collector(config(tmp_path, fleet, [cluster], interval="1s", self_metrics=False))

    def auth_failures() -> float:
        return collector.metric_value("observe_pull_failures_total", cluster=name, reason="auth")

    def up() -> float:
        return collector.metric_value("observe_cluster_up", cluster=name)

    try:
        wait_until(lambda: auth_failures() >= 1, 10, message="an auth failure with the wrong password")
        pw.write_text(PASSWORD + "\n")  # in place, same size
        wait_until(lambda: up() == 1, 10, message="the cluster to come up with the rotated password")
        assert_arrived(fleet, name, fleet.tls_prom, {"region": "eu-west-1"})
        before = auth_failures()
        new = tmp_path / "password.new"
        new.write_text(WRONG + "\n")
        os.replace(new, pw)  # a new file (inode) under the same name
        wait_until(lambda: auth_failures() > before, 10, message="auth failures after rotating back")
        assert up() == 0
    finally:
        code = collector.terminate()
    log = collector.log_text()
    assert code == 0, log
    assert PASSWORD not in log and WRONG not in log


def run_check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observe", "check", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_reports_every_case_and_fails_when_any_fails(tmp_path: Path, fleet: Fleet) -> None:
    pw = password_file(tmp_path, PASSWORD)
    good = [
        tls_cluster("check-ok", fleet, pw),
        tls_cluster("check-sni", fleet, pw, server_name=SERVER_NAME),
        tls_cluster("check-insecure", fleet, pw, ca=False, insecure=True),
        plain_cluster("check-plain", fleet),
    ]
    done = run_check(config(tmp_path, fleet, good, file="good.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    for cluster, source in (
        ("check-ok", fleet.tls_prom),
        ("check-sni", fleet.tls_prom),
        ("check-insecure", fleet.tls_prom),
        ("check-plain", fleet.plain_prom),
    ):
        cells = row(done.stdout, cluster)  # cluster, endpoint, url, result, detail, seconds
        assert cells[3] == "ok", cells
        assert cells[4] == f"{len(expected_series(federated(source), cluster, {}))}seriesmatch", cells
    bad = [{**failing_cluster(case, tmp_path, fleet), "name": f"check-{case}"} for case in FAILURES]
    done = run_check(config(tmp_path, fleet, good + bad, file="all.yaml"))
    assert done.returncode == 1, done.stdout + done.stderr
    for cluster in ("check-ok", "check-sni", "check-insecure", "check-plain"):
        assert row(done.stdout, cluster)[3] == "ok"
    for case, (_, outcomes) in FAILURES.items():
        cells = row(done.stdout, f"check-{case}")
        assert cells[3] == "FAIL", cells
        assert any(squeeze(says) in cells[4] for says in outcomes.values()), (case, cells)
    for secret in (PASSWORD, WRONG, basic(USER, PASSWORD), basic(USER, WRONG)):
        assert secret not in done.stdout + done.stderr
