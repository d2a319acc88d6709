"""The embedded local store: the sinks used when `central.remote_write` / `central.loki` are absent.

`LocalStoreSink` receives exactly what a remote-write receiver would (a snappy-compressed remote-write 1.0
`WriteRequest`, https://prometheus.io/docs/concepts/remote_write_spec/), `LocalLogStoreSink` exactly what
Loki's push API would (a queue payload of observe/protocol/loki_push.py: a tag byte, then a snappy
protobuf `PushRequest` or its JSON form, https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs).
Both write Apache Parquet (https://parquet.apache.org/docs/file-format/) in a Hive-partitioned tree that
pandas, pyarrow, DuckDB or Spark read as one table:

    <directory>/metrics/cluster=<cluster>/hour=<YYYY-MM-DDTHH>/part-<first timestamp ms>-<id>.parquet

    column     type                     meaning
    metric     string                   the `__name__` label
    labels     string                   every other label, a JSON object with sorted keys
    value      float64                  the sample value (NaN for a staleness marker)
    stale      bool                     the sample is Prometheus' staleness marker (0x7ff0000000000002)
    timestamp  timestamp[ms, tz=UTC]    the sample time

    <directory>/logs/cluster=<cluster>/hour=<YYYY-MM-DDTHH>/part-<first timestamp ns>-<id>.parquet

    column     type                     meaning
    timestamp  timestamp[ns, tz=UTC]    the entry time, to the nanosecond as Loki keeps it
    labels     string                   the stream labels (cluster included), a JSON object with sorted keys
    line       string                   the log line
    metadata   string                   the entry's structured metadata, a JSON object ("{}" when none)

One `send` writes one file per UTC hour its samples (entries) fall in (usually one), each with
observe.atomic_file: written to a hidden temporary name in the same directory, fsynced, renamed into
place, directory fsynced. A reader therefore never sees half a file, and a crash leaves at most a
`.tmp` file that readers skip (pyarrow ignores names starting with `.`). The `<id>` is derived from the payload's content, so a
payload sent again (a retry after a failed second hour, or a queue replay after a crash before the
acknowledgement) rewrites the same files instead of duplicating rows.

Errors: a disk or permission problem is a `RetryableError` (reason `io`): the queue keeps the data and
the delivery layer retries with backoff. A payload that does not decode is a `PermanentError`
(reason `bad_payload`): no retry will fix it.

Read it back with `read_metrics(directory)` / `read_logs(directory)` (pandas, the `analysis` extra) or
directly: `pandas.read_parquet("<directory>/metrics")`, `pandas.read_parquet("<directory>/logs")`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import pyarrow as pa
import pyarrow.parquet as pq

from observe.atomic_file import replace_with
from observe.errors import PermanentError, RetryableError
from observe.model import is_stale_nan
from observe.protocol.loki_push import decode_payload
from observe.protocol.remote_write import decode_write_request, decompress
from observe.reasons import FAIL_BAD_PAYLOAD, FAIL_IO

if TYPE_CHECKING:
    import pandas

__all__ = [
    "LOGS_SCHEMA",
    "SCHEMA",
    "STORE_SUBDIR",
    "LocalLogStoreSink",
    "LocalStoreSink",
    "read_logs",
    "read_metrics",
]

STORE_SUBDIR: Final = "store"
"""The sink's directory under `data_dir` when the collector uses the embedded store."""

