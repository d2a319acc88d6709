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

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    msg: Any, name: str, number: int, ftype: int, *, repeated: bool = False, type_name: str = ""
) -> None:
    f = msg.field.add()
    f.name = name
    f.number = number
    f.type = ftype
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="logproto/push_test.proto", package="logproto")
    fd.syntax = "proto3"
    ts = fd.message_type.add(name="Timestamp")  # google.protobuf.Timestamp, same fields, private copy
    _field(ts, "seconds", 1, _F.TYPE_INT64)
    _field(ts, "nanos", 2, _F.TYPE_INT32)
    pair = fd.message_type.add(name="LabelPairAdapter")
    _field(pair, "name", 1, _F.TYPE_STRING)
    _field(pair, "value", 2, _F.TYPE_STRING)
    entry = fd.message_type.add(name="EntryAdapter")
    _field(entry, "timestamp", 1, _F.TYPE_MESSAGE, type_name=".logproto.Timestamp")
    _field(entry, "line", 2, _F.TYPE_BYTES)
    _field(
        entry, "structuredMetadata", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".logproto.LabelPairAdapter"
    )
    _field(entry, "parsed", 4, _F.TYPE_MESSAGE, repeated=True, type_name=".logproto.LabelPairAdapter")
    stream = fd.message_type.add(name="StreamAdapter")
    _field(stream, "labels", 1, _F.TYPE_STRING)
    _field(stream, "entries", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".logproto.EntryAdapter")
    _field(stream, "hash", 3, _F.TYPE_UINT64)
    req = fd.message_type.add(name="PushRequest")
    _field(req, "streams", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".logproto.StreamAdapter")
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"logproto.{name}"))


PushRequest: Any = _cls("PushRequest")
StreamAdapter: Any = _cls("StreamAdapter")
EntryAdapter: Any = _cls("EntryAdapter")
LabelPairAdapter: Any = _cls("LabelPairAdapter")

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
