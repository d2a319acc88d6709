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

The messages live in a private descriptor pool (tests/protobuf_schema.py) so they cannot clash.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from tests.protobuf_schema import F, field, message_classes


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="prometheus/remote_write_test.proto", package="prometheus")
    fd.syntax = "proto3"

    label = fd.message_type.add(name="Label")
    field(label, "name", 1, F.TYPE_STRING)
    field(label, "value", 2, F.TYPE_STRING)

    sample = fd.message_type.add(name="Sample")
    field(sample, "value", 1, F.TYPE_DOUBLE)
    field(sample, "timestamp", 2, F.TYPE_INT64)

    exemplar = fd.message_type.add(name="Exemplar")
    field(exemplar, "labels", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    field(exemplar, "value", 2, F.TYPE_DOUBLE)
    field(exemplar, "timestamp", 3, F.TYPE_INT64)

    span = fd.message_type.add(name="BucketSpan")
    field(span, "offset", 1, F.TYPE_SINT32)
    field(span, "length", 2, F.TYPE_UINT32)

    hist = fd.message_type.add(name="Histogram")
    hint = hist.enum_type.add(name="ResetHint")
    for i, n in enumerate(("UNKNOWN", "YES", "NO", "GAUGE")):
        hint.value.add(name=n, number=i)
    hist.oneof_decl.add(name="count")
    hist.oneof_decl.add(name="zero_count")
    field(hist, "count_int", 1, F.TYPE_UINT64, oneof=0)
    field(hist, "count_float", 2, F.TYPE_DOUBLE, oneof=0)
    field(hist, "sum", 3, F.TYPE_DOUBLE)
    field(hist, "schema", 4, F.TYPE_SINT32)
    field(hist, "zero_threshold", 5, F.TYPE_DOUBLE)
    field(hist, "zero_count_int", 6, F.TYPE_UINT64, oneof=1)
    field(hist, "zero_count_float", 7, F.TYPE_DOUBLE, oneof=1)
    field(hist, "negative_spans", 8, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.BucketSpan")
    field(hist, "negative_deltas", 9, F.TYPE_SINT64, repeated=True)
    field(hist, "negative_counts", 10, F.TYPE_DOUBLE, repeated=True)
    field(hist, "positive_spans", 11, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.BucketSpan")
    field(hist, "positive_deltas", 12, F.TYPE_SINT64, repeated=True)
    field(hist, "positive_counts", 13, F.TYPE_DOUBLE, repeated=True)
    field(hist, "reset_hint", 14, F.TYPE_ENUM, type_name=".prometheus.Histogram.ResetHint")
    field(hist, "timestamp", 15, F.TYPE_INT64)

    series = fd.message_type.add(name="TimeSeries")
    field(series, "labels", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    field(series, "samples", 2, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Sample")
    field(series, "exemplars", 3, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Exemplar")
    field(series, "histograms", 4, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Histogram")

    meta = fd.message_type.add(name="MetricMetadata")
    mtype = meta.enum_type.add(name="MetricType")
    for i, n in enumerate(
        ("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET")
    ):
        mtype.value.add(name=n, number=i)
    field(meta, "type", 1, F.TYPE_ENUM, type_name=".prometheus.MetricMetadata.MetricType")
    field(meta, "metric_family_name", 2, F.TYPE_STRING)
    field(meta, "help", 4, F.TYPE_STRING)
    field(meta, "unit", 5, F.TYPE_STRING)

    wr = fd.message_type.add(name="WriteRequest")
    field(wr, "timeseries", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.TimeSeries")
    wr.reserved_range.add(start=2, end=3)
    field(wr, "metadata", 3, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.MetricMetadata")
    return fd


WriteRequest, TimeSeries, Label, Sample, Exemplar, Histogram, MetricMetadata = message_classes(
    _file(), "WriteRequest", "TimeSeries", "Label", "Sample", "Exemplar", "Histogram", "MetricMetadata"
)


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
