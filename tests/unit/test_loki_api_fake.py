"""The fake Loki of the logs tests follows the documented Loki API: checked here, behaviour by behaviour."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import cramjam
import pytest

from tests import loki_push_pb
from tests.loki_api_fake import FakeLoki

NS = 1_000_000_000
T0 = (int(time.time()) - 600) * NS


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    fake = await FakeLoki().start()
    yield fake
    await fake.stop()


async def _get(
    fake: FakeLoki, params: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(fake.url + "/loki/api/v1/query_range", params=params, headers=headers or {}) as r,
    ):
        body = await r.read()
        return r.status, (json.loads(body) if r.content_type == "application/json" else body.decode())


async def _push(
    fake: FakeLoki, body: bytes, ctype: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(fake.push_url, data=body, headers={"Content-Type": ctype, **(headers or {})}) as r,
    ):
        return r.status, await r.text()


def _values(doc: Any) -> list[tuple[int, str]]:
    return sorted((int(v[0]), v[1]) for s in doc["data"]["result"] for v in s["values"])


async def test_fake_loki_query_range_start_inclusive_end_exclusive(loki: FakeLoki) -> None:
    loki.add({"app": "a"}, [(T0, "at start"), (T0 + 5, "inside"), (T0 + 10, "at end")])
    status, doc = await _get(
        loki, {"query": '{app="a"}', "start": str(T0), "end": str(T0 + 10), "direction": "forward"}
    )
    assert status == 200
    assert _values(doc) == [(T0, "at start"), (T0 + 5, "inside")]


async def test_fake_loki_limit_counts_across_streams_in_both_directions(loki: FakeLoki) -> None:
    loki.add({"app": "a"}, [(T0 + i * 2, f"a{i}") for i in range(5)])
    loki.add({"app": "b"}, [(T0 + i * 2 + 1, f"b{i}") for i in range(5)])
    q = {"query": '{app=~"a|b"}', "start": str(T0), "end": str(T0 + 100), "limit": "3"}
    _, fwd = await _get(loki, {**q, "direction": "forward"})
    assert _values(fwd) == [(T0, "a0"), (T0 + 1, "b0"), (T0 + 2, "a1")]
    _, bwd = await _get(loki, {**q, "direction": "backward"})
    assert _values(bwd) == [(T0 + 7, "b3"), (T0 + 8, "a4"), (T0 + 9, "b4")]
    _, default = await _get(
        loki, {"query": '{app=~"a|b"}', "start": str(T0), "end": str(T0 + 100), "limit": "1"}
    )
    assert _values(default) == [(T0 + 9, "b4")]  # the API's default direction is backward


async def test_fake_loki_limit_above_the_cap_is_a_400_with_lokis_text(loki: FakeLoki) -> None:
    status, text = await _get(loki, {"query": '{app="a"}', "limit": "5001"})
    assert status == 400
    assert "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)" in text


@pytest.mark.parametrize(("query", "expected"), [
    ('{app="a"}', {"a1"}),
    ('{app!="a", env="p"}', {"b1"}),
    ('{app=~"a|b"}', {"a1", "b1"}),
    ('{app!~"a", env=~".+"}', {"b1"}),
    ('{app=~".+"} |= "1" != "zzz"', {"a1", "b1"}),
])  # fmt: skip
async def test_fake_loki_label_matchers_and_line_filters(
    loki: FakeLoki, query: str, expected: set[str]
) -> None:
    loki.add({"app": "a", "env": "p"}, [(T0, "a1")])
    loki.add({"app": "b", "env": "p"}, [(T0, "b1")])
    status, doc = await _get(loki, {"query": query, "start": str(T0), "end": str(T0 + 1)})
    assert status == 200, doc
    assert {line for _, line in _values(doc)} == expected


@pytest.mark.parametrize("query", ['{app=~".*"}', "{app=}", 'app="a"', '{app="a"'])
async def test_fake_loki_bad_selector_is_a_plain_text_400(loki: FakeLoki, query: str) -> None:
    status, text = await _get(loki, {"query": query})
    assert status == 400
    assert isinstance(text, str) and "parse error" in text


async def test_fake_loki_tenants_and_no_org_id(loki: FakeLoki) -> None:
    loki.auth_enabled = True
    loki.add({"app": "a"}, [(T0, "team-a line")], tenant="team-a")
    status, text = await _get(loki, {"query": '{app="a"}'})
    assert (status, text.strip()) == (401, "no org id")
    q = {"query": '{app="a"}', "start": str(T0), "end": str(T0 + 1)}
    _, doc = await _get(loki, q, {"X-Scope-OrgID": "team-a"})
    assert _values(doc) == [(T0, "team-a line")]
    _, other = await _get(loki, q, {"X-Scope-OrgID": "team-b"})
    assert _values(other) == []


async def test_fake_loki_categorize_labels_returns_metadata_as_a_third_element(loki: FakeLoki) -> None:
    loki.add({"app": "a"}, [(T0, "with md", {"trace_id": "t1"}), (T0 + 1, "without")])
    q = {"query": '{app="a"}', "start": str(T0), "end": str(T0 + 2), "direction": "forward"}
    _, plain = await _get(loki, q)
    assert sorted(s["stream"].get("trace_id", "") for s in plain["data"]["result"]) == ["", "t1"]
    _, cat = await _get(loki, q, {"X-Loki-Response-Encoding-Flags": "categorize-labels"})
    assert cat["data"]["encodingFlags"] == ["categorize-labels"]
    [stream] = cat["data"]["result"]
    assert stream["stream"] == {"app": "a"}
    assert stream["values"] == [[str(T0), "with md", {"structuredMetadata": {"trace_id": "t1"}}],
                                [str(T0 + 1), "without", {}]]  # fmt: skip


async def test_fake_loki_push_json_and_snappy_protobuf_answer_204(loki: FakeLoki) -> None:
    doc = {"streams": [{"stream": {"app": "j"}, "values": [[str(T0), "json line", {"k": "v"}]]}]}
    assert (await _push(loki, json.dumps(doc).encode(), "application/json"))[0] == 204
    gz = gzip.compress(json.dumps(doc).encode())
    assert (await _push(loki, gz, "application/json", {"Content-Encoding": "gzip"}))[0] == 204
    pb = loki_push_pb.build([('{app="p"}', [(T0 + 1, b"proto line", (("k", "v"),))])])
    assert (await _push(loki, bytes(cramjam.snappy.compress_raw(pb)), "application/x-protobuf"))[0] == 204
    assert loki.entries() == [
        (T0, (("app", "j"),), "json line", (("k", "v"),)),
        (T0 + 1, (("app", "p"),), "proto line", (("k", "v"),)),
    ]
    assert loki.stats["duplicates_dropped"] == 1  # the gzip repeat of the JSON push


async def test_fake_loki_drops_identical_entries_but_keeps_same_line_in_other_streams(loki: FakeLoki) -> None:
    def body(app: str) -> bytes:
        return json.dumps({"streams": [{"stream": {"app": app}, "values": [[str(T0), "same"]]}]}).encode()

    for app in ("a", "a", "b"):
        assert (await _push(loki, body(app), "application/json"))[0] == 204
    assert [(labels, line) for _, labels, line, _ in loki.entries()] == [
        ((("app", "a"),), "same"),
        ((("app", "b"),), "same"),
    ]


async def test_fake_loki_rejects_too_old_too_new_too_long_and_too_far_behind(loki: FakeLoki) -> None:
    now = time.time_ns()

    def push(values: list[list[str]]) -> bytes:
        return json.dumps({"streams": [{"stream": {"app": "a"}, "values": values}]}).encode()

    status, text = await _push(
        loki, push([[str(now - 8 * 86400 * NS), "old"], [str(now), "ok"]]), "application/json"
    )
    assert status == 400 and "has timestamp too old" in text and "oldest acceptable timestamp is" in text
    assert [e[2] for e in loki.entries()] == ["ok"]  # the valid entry of the request was stored
    status, text = await _push(loki, push([[str(now + 11 * 60 * NS), "future"]]), "application/json")
    assert status == 400 and "has timestamp too new" in text
    status, text = await _push(loki, push([[str(now), "x" * (256 * 1024 + 1)]]), "application/json")
    assert status == 400 and "Max entry size '262144' bytes exceeded" in text
    status, text = await _push(loki, push([[str(now - 2 * 3600 * NS), "behind"]]), "application/json")
    assert status == 400 and "entry too far behind" in text and "total ignored: 1 out of 1" in text


async def test_fake_loki_label_limits(loki: FakeLoki) -> None:
    labels = {f"l{i:02}": "v" for i in range(16)}
    doc = {"streams": [{"stream": labels, "values": [[str(time.time_ns()), "x"]]}]}
    status, text = await _push(loki, json.dumps(doc).encode(), "application/json")
    assert status == 400 and "has 16 label names; limit 15" in text


async def test_fake_loki_429_is_configurable_and_repeatable(loki: FakeLoki) -> None:
    loki.push_429_next = 2
    doc = json.dumps({"streams": [{"stream": {"app": "a"}, "values": [[str(time.time_ns()), "x"]]}]}).encode()
    results = [(await _push(loki, doc, "application/json"))[0] for _ in range(3)]
    assert results == [429, 429, 204]
    loki.push_429_rate = 0.5
    statuses = [(await _push(loki, doc, "application/json"))[0] for _ in range(40)]
    assert 5 < statuses.count(429) < 35
    loki.query_429_next = 1
    status, text = await _get(loki, {"query": '{app="a"}'})
    assert (status, text.strip()) == (429, "too many outstanding requests")


async def test_fake_loki_series_lists_streams_with_entries_in_range(loki: FakeLoki) -> None:
    loki.add({"app": "a", "pod": "1"}, [(T0, "x")])
    loki.add({"app": "a", "pod": "2"}, [(T0 + 10, "y")])
    async with (
        aiohttp.ClientSession() as s,
        s.get(loki.url + "/loki/api/v1/series",
              params=[("match[]", '{app="a"}'), ("start", str(T0)), ("end", str(T0 + 1))]) as r,
    ):  # fmt: skip
        doc = await r.json()
    assert doc["data"] == [{"app": "a", "pod": "1"}]


async def test_fake_loki_restart_keeps_port_and_data(loki: FakeLoki) -> None:
    loki.add({"app": "a"}, [(T0, "kept")])
    port = loki.port
    await loki.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(loki, {"query": '{app="a"}'})
    await loki.start()
    assert loki.port == port
    _, doc = await _get(loki, {"query": '{app="a"}', "start": str(T0), "end": str(T0 + 1)})
    assert _values(doc) == [(T0, "kept")]
