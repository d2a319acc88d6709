"""Loki's push messages built at run time with the `protobuf` library (no protoc, no generated code).

The reference our hand-written encoder is tested against, and what the fake Loki decodes pushes with (so
the fake does not share code with the collector). Field numbers and types follow upstream
(`pkg/push/push.proto`, package `logproto`), https://github.com/grafana/loki/blob/main/pkg/push/push.proto:

    PushRequest      { repeated StreamAdapter streams = 1; }
    StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                       repeated LabelPairAdapter structuredMetadata = 3;
                       repeated LabelPairAdapter parsed = 4; }
    LabelPairAdapter { string name = 1; string value = 2; }
    Timestamp        { int64 seconds = 1; int32 nanos = 2; }   (google/protobuf/timestamp.proto)

`line` is declared `bytes` here (same wire type as `string`): Loki's Go decoder does not check UTF-8,
so neither may the fake, which has to accept a line with invalid UTF-8 the way Loki does.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from tests.protobuf_schema import F, field, message_classes


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="logproto/push_test.proto", package="logproto")
    fd.syntax = "proto3"
    ts = fd.message_type.add(name="Timestamp")  # google.protobuf.Timestamp, same fields, private copy
    field(ts, "seconds", 1, F.TYPE_INT64)
    field(ts, "nanos", 2, F.TYPE_INT32)
    pair = fd.message_type.add(name="LabelPairAdapter")
    field(pair, "name", 1, F.TYPE_STRING)
    field(pair, "value", 2, F.TYPE_STRING)
    entry = fd.message_type.add(name="EntryAdapter")
    field(entry, "timestamp", 1, F.TYPE_MESSAGE, type_name=".logproto.Timestamp")
    field(entry, "line", 2, F.TYPE_BYTES)
    field(
        entry, "structuredMetadata", 3, F.TYPE_MESSAGE, repeated=True, type_name=".logproto.LabelPairAdapter"
    )
    field(entry, "parsed", 4, F.TYPE_MESSAGE, repeated=True, type_name=".logproto.LabelPairAdapter")
    stream = fd.message_type.add(name="StreamAdapter")
    field(stream, "labels", 1, F.TYPE_STRING)
    field(stream, "entries", 2, F.TYPE_MESSAGE, repeated=True, type_name=".logproto.EntryAdapter")
    field(stream, "hash", 3, F.TYPE_UINT64)
    req = fd.message_type.add(name="PushRequest")
    field(req, "streams", 1, F.TYPE_MESSAGE, repeated=True, type_name=".logproto.StreamAdapter")
    return fd


PushRequest, StreamAdapter, EntryAdapter, LabelPairAdapter = message_classes(
    _file(), "PushRequest", "StreamAdapter", "EntryAdapter", "LabelPairAdapter"
)

RawEntry = tuple[int, bytes, tuple[tuple[str, str], ...]]


def build(streams: list[tuple[str, list[RawEntry]]]) -> bytes:
    """Serialize `[(labels_text, [(ts_ns, line_bytes, metadata), ...]), ...]` with the protobuf library."""
    req = PushRequest()
    for labels, entries in streams:
        s = req.streams.add(labels=labels)
        for ts, line, md in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = divmod(ts, 1_000_000_000)
            for name, value in md:
                e.structuredMetadata.add(name=name, value=value)
    return bytes(req.SerializeToString())


def parse(body: bytes) -> list[tuple[str, list[RawEntry]]]:
    """Parse an uncompressed PushRequest with the protobuf library."""
    req = PushRequest.FromString(body)
    return [
        (
            s.labels,
            [
                (
                    e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos,
                    bytes(e.line),
                    tuple((p.name, p.value) for p in e.structuredMetadata),
                )
                for e in s.entries
            ],
        )
        for s in req.streams
    ]
