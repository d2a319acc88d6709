"""The simulated Loki (observe/demo): Loki's query_range API over a simulated cluster's log lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from observe.demo.fleet import SimulatedCluster
from observe.demo.logs import NS
from observe.demo.serve import SimulatedLoki

NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z
NOW_NS = int(NOW * NS)


@pytest.fixture
async def loki() -> AsyncIterator[SimulatedLoki]:
    server = SimulatedLoki(
        SimulatedCluster("sim-a", nodes=2, namespaces=2, pods_per_namespace=3), clock=lambda: NOW
    )
    await server.start()
    yield server
    await server.stop()


async def query(loki: SimulatedLoki, **params: Any) -> tuple[int, Any]:
    params.setdefault("query", '{namespace=~".+"}')
    headers = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}
    async with aiohttp.ClientSession() as session, session.get(
        f"{loki.url}/loki/api/v1/query_range",
        params={k: str(v) for k, v in params.items()},
        headers=headers,
    ) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if resp.status == 200 else text


def flat(doc: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(ts, stream as JSON, line) of every value, in the order the streams and values came."""
    return [
        (int(ts), json.dumps(s["stream"], sort_keys=True), line)
        for s in doc["data"]["result"]
        for ts, line, *_ in s["values"]
    ]


async def test_start_is_inclusive_and_end_exclusive(loki: SimulatedLoki) -> None:
    ts = loki.cluster.logs.entries(NOW_NS - 60 * NS, NOW_NS, limit=1)[0][0]
    status, doc = await query(loki, start=ts, end=ts + 1, direction="forward", limit=5000)
    assert status == 200 and doc["status"] == "success" and doc["data"]["resultType"] == "streams"
    assert {e[0] for e in flat(doc)} == {ts}
    _, before = await query(loki, start=ts - 10 * NS, end=ts, direction="forward", limit=5000)
    assert ts not in {e[0] for e in flat(before)} and all(e[0] < ts for e in flat(before))
    _, after = await query(loki, start=ts, end=ts + 10 * NS, direction="forward", limit=5000)
    assert min(e[0] for e in flat(after)) == ts


async def test_forward_gives_the_oldest_first_and_limit_counts_across_streams(loki: SimulatedLoki) -> None:
    start, end = NOW_NS - 120 * NS, NOW_NS - 60 * NS
    everything = loki.cluster.logs.entries(start, end)
    assert len(everything) == loki.cluster.logs.count(start, end) > 50
    status, doc = await query(loki, start=start, end=end, direction="forward", limit=50)
    assert status == 200
    got = sorted(flat(doc))
    assert len(got) == 50
    assert [e[0] for e in got] == [e[0] for e in everything[:50]]  # the 50 oldest, across every stream
    assert len(doc["data"]["result"]) > 1
    for stream in doc["data"]["result"]:  # each stream's values in time order
        stamps = [int(v[0]) for v in stream["values"]]
        assert stamps == sorted(stamps)
    _, back = await query(loki, start=start, end=end, limit=50)  # backward is Loki's default
    assert sorted(e[0] for e in flat(back)) == [e[0] for e in everything[-50:]]


async def test_entries_are_deterministic_per_cluster_and_time_and_none_lies_ahead(
    loki: SimulatedLoki,
) -> None:
    twin = SimulatedCluster("sim-a", nodes=2, namespaces=2, pods_per_namespace=3)
    window = (NOW_NS - 30 * NS, NOW_NS)
    assert twin.logs.entries(*window) == loki.cluster.logs.entries(*window)
    assert SimulatedCluster("sim-b", nodes=2, namespaces=2, pods_per_namespace=3).logs.entries(
        *window
    ) != twin.logs.entries(*window)
    _, doc = await query(loki, start=NOW_NS - 5 * NS, end=NOW_NS + 3600 * NS, direction="forward", limit=5000)
    assert max(e[0] for e in flat(doc)) <= NOW_NS  # nothing logged after the clock
    levels = {
        line.split(" level=")[1].split()[0] for _, _, line, _ in twin.logs.entries(NOW_NS - 600 * NS, NOW_NS)
    }
    assert {"info", "debug", "warn", "error"} <= levels


async def test_structured_metadata_is_per_entry_when_asked_and_labels_otherwise(loki: SimulatedLoki) -> None:
    _, doc = await query(loki, start=NOW_NS - 60 * NS, end=NOW_NS, direction="forward", limit=5000)
    assert doc["data"]["encodingFlags"] == ["categorize-labels"]
    assert any(
        v[2].get("structuredMetadata", {}).get("trace_id") for s in doc["data"]["result"] for v in s["values"]
    )
    assert all("trace_id" not in s["stream"] for s in doc["data"]["result"])
    async with aiohttp.ClientSession() as session:
        params = {
            "query": '{namespace=~".+"}',
            "start": str(NOW_NS - 60 * NS),
            "direction": "forward",
            "limit": "5000",
        }
        async with session.get(f"{loki.url}/loki/api/v1/query_range", params=params) as resp:
            plain = await resp.json()
    assert "encodingFlags" not in plain["data"]
    assert any("trace_id" in s["stream"] for s in plain["data"]["result"])


async def test_the_selector_picks_streams(loki: SimulatedLoki) -> None:
    ns = loki.cluster.topology.user_namespaces[0]
    _, doc = await query(loki, query=f'{{namespace="{ns}"}}', start=NOW_NS - 60 * NS, end=NOW_NS, limit=5000)
    assert flat(doc) and {s["stream"]["namespace"] for s in doc["data"]["result"]} == {ns}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"limit": 5001},
            "max entries limit per query exceeded, limit > max_entries_limit_per_query (5001 > 5000)",
        ),
        ({"limit": 0}, "limit must be a positive value"),
        ({"query": '{namespace=~".*"}'}, "at least one non-empty matcher"),
        ({"query": '{app="x"} |= "error"'}, "parse error"),
        ({"direction": "sideways"}, "invalid direction"),
        ({"start": "yesterday"}, "cannot parse"),
    ],
)
async def test_bad_queries_are_400s(loki: SimulatedLoki, params: dict[str, Any], message: str) -> None:
    status, text = await query(loki, **params)
    assert status == 400 and message in text


async def test_an_outage_logs_the_crash_and_a_cluster_taken_down_serves_nothing(loki: SimulatedLoki) -> None:
    c = loki.cluster
    c.fail(at=NOW - 60)
    c.recover(at=NOW - 30)
    during = c.logs.entries(NOW_NS - 60 * NS, NOW_NS - 30 * NS)
    healthy = c.logs.entries(NOW_NS - 30 * NS, NOW_NS)
    crashing = {p.name for d in c.topology.deployments for p in d.pods if p.crashes}
    on_failing_node = {p.name for d in c.topology.deployments for p in d.pods if p.node.failing}
    pods_during = {dict(labels)["pod"] for _, labels, _, _ in during}
    assert not pods_during & on_failing_node  # the NotReady node's pods write nothing
    crash_lines = [line for _, labels, line, _ in during if dict(labels)["pod"] in crashing]
    assert crash_lines and any("level=fatal" in line for line in crash_lines)
    assert not any("level=fatal" in line for _, _, line, _ in healthy)
    assert {dict(labels)["pod"] for _, labels, _, _ in healthy} & on_failing_node  # back after recovery
    loki.available = False
    status, _ = await query(loki)
    assert status == 503
