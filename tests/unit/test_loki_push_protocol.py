"""The Loki push encoder against the `protobuf` library's decoder (and back), and the JSON form."""

from __future__ import annotations

import json

import cramjam
import pytest

from observe.protocol.loki_push import (
    PAYLOAD_JSON,
    PAYLOAD_PROTOBUF,
    decode_payload,
    decode_push_json,
    decode_push_request,
    encode_payload,
    encode_push_json,
    encode_push_request,
    format_labels,
    parse_labels,
    payload_body,
)
from tests import loki_push_pb

STREAMS = [
    (
        (("app", "api"), ("cluster", "prod-eu-1"), ("namespace", "shop")),
        [
            (0, "epoch zero", ()),
            (1_700_000_000_000_000_000, "whole second", ()),
            (1_700_000_000_123_456_789, 'GET /cart 200 "ok" \\ ünïcødé ✓', (("detected_level", "info"),)),
            (1_700_000_000_123_456_789, "same ns, other line", (("trace_id", "abc"), ("user", "u-1"))),
            (1_700_000_001_000_000_001, "x" * 300, ()),  # a multi-byte length varint
        ],
    ),
    (
        (("app", 'we"ird\\value\nwith newline'), ("cluster", "prod-eu-1")),
        [(1_700_000_000_000_000_001, "", ())],
    ),
]


def _as_library(streams: object) -> list[tuple[str, list[tuple[int, bytes, tuple[tuple[str, str], ...]]]]]:
    return [
        (format_labels(labels), [(ts, line.encode(), md) for ts, line, md in entries])
        for labels, entries in streams  # type: ignore[attr-defined]
    ]


def test_push_request_decodes_with_the_protobuf_library_field_for_field() -> None:
    body = encode_push_request(STREAMS)
    assert loki_push_pb.parse(body) == _as_library(STREAMS)


def test_protobuf_library_output_decodes_with_ours() -> None:
    body = loki_push_pb.build(_as_library(STREAMS))
    decoded = decode_push_request(body)
    assert [(labels, entries) for labels, entries in decoded] == [(lb, list(es)) for lb, es in STREAMS]


def test_structured_metadata_is_entry_field_3_not_a_stream_label() -> None:
    body = encode_push_request(STREAMS)
    req = loki_push_pb.PushRequest.FromString(body)
    entry = req.streams[0].entries[3]
    assert [(p.name, p.value) for p in entry.structuredMetadata] == [("trace_id", "abc"), ("user", "u-1")]
    assert "trace_id" not in req.streams[0].labels
    # field numbers on the wire: EntryAdapter.structuredMetadata is tag (3 << 3 | 2) = 0x1a
    raw_entry = entry.SerializeToString()
    assert b"\x1a" in raw_entry and entry.line == b"same ns, other line"


def test_hash_field_is_left_unset_and_timestamp_split_into_seconds_and_nanos() -> None:
    req = loki_push_pb.PushRequest.FromString(encode_push_request(STREAMS))
    assert req.streams[0].hash == 0
    ts = req.streams[0].entries[2].timestamp
    assert (ts.seconds, ts.nanos) == (1_700_000_000, 123_456_789)


def test_every_varint_width_is_byte_for_byte_the_protobuf_librarys() -> None:
    # The encoder takes lengths and nanoseconds from tables and caches per-second bytes: every width of
    # each varint, a zero and a negative timestamp, and two streams sharing their seconds. (No empty line:
    # we send its field, empty, where the library omits it.)
    nanos = [0, 1, 127, 128, 2**14 - 1, 2**14, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 999_999_999]
    seconds = [0, 1, 2**28 - 1, 2**28, 1_700_000_000, 2**35]
    stamps = sorted({s * 1_000_000_000 + n for s in seconds for n in nanos} | {-1, -1_500_000_000})
    sizes = [1, 110, 115, 127, 128, 2**14 - 12, 2**14 - 1, 2**14, 2**21 + 1]
    entries = [
        (ts, "x" * sizes[i % len(sizes)], (("k", "v"),) if i % 7 == 0 else ()) for i, ts in enumerate(stamps)
    ]
    streams = [((("app", "a"),), entries), ((("app", "b"),), entries[::-3][::-1])]
    assert encode_push_request(streams) == loki_push_pb.build(_as_library(streams))


def test_labels_text_is_what_loki_parses_and_round_trips() -> None:
    labels = (("a", "1"), ("b", 'q"uote'), ("c", "back\\slash"), ("d", "new\nline"))
    text = format_labels(labels)
    assert text == '{a="1", b="q\\"uote", c="back\\\\slash", d="new\\nline"}'
    assert parse_labels(text) == labels
    assert parse_labels('{b="2",a="1"}') == (("a", "1"), ("b", "2"))
    with pytest.raises(ValueError, match="unterminated"):
        parse_labels('{a="1}')


def test_lone_surrogates_become_replacement_characters_not_an_exception() -> None:
    bad = json.loads('"before \\ud800 after"')  # what a server's \\u escape can hand us
    body = encode_push_request([((("app", "x"),), [(1, bad, ())])])
    assert loki_push_pb.parse(body)[0][1][0][1] == "before \ufffd after".encode()
    doc = json.loads(encode_push_json([((("app", "x"),), [(1, bad, ())])]))
    assert doc["streams"][0]["values"][0][1] in ("before \ufffd after", bad)


def test_json_body_matches_the_documented_shape_with_metadata_as_third_element() -> None:
    doc = json.loads(encode_push_json(STREAMS))
    first = doc["streams"][0]
    assert first["stream"] == {"app": "api", "cluster": "prod-eu-1", "namespace": "shop"}
    assert first["values"][1] == ["1700000000000000000", "whole second"]
    assert first["values"][2][2] == {"detected_level": "info"}
    assert decode_push_json(encode_push_json(STREAMS)) == [(lb, list(es)) for lb, es in STREAMS]


@pytest.mark.parametrize(("encoding", "tag", "ctype"), [
    ("protobuf", PAYLOAD_PROTOBUF, "application/x-protobuf"),
    ("json", PAYLOAD_JSON, "application/json"),
])  # fmt: skip
def test_queue_payload_carries_its_encoding(encoding: str, tag: int, ctype: str) -> None:
    payload = encode_payload(STREAMS, encoding)  # type: ignore[arg-type]
    assert payload[0] == tag
    body, content_type = payload_body(payload)
    assert content_type == ctype
    if encoding == "protobuf":  # snappy *block* format, as Loki's push handler reads it
        assert loki_push_pb.parse(bytes(cramjam.snappy.decompress_raw(body))) == _as_library(STREAMS)
    assert decode_payload(payload) == [(lb, list(es)) for lb, es in STREAMS]


def test_unknown_payload_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Loki push payload"):
        payload_body(b"\x07garbage")
    with pytest.raises(ValueError, match="missing"):
        payload_body(b"")


def test_truncated_protobuf_is_a_value_error() -> None:
    body = encode_push_request(STREAMS)
    with pytest.raises(ValueError, match="truncated"):
        decode_push_request(body[:-5])
