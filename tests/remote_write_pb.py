"""prompb's remote-write messages built at run time with the `protobuf` library (no protoc, no codegen).

The reference our hand-written encoder and decoder are tested against. Field numbers and types follow
upstream exactly (package `prometheus`), https://github.com/prometheus/prometheus/blob/main/prompb/types.proto
and `prompb/remote.proto`:

    WriteRequest   { repeated TimeSeries timeseries = 1; reserved 2; repeated MetricMetadata metadata = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2;
                     repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }
    Exemplar       { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; string help = 4; string unit = 5; }
    BucketSpan     { sint32 offset = 1; uint32 length = 2; }
    Histogram      { oneof count { uint64 count_int = 1; double count_float = 2; } double sum = 3;
                     sint32 schema = 4; double zero_threshold = 5;
                     oneof zero_count { uint64 zero_count_int = 6; double zero_count_float = 7; }
                     repeated BucketSpan negative_spans = 8; repeated sint64 negative_deltas = 9;
                     repeated double negative_counts = 10; repeated BucketSpan positive_spans = 11;
                     repeated sint64 positive_deltas = 12; repeated double positive_counts = 13;
                     ResetHint reset_hint = 14; int64 timestamp = 15; }

The messages live in a private descriptor pool so they cannot clash with other test helpers.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    *,
    repeated: bool = False,
    type_name: str | None = None,
    oneof: int | None = None,
) -> None:
    f = msg.field.add()
    f.name = name
    f.number = number
    f.type = ftype
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name is not None:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="prometheus/remote_write_test.proto", package="prometheus")
    fd.syntax = "proto3"

    label = fd.message_type.add(name="Label")
    _field(label, "name", 1, _F.TYPE_STRING)
    _field(label, "value", 2, _F.TYPE_STRING)

    sample = fd.message_type.add(name="Sample")
    _field(sample, "value", 1, _F.TYPE_DOUBLE)
    _field(sample, "timestamp", 2, _F.TYPE_INT64)

    exemplar = fd.message_type.add(name="Exemplar")
    _field(exemplar, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(exemplar, "value", 2, _F.TYPE_DOUBLE)
    _field(exemplar, "timestamp", 3, _F.TYPE_INT64)

    span = fd.message_type.add(name="BucketSpan")
    _field(span, "offset", 1, _F.TYPE_SINT32)
    _field(span, "length", 2, _F.TYPE_UINT32)

    hist = fd.message_type.add(name="Histogram")
    hint = hist.enum_type.add(name="ResetHint")
    for i, n in enumerate(("UNKNOWN", "YES", "NO", "GAUGE")):
        hint.value.add(name=n, number=i)
    hist.oneof_decl.add(name="count")
    hist.oneof_decl.add(name="zero_count")
    _field(hist, "count_int", 1, _F.TYPE_UINT64, oneof=0)
    _field(hist, "count_float", 2, _F.TYPE_DOUBLE, oneof=0)
    _field(hist, "sum", 3, _F.TYPE_DOUBLE)
    _field(hist, "schema", 4, _F.TYPE_SINT32)
    _field(hist, "zero_threshold", 5, _F.TYPE_DOUBLE)
    _field(hist, "zero_count_int", 6, _F.TYPE_UINT64, oneof=1)
    _field(hist, "zero_count_float", 7, _F.TYPE_DOUBLE, oneof=1)
    _field(hist, "negative_spans", 8, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.BucketSpan")
    _field(hist, "negative_deltas", 9, _F.TYPE_SINT64, repeated=True)
    _field(hist, "negative_counts", 10, _F.TYPE_DOUBLE, repeated=True)
    _field(hist, "positive_spans", 11, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.BucketSpan")
    _field(hist, "positive_deltas", 12, _F.TYPE_SINT64, repeated=True)
    _field(hist, "positive_counts", 13, _F.TYPE_DOUBLE, repeated=True)
    _field(hist, "reset_hint", 14, _F.TYPE_ENUM, type_name=".prometheus.Histogram.ResetHint")
    _field(hist, "timestamp", 15, _F.TYPE_INT64)

    series = fd.message_type.add(name="TimeSeries")
    _field(series, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Sample")
    _field(series, "exemplars", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Exemplar")
    _field(series, "histograms", 4, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Histogram")

    meta = fd.message_type.add(name="MetricMetadata")
    mtype = meta.enum_type.add(name="MetricType")
    for i, n in enumerate(
        ("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET")
    ):
        mtype.value.add(name=n, number=i)
    _field(meta, "type", 1, _F.TYPE_ENUM, type_name=".prometheus.MetricMetadata.MetricType")
    _field(meta, "metric_family_name", 2, _F.TYPE_STRING)
    _field(meta, "help", 4, _F.TYPE_STRING)
    _field(meta, "unit", 5, _F.TYPE_STRING)

    wr = fd.message_type.add(name="WriteRequest")
    _field(wr, "timeseries", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.TimeSeries")
    wr.reserved_range.add(start=2, end=3)
    _field(wr, "metadata", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.MetricMetadata")
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


WriteRequest: Any = _cls("WriteRequest")
TimeSeries: Any = _cls("TimeSeries")
Label: Any = _cls("Label")
Sample: Any = _cls("Sample")
Exemplar: Any = _cls("Exemplar")
Histogram: Any = _cls("Histogram")
MetricMetadata: Any = _cls("MetricMetadata")


def build(series: list[tuple[tuple[tuple[str, str], ...], list[tuple[float, int]]]]) -> bytes:
    """Serialize `[(labels, [(value, ts_ms), ...]), ...]` with the protobuf library."""
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, label_value in labels:
            ts.labels.add(name=name, value=label_value)
        for sample_value, t in samples:
            ts.samples.add(value=sample_value, timestamp=t)
    return bytes(req.SerializeToString())


def parse(body: bytes) -> list[tuple[tuple[tuple[str, str], ...], list[tuple[float, int]]]]:
    """Parse a WriteRequest with the protobuf library into the same shape as our decoder returns."""
    req = WriteRequest.FromString(body)
    return [
        (tuple((lb.name, lb.value) for lb in ts.labels), [(s.value, s.timestamp) for s in ts.samples])
        for ts in req.timeseries
    ]
