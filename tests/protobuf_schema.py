"""Protobuf message classes made at run time from a hand-written descriptor: no protoc, no generated code.

How the reference schemas in tests/remote_write_pb.py and tests/loki_push_pb.py are built; the
`protobuf` library then encodes and decodes with them, independently of observe's own encoders.
Descriptors: https://github.com/protocolbuffers/protobuf/blob/main/src/google/protobuf/descriptor.proto
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
"""Field types (`F.TYPE_STRING`, ...) for `field`."""


def field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    *,
    repeated: bool = False,
    type_name: str | None = None,
    oneof: int | None = None,
) -> None:
    """Add a field to `msg`; `type_name` (".package.Message") for message and enum fields, `oneof` the
    index of one of `msg`'s oneof declarations."""
    f = msg.field.add()
    f.name = name
    f.number = number
    f.type = ftype
    f.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
    if type_name is not None:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof


def message_classes(fd: descriptor_pb2.FileDescriptorProto, *names: str) -> list[Any]:
    """The classes of messages `names` of `fd`, from a private pool: no clash with other schemas."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return [message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fd.package}.{n}")) for n in names]
