"""Every sink through the real Delivery, against faults: the one contract each must keep.

As OpenTelemetry's exporter contract checker (`exporter/exportertest/contract_checker.go`) runs every
exporter through one test, this runs RemoteWriteSink (against a small in-process receiver),
LokiPushSink (against the fake Loki, tests/loki_api_fake.py), LocalStoreSink and LocalLogStoreSink (into
tmp_path) through `observe.sinks.delivery.Delivery` with a fast fake sleep. The HTTP sinks talk to their
receiver through `tests.fakes.FaultProxy`; the local stores get their faults from a wrapped Parquet
writer. Scenarios:

    first_n     the first 5 requests (writes) fail retryably (503; OSError), then everything succeeds
    permanent   every 5th record (from the 3rd) is refused for good (400; an undecodable payload)
    random      seeded per (record, attempt): 500/502/503/504, 429 with Retry-After, a dropped connection,
                a lost reply (the receiver took it, the sender never heard); the `permanent` records too

The contract, for each sink and scenario (Q = the queued records, P = those refused for good):
1. the queue ends empty;
2. the sink returned normally for every record of Q - P exactly once, and raised PermanentError for
   every record of P exactly once (Delivery never re-sends what was acknowledged or refused);
3. observe_dropped_samples_total{reason="permanent_error"} is the sum of P's counts, and no other
   drop reason counts anything;
4. what the receiver stored, decoded independently of our decoders, is what was queued for Q - P, and
   nothing of P;
5. at-least-once, exactly: the receiver took (answered 2xx to) each record of Q - P 1 + L times, where L
   is the number of times its reply was lost on the way back, and never took a record of P. No loss,
   and no duplicate but those the sender could not tell from a failure. (Loki itself drops an entry
   identical to one it holds, so its stored entries hold each once; the local store names its files by
   content, so a rewrite replaces rather than adds: each row once.)
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cramjam
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from observe.config import LokiPushConfig, RemoteWriteConfig
from observe.errors import PermanentError
from observe.http import new_session
from observe.protocol import remote_write as rw
from observe.protocol.loki_push import encode_payload, payload_body
from observe.queue.durable import DurableQueue
from observe.sinks import Sink
from observe.sinks.delivery import Delivery
from observe.sinks.local_store import LocalLogStoreSink, LocalStoreSink, read_logs, read_metrics
from observe.sinks.loki_push import LokiPushSink
from observe.sinks.remote_write import RemoteWriteSink
from observe.telemetry import Telemetry
from tests import remote_write_pb as pb
from tests.fakes import DROP, LOSE_REPLY, PASS, Fault, FaultProxy, answer
from tests.loki_api_fake import NS, FakeLoki

GROUPS, PER_GROUP, PER_RECORD = 6, 4, 3  # 24 records of 3 samples (entries) each
RECORDS = GROUPS * PER_GROUP
REFUSED = frozenset(range(2, RECORDS, 5))  # the `permanent` records: 2, 7, 12, 17, 22
SCENARIOS = ["first_n", "permanent", "random"]
T0_MS = 1_750_000_000_000
SEED = 20240611

Series = tuple[tuple[tuple[str, str], ...], tuple[tuple[float, int], ...]]


async def _no_wait(_: float) -> None:
    await asyncio.sleep(0)  # backoff and Retry-After are honoured in order, but take no time


@dataclass
class Watched:
    """A Sink wrapper that records, per payload, whether `send` returned or raised PermanentError."""

    inner: Sink
    name: str = ""
    acked: list[bytes] = field(default_factory=list)
    refused: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.inner.name

    async def send(self, payload: bytes) -> None:
        try:
            await self.inner.send(payload)
        except PermanentError:
            self.refused.append(payload)
            raise
        self.acked.append(payload)

    async def close(self) -> None:
        await self.inner.close()


def random_fault(rid: int, attempt: int) -> Fault | None:
    """The `random` scenario's fault for a record's n-th attempt, or None; the same whatever the interleaving."""
    rng = random.Random(f"{SEED}:{rid}:{attempt}")
    if rng.random() >= 0.45:
        return None
    return rng.choice(
        [answer(500), answer(502), answer(503), answer(504), answer(429, Retry_After="1"), DROP, LOSE_REPLY]
    )


def http_decider(scenario: str, record_of: dict[bytes, int]) -> Callable[[int, bytes], Fault]:
    attempts: Counter[int] = Counter()

    def decide(n: int, body: bytes) -> Fault:
        rid = record_of[body]  # every request carries exactly one queued record's body
        attempts[rid] += 1
        if scenario == "first_n":
            return answer(503) if n <= 5 else PASS
        fault = random_fault(rid, attempts[rid]) if scenario == "random" else None
        if rid in REFUSED:
            # the receiver refuses it for good: it may fail on the way first, but is never taken
            return fault if fault is not None and fault.kind in ("status", "drop") else answer(400)
        return fault or PASS

    return decide


def fill(queue: DurableQueue, payloads: list[bytes]) -> None:
    for g in range(GROUPS):
        batch = [(p, PER_RECORD) for p in payloads[g * PER_GROUP : (g + 1) * PER_GROUP]]
        queue.append_many(batch, group=g + 1, created=time.time())


async def deliver(queue: DurableQueue, sink: Sink, signal: str) -> Telemetry:
    telemetry = Telemetry()
    delivery = Delivery(
        queue, sink, cluster="c1", signal=signal, telemetry=telemetry, max_age=3600.0,
        min_backoff=0.001, max_backoff=0.01, sleep=_no_wait,
    )  # fmt: skip
    assert await delivery.drain(time.monotonic() + 30.0), "records left in the queue"  # contract 1
    return telemetry


def assert_accounting(
    telemetry: Telemetry, signal: str, watched: Watched, payloads: list[bytes], refused: frozenset[int]
) -> None:
    """Contracts 1-3."""
    kept = [p for i, p in enumerate(payloads) if i not in refused]
    assert Counter(watched.acked) == Counter(kept)  # each acknowledged once, in whatever order
    assert Counter(watched.refused) == Counter(payloads[i] for i in refused)
    drops = {
        s.labels["reason"]: s.value
        for metric in telemetry.registry.collect()
        for s in metric.samples
        if s.name == "observe_dropped_samples_total" and s.labels.get("signal") == signal
    }
    assert {r: v for r, v in drops.items() if v} == (
        {"permanent_error": PER_RECORD * len(refused)} if refused else {}
    )


def assert_at_least_once(proxy: FaultProxy, record_of: dict[bytes, int], refused: frozenset[int]) -> None:
    """Contract 5, from what went through the proxy."""
    took: Counter[int] = Counter(record_of[x.body] for x in proxy.exchanges if x.arrived)
    lost: Counter[int] = Counter(
        record_of[x.body] for x in proxy.exchanges if x.arrived and not x.acknowledged
    )
    assert {rid: took[rid] for rid in range(RECORDS)} == {
        rid: 0 if rid in refused else 1 + lost[rid] for rid in range(RECORDS)
    }


def refused_in(scenario: str) -> frozenset[int]:
    return frozenset() if scenario == "first_n" else REFUSED


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    q = DurableQueue(tmp_path / "q", max_bytes=16 * 2**20, segment_bytes=2**20, max_age=3600.0)
    yield q
    q.close()


# -- remote write -----------------------------------------------------------------------------------


def rw_series(rid: int) -> list[Series]:
    return [
        (
            (("__name__", "contract_metric"), ("cluster", "c1"), ("record", str(rid)), ("series", str(j))),
            ((float(rid * 10 + j), T0_MS + rid * 1000),),
        )
        for j in range(PER_RECORD)
    ]


def rw_payload(rid: int) -> bytes:
    series = [rw.encode_series(rw.encode_labels(labels), *samples[0]) for labels, samples in rw_series(rid)]
    return rw.compress(rw.encode_write_request(series))


@dataclass
class Receiver:
    """A remote-write receiver: decodes each request with the protobuf library, stores, answers 204."""

    url: str = ""
    stored: list[Series] = field(default_factory=list)

    async def write(self, request: web.Request) -> web.Response:
        body = bytes(cramjam.snappy.decompress_raw(await request.read()))
        self.stored.extend((labels, tuple(samples)) for labels, samples in pb.parse(body))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    fake = Receiver()
    app = web.Application()
    app.router.add_post("/api/v1/write", fake.write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_remote_write_keeps_the_contract(
    scenario: str, queue: DurableQueue, receiver: Receiver
) -> None:
    payloads = [rw_payload(rid) for rid in range(RECORDS)]
    record_of = {p: rid for rid, p in enumerate(payloads)}  # the sink posts the payload as is
    proxy = FaultProxy(receiver.url, http_decider(scenario, record_of))
    cfg = RemoteWriteConfig(url=await proxy.start() + "/api/v1/write", timeout=5)
    fill(queue, payloads)
    try:
        async with new_session(cfg) as session:
            watched = Watched(RemoteWriteSink(cfg, session))
            telemetry = await deliver(queue, watched, "metrics")
    finally:
        await proxy.stop()
    refused = refused_in(scenario)
    assert_accounting(telemetry, "metrics", watched, payloads, refused)
    assert_at_least_once(proxy, record_of, refused)
    took = Counter(record_of[x.body] for x in proxy.exchanges if x.arrived)
    want = Counter({s: took[rid] for rid in range(RECORDS) if rid not in refused for s in rw_series(rid)})
    assert Counter(receiver.stored) == want  # contract 4, with each record's multiplicity from contract 5
    if scenario == "random":  # the seed exercises every fault kind
        assert {x.fault.kind for x in proxy.exchanges} == {"pass", "status", "drop", "lose_reply"}


# -- Loki push --------------------------------------------------------------------------------------

NOW_NS = time.time_ns() // NS * NS


def loki_stream(rid: int) -> tuple[tuple[tuple[str, str], ...], list[tuple[int, str, tuple[()]]]]:
    labels = (("cluster", "c1"), ("record", str(rid)))
    return labels, [(NOW_NS - (RECORDS - rid) * NS + j, f"line {rid}.{j}", ()) for j in range(PER_RECORD)]


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    fake = await FakeLoki().start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_loki_push_keeps_the_contract(
    scenario: str, encoding: Any, queue: DurableQueue, loki: FakeLoki
) -> None:
    payloads = [encode_payload([loki_stream(rid)], encoding) for rid in range(RECORDS)]
    record_of = {payload_body(p)[0]: rid for rid, p in enumerate(payloads)}  # the body after the tag byte
    proxy = FaultProxy(loki.url, http_decider(scenario, record_of))
    cfg = LokiPushConfig(url=await proxy.start() + "/loki/api/v1/push", timeout=5, encoding=encoding)
    fill(queue, payloads)
    try:
        async with new_session(cfg) as session:
            watched = Watched(LokiPushSink(cfg, session))
            telemetry = await deliver(queue, watched, "logs")
    finally:
        await proxy.stop()
    refused = refused_in(scenario)
    assert_accounting(telemetry, "logs", watched, payloads, refused)
    assert_at_least_once(proxy, record_of, refused)
    want = sorted(
        (ts, labels, line, md)
        for rid in range(RECORDS)
        if rid not in refused
        for labels, entries in [loki_stream(rid)]
        for ts, line, md in entries
    )
    assert loki.entries("fake") == want  # contract 4: decoded by the fake with the protobuf library / json


# -- the local store --------------------------------------------------------------------------------


def faulty_writer(scenario: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap the Parquet writer under LocalStoreSink: it writes a little, then fails with an OSError, as
    a full disk would, on the writes the scenario picks. Returns the log of faults injected."""
    real = pq.write_table
    attempts: Counter[str] = Counter()
    injected: list[str] = []

    def write_table(table: Any, where: BinaryIO, **kw: Any) -> None:
        rid = json.loads(table.column("labels")[0].as_py())["record"]
        attempts[rid] += 1
        rng = random.Random(f"{SEED}:{rid}:{attempts[rid]}")
        fail = sum(attempts.values()) <= 5 if scenario == "first_n" else rng.random() < 0.45
        if fail and scenario != "permanent":
            injected.append(rid)
            where.write(b"PAR1 half a file")
            raise OSError(rng.choice([errno.ENOSPC, errno.EIO]), "injected")
        real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", write_table)
    return injected


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_local_store_keeps_the_contract(
    scenario: str, queue: DurableQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = refused_in(scenario)
    # A refused record here is one the store can never decode (a queue written by something else).
    payloads = [
        b"\x00not a snappy WriteRequest %d" % rid if rid in refused else rw_payload(rid)
        for rid in range(RECORDS)
    ]
    injected = faulty_writer(scenario, monkeypatch)
    store = tmp_path / "store"
    fill(queue, payloads)
    watched = Watched(LocalStoreSink(store, cluster="c1"))
    telemetry = await deliver(queue, watched, "metrics")
    assert bool(injected) == (scenario != "permanent")  # the faults happened
    assert_accounting(telemetry, "metrics", watched, payloads, refused)
    df = read_metrics(store)
    got = sorted(
        (row.metric, json.loads(row.labels)["record"], json.loads(row.labels)["series"], row.value,
         int(row.timestamp.timestamp() * 1000))
        for row in df.itertuples()
    )  # fmt: skip
    want = sorted(
        ("contract_metric", str(rid), dict(labels)["series"], samples[0][0], samples[0][1])
        for rid in range(RECORDS)
        if rid not in refused
        for labels, samples in rw_series(rid)
    )
    assert got == want  # contracts 4 and 5: each row once, though failed writes were retried
    assert not [p for p in store.rglob(".*") if p.is_file()]  # no temporary file of a failed write is left


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_local_log_store_keeps_the_contract(
    scenario: str, queue: DurableQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = refused_in(scenario)
    # A refused record is one the store can never decode: here an unknown encoding tag.
    payloads = [
        b"\x00not a Loki push payload %d" % rid if rid in refused else encode_payload([loki_stream(rid)])
        for rid in range(RECORDS)
    ]
    injected = faulty_writer(scenario, monkeypatch)
    store = tmp_path / "store"
    fill(queue, payloads)
    watched = Watched(LocalLogStoreSink(store, cluster="c1"))
    telemetry = await deliver(queue, watched, "logs")
    assert bool(injected) == (scenario != "permanent")  # the faults happened
    assert_accounting(telemetry, "logs", watched, payloads, refused)
    df = read_logs(store)
    got = sorted(
        (row.timestamp.value, tuple(sorted(json.loads(row.labels).items())), row.line,
         tuple(sorted(json.loads(row.metadata).items())))
        for row in df.itertuples()
    )  # fmt: skip
    want = sorted(
        (ts, labels, line, md)
        for rid in range(RECORDS)
        if rid not in refused
        for labels, entries in [loki_stream(rid)]
        for ts, line, md in entries
    )
    assert got == want  # contracts 4 and 5: each entry once, though failed writes were retried
    assert not [p for p in store.rglob(".*") if p.is_file()]  # no temporary file of a failed write is left
