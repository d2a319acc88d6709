"""The embedded local store sink: remote-write payloads in, Hive-partitioned Parquet out, pandas back."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from observe.errors import PermanentError, RetryableError
from observe.model import STALE_NAN, Labels
from observe.protocol.remote_write import (
    compress,
    encode_labels,
    encode_series_samples,
    encode_stale_series,
    encode_write_request,
)
from observe.sinks import Sink
from observe.sinks.local_store import SCHEMA, LocalStoreSink, read_metrics

HOUR_MS = 3_600_000
T0 = 1_750_000_000_000 // HOUR_MS * HOUR_MS  # 2025-06-15T15:00:00Z, an hour boundary

UP: Labels = (("__name__", "up"), ("cluster", "prod-eu-1"), ("job", "apiserver"))
LOAD: Labels = (("__name__", "node_load1"), ("cluster", "prod-eu-1"), ("instance", "node-1"), ("zone", "é"))


def payload(
    *series: tuple[Labels, list[tuple[float, int]]], stale: tuple[Labels, int] | None = None
) -> bytes:
    """A real remote-write payload, built with the protocol module's encoder."""
    parts = [encode_series_samples(encode_labels(labels), samples) for labels, samples in series]
    if stale is not None:
        parts.append(encode_stale_series(encode_labels(stale[0]), stale[1]))
    return compress(encode_write_request(parts))


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def hidden_files(root: Path) -> list[Path]:
    return list(root.rglob(".*"))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_round_trip_through_an_encoded_payload(tmp_path: Path) -> None:
    sink = LocalStoreSink(tmp_path, cluster="prod-eu-1")
    await sink.send(payload((UP, [(1.0, T0 + 1000), (0.0, T0 + 16_000)]), (LOAD, [(0.42, T0 + 2000)])))
    df = read_metrics(tmp_path).sort_values("timestamp").reset_index(drop=True)
    assert list(df.columns) == ["metric", "labels", "value", "stale", "timestamp", "cluster", "hour"]
    assert df["metric"].tolist() == ["up", "node_load1", "up"]
    assert df["value"].tolist() == [1.0, 0.42, 0.0]
    assert df["timestamp"].tolist() == [
        pd.Timestamp(t, unit="ms", tz="UTC") for t in (T0 + 1000, T0 + 2000, T0 + 16_000)
    ]
    assert json.loads(df["labels"][1]) == {"cluster": "prod-eu-1", "instance": "node-1", "zone": "é"}
    assert df["labels"][0] == '{"cluster":"prod-eu-1","job":"apiserver"}'  # sorted keys, no __name__
    assert set(df["cluster"]) == {"prod-eu-1"} and set(df["hour"]) == {"2025-06-15T15"}
    assert not df["stale"].any()


async def test_files_are_hive_partitioned_with_the_documented_schema(tmp_path: Path) -> None:
    sink = LocalStoreSink(tmp_path, cluster="edge-onprem-1")
    await sink.send(payload((UP, [(1.0, T0 + 5000)])))
    [f] = parquet_files(tmp_path)
    rel = f.relative_to(tmp_path).as_posix()
    assert re.fullmatch(
        r"metrics/cluster=edge-onprem-1/hour=2025-06-15T15/part-"
        + str(T0 + 5000)
        + r"-[0-9a-f-]{36}\.parquet",
        rel,
    ), rel
    assert pq.read_schema(f).equals(SCHEMA)
    assert not hidden_files(tmp_path), "no temporary file is left behind"


async def test_a_send_spanning_two_hours_writes_two_files(tmp_path: Path) -> None:
    sink = LocalStoreSink(tmp_path, cluster="c")
    await sink.send(payload((UP, [(1.0, T0 - 1000), (2.0, T0), (3.0, T0 + 1000)]), (LOAD, [(9.0, T0 - 500)])))
    files = parquet_files(tmp_path)
    assert [f.parent.name for f in files] == ["hour=2025-06-15T14", "hour=2025-06-15T15"]
    assert [f.name.split("-")[1] for f in files] == [str(T0 - 1000), str(T0)]  # each file's first timestamp
    before, after = (pq.read_table(f).to_pandas() for f in files)
    assert sorted(before["value"]) == [1.0, 9.0] and after["value"].tolist() == [2.0, 3.0]


