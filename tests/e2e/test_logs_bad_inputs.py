"""Bad inputs on the logs path, each in its own cluster of one `observe run --once`: a Loki answering HTML
with a 500, one answering 200 with something that is not JSON, a selector Loki rejects, lines over the
size limit, invalid UTF-8 in lines, a tenant refused with 401. Each fails alone with a clear error; the
rest arrives. All Lokis are fake Lokis following Loki's documented HTTP API (tests/loki_api_fake.py)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import cramjam

from tests import loki_push_pb
from tests.collector_proc import run_once, write_config
from tests.e2e.logs_fleet import central_fleet_entries, expected, logs_config, loki_cluster, seed
from tests.loki_api_fake import NS, FakeLoki, LokiThread, Reply


def _push_protobuf(fake: FakeLoki, labels: str, entries: list[tuple[int, bytes]]) -> None:
    """A push with raw line bytes, as an agent would send invalid UTF-8 to the cluster's Loki."""
    body = bytes(
        cramjam.snappy.compress_raw(loki_push_pb.build([(labels, [(ts, b, ()) for ts, b in entries])]))
    )
    req = urllib.request.Request(fake.push_url, data=body, headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def _records(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_bad_inputs_fail_alone_with_clear_errors_against_fake_lokis(tmp_path: Path, loop: LokiThread) -> None:
    fakes = {
        name: loop.start(FakeLoki(**kw))
        for name, kw in {
            "good": {},
            "html500": {"query_always": Reply(500, "<html><body><h1>500 Internal Server Error</h1></body></html>",
                                              "text/html")},
            "notjson": {"query_always": Reply(200, "upstream says hello, not JSON", "text/plain")},
            "badsel": {},
            "longlines": {},
            "utf8": {},
            "surrogate": {},
            "tenant401": {"auth_enabled": True, "allowed_tenants": {"team-a"}},
        }.items()
    }  # fmt: skip
    central = loop.start(FakeLoki(auth_enabled=True))
    try:
        app = {"job": "app"}
        want: Counter[Any] = Counter()
        want += expected(seed(fakes["good"], app, 500), "good", {}, lambda lb: True)
        want += expected(seed(fakes["badsel"], app, 200), "badsel", {}, lambda lb: True)
        seed(fakes["html500"], app, 10)
        seed(fakes["notjson"], app, 10)
        seed(fakes["tenant401"], app, 10, tenant="team-b")
        now = time.time_ns() - 300 * NS
        fakes["longlines"].add(
            app, [(now, "short"), (now + 1, "L" * 2000), (now + 2, "é" * 1000), (now + 3, "fine")]
        )
        want += expected([(now, (("job", "app"),), "short", ()), (now + 3, (("job", "app"),), "fine", ())],
                         "longlines", {}, lambda lb: True)  # fmt: skip
        _push_protobuf(fakes["utf8"], '{job="app"}', [(now, b"bad bytes \xff\xfe here"), (now + 1, b"valid")])
        want += expected([(now, (("job", "app"),), "bad bytes \ufffd\ufffd here", ()),
                          (now + 1, (("job", "app"),), "valid", ())], "utf8", {}, lambda lb: True)  # fmt: skip
        # A reply with a lone surrogate escape: valid JSON, not encodable as UTF-8.
        body = ('{"status":"success","data":{"resultType":"streams","result":[{"stream":{"job":"app"},'
                f'"values":[["{now}","half a pair \\ud800 here"]]}}]}}}}')  # fmt: skip
        fakes["surrogate"].query_always = Reply(200, body, "application/json")
        want += expected(
            [(now, (("job", "app"),), "half a pair \ufffd here", ())], "surrogate", {}, lambda lb: True
        )

        clusters = [
            loki_cluster(name, fake, ['{job=~".*"}', '{job="app"}'] if name == "badsel" else ['{job="app"}'],
                         loki={"tenant": "team-b"} if name == "tenant401" else {})
            for name, fake in fakes.items()
        ]  # fmt: skip
        doc = logs_config(tmp_path / "data", clusters, central.push_url, max_line_bytes="1KiB")
        doc["interval"] = "20s"  # one --once cycle may read for one interval: all of it here
        cfg = write_config(tmp_path / "observe.yaml", doc)
        done = run_once(cfg, extra=("--log-format", "json"), timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr  # some clusters failed: the run says so
        records = _records(done.stderr)

        # What arrived: every good entry exactly once, nothing from the broken sources.
        assert Counter(central_fleet_entries(loop, central)) == want

        def failures(cluster: str) -> list[dict[str, Any]]:
            return [r for r in records if r.get("msg") == "pull failed" and r.get("cluster") == cluster]

        [html] = failures("html500")
        assert (
            html["reason"] == "http_5xx"
            and "HTTP 500: <html><body><h1>500 Internal Server Error" in html["error"]
        )
        [notjson] = failures("notjson")
        assert (
            notjson["reason"] == "bad_response"
            and "is not JSON (text/plain): upstream says hello" in notjson["error"]
        )
        [refused] = failures("tenant401")
        assert refused["reason"] == "auth" and "HTTP 401" in refused["error"] and "team-b" in refused["error"]
        [badsel] = failures("badsel")
        assert badsel["reason"] == "bad_selector"
        assert """loki selector '{job=~".*"}' rejected by Loki (HTTP 400)""" in badsel["error"]
        assert not failures("good") and not failures("longlines") and not failures("utf8")
        [dropped] = [r for r in records if r.get("msg") == "data dropped" and r.get("cluster") == "longlines"]
        assert dropped["reason"] == "line_too_long" and dropped["count"] == 2
        assert "lines over logs.max_line_bytes (1024 bytes)" in dropped["detail"]
    finally:
        for fake in (*fakes.values(), central):
            loop.stop(fake)
