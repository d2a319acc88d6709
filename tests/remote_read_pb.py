"""prompb's remote-read messages built at run time with the `protobuf` library (no protoc, no codegen).

The reference observe's hand-written remote-read encoder and decoders are tested against. Field numbers
and types are those compiled into Prometheus 2.42 (`prompb/remote.proto`, `prompb/types.proto`;
tests/integration/test_remote_read_real_prometheus.py checks them against the binary's own descriptors):

    ReadRequest    { repeated Query queries = 1; repeated ResponseType accepted_response_types = 2; }
    Query          { int64 start_timestamp_ms = 1; int64 end_timestamp_ms = 2;
                     repeated LabelMatcher matchers = 3; ReadHints hints = 4; }
    LabelMatcher   { Type type = 1; string name = 2; string value = 3; }
    ReadHints      { int64 step_ms = 1; string func = 2; int64 start_ms = 3; int64 end_ms = 4;
                     repeated string grouping = 5; bool by = 6; int64 range_ms = 7; }
    ReadResponse   { repeated QueryResult results = 1; }
    QueryResult    { repeated TimeSeries timeseries = 1; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2; }   (3, 4 omitted here)
    ChunkedReadResponse { repeated ChunkedSeries chunked_series = 1; int64 query_index = 2; }
    ChunkedSeries  { repeated Label labels = 1; repeated Chunk chunks = 2; }
    Chunk          { int64 min_time_ms = 1; int64 max_time_ms = 2; Encoding type = 3; bytes data = 4; }
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from tests.protobuf_schema import F, field, message_classes

MESSAGES = (
    "ReadRequest",
    "Query",
    "LabelMatcher",
    "ReadHints",
    "ReadResponse",
    "QueryResult",
    "TimeSeries",
    "Label",
    "Sample",
    "ChunkedReadResponse",
    "ChunkedSeries",
    "Chunk",
)


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="prometheus/remote_read_test.proto", package="prometheus")
    fd.syntax = "proto3"

    def add(name: str) -> descriptor_pb2.DescriptorProto:
        return fd.message_type.add(name=name)

    label = add("Label")
    field(label, "name", 1, F.TYPE_STRING)
    field(label, "value", 2, F.TYPE_STRING)

    sample = add("Sample")
    field(sample, "value", 1, F.TYPE_DOUBLE)
    field(sample, "timestamp", 2, F.TYPE_INT64)

    series = add("TimeSeries")
    field(series, "labels", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    field(series, "samples", 2, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Sample")

    matcher = add("LabelMatcher")
    mtype = matcher.enum_type.add(name="Type")
    for i, n in enumerate(("EQ", "NEQ", "RE", "NRE")):
        mtype.value.add(name=n, number=i)
    field(matcher, "type", 1, F.TYPE_ENUM, type_name=".prometheus.LabelMatcher.Type")
    field(matcher, "name", 2, F.TYPE_STRING)
    field(matcher, "value", 3, F.TYPE_STRING)

    hints = add("ReadHints")
    field(hints, "step_ms", 1, F.TYPE_INT64)
    field(hints, "func", 2, F.TYPE_STRING)
    field(hints, "start_ms", 3, F.TYPE_INT64)
    field(hints, "end_ms", 4, F.TYPE_INT64)
    field(hints, "grouping", 5, F.TYPE_STRING, repeated=True)
    field(hints, "by", 6, F.TYPE_BOOL)
    field(hints, "range_ms", 7, F.TYPE_INT64)

    chunk = add("Chunk")
    enc = chunk.enum_type.add(name="Encoding")
    for i, n in enumerate(("UNKNOWN", "XOR", "HISTOGRAM")):  # 2.42 stops at HISTOGRAM
        enc.value.add(name=n, number=i)
    field(chunk, "min_time_ms", 1, F.TYPE_INT64)
    field(chunk, "max_time_ms", 2, F.TYPE_INT64)
    field(chunk, "type", 3, F.TYPE_ENUM, type_name=".prometheus.Chunk.Encoding")
    field(chunk, "data", 4, F.TYPE_BYTES)

    cseries = add("ChunkedSeries")
    field(cseries, "labels", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    field(cseries, "chunks", 2, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Chunk")

    query = add("Query")
    field(query, "start_timestamp_ms", 1, F.TYPE_INT64)
    field(query, "end_timestamp_ms", 2, F.TYPE_INT64)
    field(query, "matchers", 3, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.LabelMatcher")
    field(query, "hints", 4, F.TYPE_MESSAGE, type_name=".prometheus.ReadHints")

    req = add("ReadRequest")
    rtype = req.enum_type.add(name="ResponseType")
    rtype.value.add(name="SAMPLES", number=0)
    rtype.value.add(name="STREAMED_XOR_CHUNKS", number=1)
    field(req, "queries", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Query")
    field(
        req,
        "accepted_response_types",
        2,
        F.TYPE_ENUM,
        repeated=True,
        type_name=".prometheus.ReadRequest.ResponseType",
    )

    qres = add("QueryResult")
    field(qres, "timeseries", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.TimeSeries")

    resp = add("ReadResponse")
    field(resp, "results", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.QueryResult")

    cresp = add("ChunkedReadResponse")
    field(cresp, "chunked_series", 1, F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.ChunkedSeries")
    field(cresp, "query_index", 2, F.TYPE_INT64)
    return fd


(
    ReadRequest,
    Query,
    LabelMatcher,
    ReadHints,
    ReadResponse,
    QueryResult,
    TimeSeries,
    Label,
    Sample,
    ChunkedReadResponse,
    ChunkedSeries,
    Chunk,
) = message_classes(file_descriptor(), *MESSAGES)