async def test_the_directory_reads_back_with_pandas_read_parquet(tmp_path: Path) -> None:
    for cluster in ("a", "b"):
        await LocalStoreSink(tmp_path, cluster=cluster).send(payload((UP, [(1.0, T0), (1.0, T0 + HOUR_MS)])))
    df = pd.read_parquet(tmp_path / "metrics")
    assert len(df) == 4
    assert df.groupby("cluster", observed=True).size().to_dict() == {"a": 2, "b": 2}
    assert len(read_metrics(tmp_path, cluster="b")) == 2
    assert read_metrics(tmp_path, cluster="nope").empty


async def test_stale_markers_are_flagged_and_other_nans_are_not(tmp_path: Path) -> None:
    sink = LocalStoreSink(tmp_path, cluster="c")
    await sink.send(payload((UP, [(math.nan, T0)]), stale=(LOAD, T0 + 1)))
    df = read_metrics(tmp_path).set_index("metric")
    assert bool(df.loc["node_load1", "stale"]) and math.isnan(df.loc["node_load1", "value"])
    assert not bool(df.loc["up", "stale"]) and math.isnan(df.loc["up", "value"])
    assert math.isnan(STALE_NAN)


async def test_a_payload_sent_twice_is_stored_once(tmp_path: Path) -> None:
    # A retry after a partial failure, or a queue replay after a crash, must not duplicate rows.
    sink = LocalStoreSink(tmp_path, cluster="c")
    body = payload((UP, [(1.0, T0 - 1), (2.0, T0 + 1)]))
    await sink.send(body)
    await sink.send(body)
    assert len(parquet_files(tmp_path)) == 2
    assert len(read_metrics(tmp_path)) == 2
    await sink.send(payload((UP, [(1.0, T0 + 2)])))
    assert len(read_metrics(tmp_path)) == 3


async def test_an_empty_request_writes_nothing(tmp_path: Path) -> None:
    await LocalStoreSink(tmp_path, cluster="c").send(compress(b""))
    assert not (tmp_path / "metrics").exists()
    assert read_metrics(tmp_path).empty


async def test_an_undecodable_payload_is_permanent(tmp_path: Path) -> None:
    sink = LocalStoreSink(tmp_path, cluster="c")
    with pytest.raises(PermanentError) as err:
        await sink.send(b"not snappy at all")
    assert err.value.reason == "bad_payload"
    with pytest.raises(PermanentError):
        await sink.send(compress(b"\x0a\xff\xff"))  # a truncated TimeSeries


async def test_a_write_error_is_retryable_and_keeps_nothing_half_written(tmp_path: Path) -> None:
    (tmp_path / "metrics").write_text("a file where the partition directory should be")
    sink = LocalStoreSink(tmp_path, cluster="c")
    with pytest.raises(RetryableError) as err:
        await sink.send(payload((UP, [(1.0, T0)])))
    assert err.value.reason == "io"
    assert "cannot write" in str(err.value) and "cluster=c" in str(err.value)


async def test_disk_full_mid_write_is_retryable_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import observe.sinks.local_store as local_store

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_store.pq, "write_table", full)
    sink = LocalStoreSink(tmp_path, cluster="c")
    with pytest.raises(RetryableError, match="No space left on device") as err:
        await sink.send(payload((UP, [(1.0, T0)])))
    assert err.value.reason == "io"
    assert not all_files(tmp_path)


async def test_it_is_a_sink(tmp_path: Path) -> None:
    sink: Sink = LocalStoreSink(tmp_path, cluster="c")
    assert sink.name == "local_store"
    await asyncio.wait_for(sink.close(), 1)
    with pytest.raises(ValueError, match="partition directory"):
        LocalStoreSink(tmp_path, cluster="../x")
