"""The embedded logs store: Loki push payloads in, Hive-partitioned Parquet out, pandas back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from observe.config import parse_config
from observe.errors import PermanentError, RetryableError
from observe.model import LOGS, METRICS
from observe.pipeline.centre import Centre
from observe.protocol.loki_push import encode_payload
from observe.sinks import Sink
from observe.sinks.local_store import LOGS_SCHEMA, LocalLogStoreSink, read_logs
from observe.telemetry import Telemetry

HOUR_NS = 3_600_000_000_000
T0 = 1_750_000_000_000_000_000 // HOUR_NS * HOUR_NS  # 2025-06-15T15:00:00Z, an hour boundary

API = (("app", "api"), ("cluster", "prod-eu-1"), ("namespace", "payments"))
WORKER = (("app", "worker"), ("cluster", "prod-eu-1"), ("namespace", "payments"))


def streams() -> list[tuple[tuple[tuple[str, str], ...], list[tuple[int, str, tuple[tuple[str, str], ...]]]]]:
    return [
        (API, [(T0 + 1, "level=info msg=started", ()), (T0 + 3, 'level=error msg="db down" é', (("trace_id", "ab12"),))]),
        (WORKER, [(T0 + 2, "level=warn msg=slow", ())]),
    ]  # fmt: skip


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_round_trip_through_read_logs(tmp_path: Path, encoding: str) -> None:
    sink = LocalLogStoreSink(tmp_path, cluster="prod-eu-1")
    await sink.send(encode_payload(streams(), encoding))  # type: ignore[arg-type]
    df = read_logs(tmp_path)
    assert list(df.columns) == ["timestamp", "labels", "line", "metadata", "cluster", "hour"]
    assert df["timestamp"].tolist() == [pd.Timestamp(T0 + k, unit="ns", tz="UTC") for k in (1, 2, 3)]
    assert [t.value for t in df["timestamp"]] == [T0 + 1, T0 + 2, T0 + 3]  # nanoseconds kept exactly
    assert df["line"].tolist() == [
        "level=info msg=started",
        "level=warn msg=slow",
        'level=error msg="db down" é',
    ]
    assert json.loads(df["labels"][1]) == dict(WORKER)
    assert df["labels"][0] == '{"app":"api","cluster":"prod-eu-1","namespace":"payments"}'  # sorted keys
    assert [json.loads(m) for m in df["metadata"]] == [{}, {}, {"trace_id": "ab12"}]
    assert set(df["cluster"]) == {"prod-eu-1"} and set(df["hour"]) == {"2025-06-15T15"}
    files = parquet_files(tmp_path / "logs")
    assert [f.relative_to(tmp_path).parent.as_posix() for f in files] == [
        "logs/cluster=prod-eu-1/hour=2025-06-15T15"
    ]
    assert files[0].name.startswith(f"part-{T0 + 1}-")
    assert pq.read_schema(files[0]).equals(LOGS_SCHEMA)
    assert len(pd.read_parquet(tmp_path / "logs")) == 3  # plain pandas reads the tree too


async def test_a_record_delivered_again_is_stored_once(tmp_path: Path) -> None:
    sink = LocalLogStoreSink(tmp_path, cluster="c")
    payload = encode_payload(streams())
    await sink.send(payload)
    await sink.send(payload)  # a retry after a lost acknowledgement, or a queue replay after a crash
    await LocalLogStoreSink(tmp_path, cluster="c").send(payload)  # ... by a restarted collector
    assert len(read_logs(tmp_path)) == 3
    assert len(parquet_files(tmp_path)) == 1
    await sink.send(encode_payload([(API, [(T0 + 9, "another", ())])]))
    assert len(read_logs(tmp_path)) == 4


async def test_entries_spanning_two_hours_go_to_two_partitions_and_clusters_apart(tmp_path: Path) -> None:
    await LocalLogStoreSink(tmp_path, cluster="a").send(
        encode_payload([(API, [(T0 - 1, "before", ()), (T0, "after", ())])])
    )
    await LocalLogStoreSink(tmp_path, cluster="b").send(encode_payload([(WORKER, [(T0, "b's", ())])]))
    df = read_logs(tmp_path, cluster="a")
    assert df["hour"].tolist() == ["2025-06-15T14", "2025-06-15T15"]
    assert read_logs(tmp_path, cluster="b")["line"].tolist() == ["b's"]
    assert len(read_logs(tmp_path)) == 3


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x07unknown tag",
        b"\x01not a snappy block",
        b"\x02{not json",
        b'\x02{"streams":[{"values":[]}]}',
    ],
)
async def test_a_bad_payload_is_a_permanent_error(tmp_path: Path, payload: bytes) -> None:
    with pytest.raises(PermanentError) as err:
        await LocalLogStoreSink(tmp_path, cluster="c").send(payload)
    assert err.value.reason == "bad_payload"
    assert "not a Loki push body" in str(err.value)
    assert not (tmp_path / "logs").exists()


async def test_an_empty_push_writes_nothing_and_an_empty_store_reads_empty(tmp_path: Path) -> None:
    await LocalLogStoreSink(tmp_path, cluster="c").send(encode_payload([(API, [])]))
    assert not parquet_files(tmp_path)
    df = read_logs(tmp_path)
    assert df.empty and list(df.columns) == ["timestamp", "labels", "line", "metadata", "cluster", "hour"]


async def test_a_write_error_is_retryable(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the partition directory should be")
    with pytest.raises(RetryableError) as err:
        await LocalLogStoreSink(tmp_path, cluster="c").send(encode_payload(streams()))
    assert err.value.reason == "io" and "cluster=c" in str(err.value)


def test_it_is_a_sink_named_local_store(tmp_path: Path) -> None:
    sink: Sink = LocalLogStoreSink(tmp_path, cluster="c")
    assert sink.name == "local_store"
    with pytest.raises(ValueError, match="partition directory"):
        LocalLogStoreSink(tmp_path, cluster="../x")


async def test_the_centre_chooses_the_local_store_for_logs_without_central_loki(tmp_path: Path) -> None:
    clusters = [{"name": "a", "loki": {"url": "http://127.0.0.1:3100", "selectors": ['{job="app"}']}}]
    cfg = parse_config({"data_dir": str(tmp_path), "clusters": clusters})
    centre = Centre(cfg, Telemetry())
    assert centre.sink_name(LOGS) == "local_store" and centre.sink_name(METRICS) == "local_store"
    assert centre.describe()["logs_sink"] == {"kind": "local_store"}
    with_loki = parse_config(
        {**cfg.model_dump(mode="json"), "central": {"loki": {"url": "http://127.0.0.1:3100"}}}
    )
    assert Centre(with_loki, Telemetry()).sink_name(LOGS) == "loki_push"