SCHEMA: Final = pa.schema(
    [
        ("metric", pa.string()),
        ("labels", pa.string()),
        ("value", pa.float64()),
        ("stale", pa.bool_()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
    ]
)
LOGS_SCHEMA: Final = pa.schema(
    [
        ("timestamp", pa.timestamp("ns", tz="UTC")),
        ("labels", pa.string()),
        ("line", pa.string()),
        ("metadata", pa.string()),
    ]
)
_PARTITIONING_SCHEMA: Final = pa.schema([("cluster", pa.string()), ("hour", pa.string())])
_HOUR_MS: Final = 3_600_000
_HOUR_NS: Final = 3_600_000_000_000

# rows of one hour: parallel column lists (metric, labels, value, stale, timestamp ms)
_Columns = tuple[list[str], list[str], list[float], list[bool], list[int]]


class LocalStoreSink:
    """Writes each remote-write payload as Parquet under `directory/metrics/cluster=<cluster>/`."""

    name = "local_store"

    def __init__(self, directory: Path, *, cluster: str) -> None:
        self.directory = Path(directory)
        self.cluster = cluster
        self._root = _partition_root(self.directory, "metrics", cluster)

    async def send(self, payload: bytes) -> None:
        try:
            series = decode_write_request(decompress(payload))
        except ValueError as exc:
            raise PermanentError(
                f"local store {self._root}: payload is not a snappy WriteRequest: {exc}",
                reason=FAIL_BAD_PAYLOAD,
            ) from exc
        if not series:
            return
        # Parquet encoding and fsync take milliseconds to seconds: off the event loop.
        await asyncio.to_thread(self._write, payload, series)

    async def close(self) -> None:
        """Nothing held open: every send closes its files."""

    def _write(
        self, payload: bytes, series: list[tuple[tuple[tuple[str, str], ...], list[tuple[float, int]]]]
    ) -> None:
        by_hour: dict[int, _Columns] = {}
        for labels, samples in series:
            metric = ""
            rest: dict[str, str] = {}
            for label, text in labels:
                if label == "__name__":
                    metric = text
                else:
                    rest[label] = text
            labels_json = _json(rest)
            for value, ts in samples:
                cols = by_hour.get(ts // _HOUR_MS)
                if cols is None:
                    cols = by_hour[ts // _HOUR_MS] = ([], [], [], [], [])
                cols[0].append(metric)
                cols[1].append(labels_json)
                cols[2].append(value)
                cols[3].append(is_stale_nan(value))
                cols[4].append(ts)
        for hour, cols in sorted(by_hour.items()):
            path = _part_path(self._root, payload, hour, min(cols[4]))
            table = pa.Table.from_arrays(
                [
                    pa.array(cols[0], pa.string()),
                    pa.array(cols[1], pa.string()),
                    pa.array(cols[2], pa.float64()),
                    pa.array(cols[3], pa.bool_()),
                    pa.array(cols[4], pa.timestamp("ms", tz="UTC")),
                ],
                schema=SCHEMA,
            )
            _write_atomically(table, path)


class LocalLogStoreSink:
    """Writes each Loki push payload as Parquet under `directory/logs/cluster=<cluster>/`."""

    name = "local_store"

    def __init__(self, directory: Path, *, cluster: str) -> None:
        self.directory = Path(directory)
        self.cluster = cluster
        self._root = _partition_root(self.directory, "logs", cluster)

    async def send(self, payload: bytes) -> None:
        try:
            streams = decode_payload(payload)
        except ValueError as exc:
            raise PermanentError(
                f"local store {self._root}: payload is not a Loki push body: {exc}", reason=FAIL_BAD_PAYLOAD
            ) from exc
        if not any(entries for _, entries in streams):
            return
        await asyncio.to_thread(self._write, payload, streams)

    async def close(self) -> None:
        """Nothing held open: every send closes its files."""

    def _write(self, payload: bytes, streams: list[tuple[tuple[tuple[str, str], ...], list[Any]]]) -> None:
        # rows of one hour: parallel column lists (timestamp ns, labels, line, metadata)
        by_hour: dict[int, tuple[list[int], list[str], list[str], list[str]]] = {}
        for labels, entries in streams:
            labels_json = _json(dict(labels))
            for ts, line, metadata in entries:
                cols = by_hour.get(ts // _HOUR_NS)
                if cols is None:
                    cols = by_hour[ts // _HOUR_NS] = ([], [], [], [])
                cols[0].append(ts)
                cols[1].append(labels_json)
                cols[2].append(line)
                cols[3].append(_json(dict(metadata)) if metadata else "{}")
        for hour, cols in sorted(by_hour.items()):
            table = pa.Table.from_arrays(
                [
                    pa.array(cols[0], pa.timestamp("ns", tz="UTC")),
                    pa.array(cols[1], pa.string()),
                    pa.array(cols[2], pa.string()),
                    pa.array(cols[3], pa.string()),
                ],
                schema=LOGS_SCHEMA,
            )
            _write_atomically(table, _part_path(self._root, payload, hour, min(cols[0])))


def _partition_root(directory: Path, signal: str, cluster: str) -> Path:
    if not cluster or "/" in cluster or cluster in (".", ".."):
        raise ValueError(f"local store: {cluster!r} cannot name a partition directory")
    return Path(directory) / signal / f"cluster={cluster}"


def _part_path(root: Path, payload: bytes, hour: int, first_ts: int) -> Path:
    """The file of `payload`'s rows in `hour` (hours since the Unix epoch): named by the payload's content,
    so the same payload sent again rewrites the same file instead of adding one."""
    h = hashlib.blake2b(payload, digest_size=16)
    h.update(hour.to_bytes(8, "big", signed=True))
    part_id = uuid.UUID(bytes=h.digest())
    hour_text = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H")
    return root / f"hour={hour_text}" / f"part-{first_ts}-{part_id}.parquet"


def _json(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _write_atomically(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` (observe.atomic_file); a disk or Arrow failure is a RetryableError."""

    def write(f: BinaryIO) -> None:
        pq.write_table(table, f, compression="zstd")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_with(path, write)
    except (OSError, pa.ArrowException) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RetryableError(f"local store: cannot write {path}: {detail}", reason=FAIL_IO) from exc


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "reading the local store needs pandas: pip install 'observe[analysis]' (or read the Parquet "
            "files with pyarrow.dataset directly)"
        ) from exc
    return pandas


def read_metrics(directory: Path | str, cluster: str | None = None) -> pandas.DataFrame:
    """Every sample under `directory` (the sink's), or one cluster's, as a DataFrame.

    Columns: the file columns above plus the partition columns `cluster` and `hour` (strings).
    """
    return _read(Path(directory) / "metrics", SCHEMA, cluster)


def read_logs(directory: Path | str, cluster: str | None = None) -> pandas.DataFrame:
    """Every log entry under `directory` (the sink's), or one cluster's, as a DataFrame, oldest first.

    Columns: `timestamp` (ns, UTC), `labels`, `line`, `metadata` (JSON text; `json.loads` them) and the
    partition columns `cluster` and `hour` (strings).
    """
    df = _read(Path(directory) / "logs", LOGS_SCHEMA, cluster)
    return df.sort_values(["timestamp", "labels", "line"], kind="stable", ignore_index=True)


def _read(root: Path, schema: pa.Schema, cluster: str | None) -> pandas.DataFrame:
    import pyarrow.dataset as ds

    _pandas()  # fail early, with the install hint, when pandas is missing
    full_schema = pa.unify_schemas([schema, _PARTITIONING_SCHEMA])
    if not root.is_dir():
        return full_schema.empty_table().to_pandas()
    dataset = ds.dataset(
        root,
        format="parquet",
        partitioning=ds.partitioning(_PARTITIONING_SCHEMA, flavor="hive"),
        schema=full_schema,
    )
    table = dataset.to_table(filter=ds.field("cluster") == cluster if cluster is not None else None)
    return table.to_pandas()
