"""Loki's push API body: a hand-written protobuf encoder/decoder for `PushRequest`, and the JSON form.

API: https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs
Schema (package `logproto`): https://github.com/grafana/loki/blob/main/pkg/push/push.proto

    PushRequest      { repeated StreamAdapter streams = 1; }
    StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter     { google.protobuf.Timestamp timestamp = 1; string line = 2;
                       repeated LabelPairAdapter structuredMetadata = 3; }
    LabelPairAdapter { string name = 1; string value = 2; }
    Timestamp        { int64 seconds = 1; int32 nanos = 2; }

`StreamAdapter.labels` is the label set as LogQL text, `{app="api", cluster="a"}`; `hash` is left
unset, as Promtail does. The protobuf body goes on the wire snappy-compressed in the *block* format
with `Content-Type: application/x-protobuf`; the JSON body is
`{"streams":[{"stream":{...},"values":[["<ns>","<line>",{<structured metadata>}]]}]}`.

Structured metadata travels per entry (field 3, or the JSON third element): it never becomes a
stream label, so it adds nothing to the central Loki's index.

The wire-format primitives (varints, length prefixes, walking a message's fields) are in `protobuf_wire`,
shared with the remote-write encoder.

Queue payloads carry a one-byte tag naming their encoding (`PAYLOAD_PROTOBUF`, `PAYLOAD_JSON`), so a
backlog written before `central.loki.encoding` changed is still sent with the right Content-Type.

Lines are sent as UTF-8. A line holding lone surrogates (possible only when a server sent a `\\udXXX`
JSON escape) has them replaced by U+FFFD, as Loki itself does with invalid UTF-8 on output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import cramjam

from observe.model import Labels
from observe.protocol.protobuf_wire import SMALL_VARINT, UINT64, WT_LEN, WT_VARINT, iter_fields, varint

__all__ = [
    "PAYLOAD_JSON",
    "PAYLOAD_PROTOBUF",
    "Entry",
    "Stream",
    "decode_payload",
    "decode_push_json",
    "decode_push_request",
    "encode_payload",
    "encode_push_json",
    "encode_push_request",
    "format_labels",
    "parse_labels",
    "payload_body",
    "utf8",
]

Entry = tuple[int, str, Labels]
"""One log entry: (timestamp in ns, line, structured metadata sorted by name). A tuple: the hot path."""
Stream = tuple[Labels, Sequence[Entry]]
"""A stream's labels (sorted by name) and its entries, in time order."""

PAYLOAD_PROTOBUF: Final = 0x01
PAYLOAD_JSON: Final = 0x02
_CONTENT_TYPE: Final = {PAYLOAD_PROTOBUF: "application/x-protobuf", PAYLOAD_JSON: "application/json"}


def utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`; lone surrogates (not encodable) become U+FFFD instead of raising."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _quote(value: str) -> str:
    # LogQL label values are Go-style double-quoted strings; these escapes are the ones its lexer knows.
    return (
        '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    )


def format_labels(labels: Labels) -> str:
    """`{a="1", b="2"}`: the form Loki's `ParseLabels` reads and its own `String()` writes."""
    return "{" + ", ".join(f"{name}={_quote(value)}" for name, value in labels) + "}"


_UNESCAPE: Final = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t", "'": "'", "`": "`"}


def parse_labels(text: str) -> Labels:
    """Inverse of `format_labels` (`,` with or without a space); raises ValueError naming the position."""
    s = text.strip()
    if not s.startswith("{") or not s.endswith("}"):
        raise ValueError(f"labels must be enclosed in braces: {text!r}")
    pos, end = 1, len(s) - 1
    out: list[tuple[str, str]] = []
    while True:
        while pos < end and s[pos] in " \t,":
            pos += 1
        if pos >= end:
            break
        eq = s.find("=", pos, end)
        if eq < 0:
            raise ValueError(f'expected name="value" at position {pos} of {text!r}')
        name = s[pos:eq].strip()
        pos = eq + 1
        if pos >= end or s[pos] != '"':
            raise ValueError(f"expected a double-quoted value at position {pos} of {text!r}")
        pos += 1
        chars: list[str] = []
        while True:
            if pos >= end:
                raise ValueError(f"unterminated quoted value in {text!r}")
            c = s[pos]
            if c == '"':
                pos += 1
                break
            if c == "\\":
                if pos + 1 >= end or s[pos + 1] not in _UNESCAPE:
                    raise ValueError(f"unsupported escape at position {pos} of {text!r}")
                chars.append(_UNESCAPE[s[pos + 1]])
                pos += 2
                continue
            chars.append(c)
            pos += 1
        out.append((name, "".join(chars)))
    return tuple(sorted(out))


# -- protobuf encoder --------------------------------------------------------------------------------


def _len_field(tag: bytes, body: bytes) -> bytes:
    return tag + varint(len(body)) + body


def _metadata_fields(metadata: Labels) -> bytes:
    parts: list[bytes] = []
    for name, value in metadata:
        pair = _len_field(b"\x0a", utf8(name)) + _len_field(b"\x12", utf8(value))
        parts.append(_len_field(b"\x1a", pair))
    return b"".join(parts)


# The varint of every value under 2**14 (lengths of lines and entries), and the low 14 bits of a longer
# varint (both bytes continued: the nanoseconds): indexing beats a call to `varint` per entry by ~5x.
# Built from SMALL_VARINT by concatenation: ~1 ms at import.
_CONT: Final = [bytes((i | 0x80,)) for i in range(0x80)]
_VARINT14: Final = SMALL_VARINT + [lo + hi for hi in SMALL_VARINT[1:] for lo in _CONT]
_LOW14: Final = [lo + hi for hi in _CONT for lo in _CONT]
# Tag 0x12 (field 2, length-delimited: StreamAdapter.entries and EntryAdapter.line) and a length under 2**14.
_FIELD2_LEN14: Final = [b"\x12" + v for v in _VARINT14]
# Per second of the timestamps, the bytes that depend on it alone (see `_seconds`). Many streams with a few
# lines a second each share their seconds, which a stream's last second cannot reuse; cleared when full.
_SECONDS: Final[dict[int, tuple[bytes, bytes]]] = {}
_MAX_SECONDS: Final = 4096


def _seconds(sec: int) -> tuple[bytes, bytes]:
    """(Timestamp.seconds, omitted when 0 (proto3 default); an entry's bytes from EntryAdapter.timestamp's
    tag to Timestamp.nanos' tag when the nanoseconds take 5 bytes), cached."""
    sec_field = b"\x08" + varint(sec) if sec else b""
    out = sec_field, b"\x0a" + SMALL_VARINT[len(sec_field) + 6] + sec_field + b"\x10"
    if len(_SECONDS) >= _MAX_SECONDS:
        _SECONDS.clear()
    _SECONDS[sec] = out
    return out


def encode_stream(labels: Labels, entries: Iterable[Entry]) -> bytes:
    """One `PushRequest.streams` field (tag, length, StreamAdapter).

    The hot path of the logs sink (a page is 5,000 entries): every piece is appended to one list and
    joined once, lengths are summed instead of measured on concatenations, the bytes that depend on the
    timestamp's seconds alone are cached, and varints under 2**14 (and the nanoseconds') come from tables.
    Measured with `python -m observe.protocol.loki_push`.
    """
    label_bytes = utf8(format_labels(labels))
    parts: list[bytes] = [b"", b"\x0a", varint(len(label_bytes)), label_bytes]
    size = 1 + len(parts[2]) + len(label_bytes)
    last_sec = None
    sec_field = head = b""
    fixed = 0  # EntryAdapter's bytes other than the line field and metadata, when nanos take 5 bytes
    seconds = _SECONDS
    small = SMALL_VARINT
    v14 = _VARINT14
    low14 = _LOW14
    field2 = _FIELD2_LEN14
    for ts, line, metadata in entries:
        sec, nanos = divmod(ts, 1_000_000_000)
        if sec != last_sec:
            last_sec = sec
            sec_field, head = seconds.get(sec) or _seconds(sec)
            fixed = len(head) + 5  # + nanos (5 bytes)
        try:
            line_bytes = line.encode()
        except UnicodeEncodeError:
            line_bytes = utf8(line)
        n = len(line_bytes)
        line_head = field2[n] if n < 0x4000 else b"\x12" + varint(n)  # the line's tag and length
        if nanos >= 0x10000000:  # 29 or 30 bits, 5 bytes: 3 in 4 real-time timestamps
            body_len = fixed + len(line_head) + n
            if metadata:
                md_bytes = _metadata_fields(metadata)
                body_len += len(md_bytes)
            entry_head = field2[body_len] if body_len < 0x4000 else b"\x12" + varint(body_len)
            parts += (
                entry_head, head, low14[nanos & 0x3FFF], low14[nanos >> 14 & 0x3FFF], small[nanos >> 28],
                line_head, line_bytes,
            )  # fmt: skip
        else:
            if nanos >= 0x4000:
                ts_body = sec_field + b"\x10" + low14[nanos & 0x3FFF] + v14[nanos >> 14]
            elif nanos:
                ts_body = sec_field + b"\x10" + v14[nanos]
            else:  # Timestamp.nanos omitted (proto3 default)
                ts_body = sec_field
            body_len = 2 + len(ts_body) + len(line_head) + n  # ts: tag + 1-byte length (<= 17)
            if metadata:
                md_bytes = _metadata_fields(metadata)
                body_len += len(md_bytes)
            entry_head = field2[body_len] if body_len < 0x4000 else b"\x12" + varint(body_len)
            parts += (entry_head, b"\x0a", small[len(ts_body)], ts_body, line_head, line_bytes)
        if metadata:
            parts.append(md_bytes)
        size += len(entry_head) + body_len
    parts[0] = b"\x0a" + varint(size)
    return b"".join(parts)


def encode_push_request(streams: Iterable[Stream]) -> bytes:
    """An uncompressed PushRequest: repeated fields concatenate."""
    return b"".join(encode_stream(labels, entries) for labels, entries in streams)


def encode_push_json(streams: Iterable[Stream]) -> bytes:
    """The JSON push body; structured metadata as the optional third element of a value."""
    doc = {
        "streams": [
            {
                "stream": dict(labels),
                "values": [[str(ts), line, dict(md)] if md else [str(ts), line] for ts, line, md in entries],
            }
            for labels, entries in streams
        ]
    }
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: \uXXXX escapes, which Loki's decoder turns into U+FFFD
        return json.dumps(doc, separators=(",", ":")).encode("ascii")


def encode_payload(streams: Iterable[Stream], encoding: Literal["protobuf", "json"] = "protobuf") -> bytes:
    """A queue payload: the encoding tag, then the body exactly as it goes on the wire."""
    if encoding == "json":
        return bytes((PAYLOAD_JSON,)) + encode_push_json(streams)
    raw = encode_push_request(streams)
    return bytes((PAYLOAD_PROTOBUF,)) + bytes(cramjam.snappy.compress_raw(raw))


def payload_body(payload: bytes) -> tuple[bytes, str]:
    """(body, Content-Type) of a queue payload; raises ValueError for an unknown tag."""
    if not payload or payload[0] not in _CONTENT_TYPE:
        raise ValueError(f"not a Loki push payload (tag byte {payload[:1].hex() or 'missing'})")
    return payload[1:], _CONTENT_TYPE[payload[0]]


# -- decoders (the mirror of the encoders: tests and the local tooling) ----------------------------------


def _text(buf: bytes, start: int, stop: int) -> str:
    return buf[start:stop].decode("utf-8", "replace")


def _decode_entry(buf: bytes, pos: int, end: int) -> Entry:
    ts = 0
    line = ""
    metadata: list[tuple[str, str]] = []
    for field, wt, a, b in iter_fields(buf, pos, end):
        if field == 1 and wt == WT_LEN:
            seconds = nanos = 0
            for f2, wt2, v, _ in iter_fields(buf, a, b):
                if f2 == 1 and wt2 == WT_VARINT:
                    seconds = v - UINT64 if v >= 1 << 63 else v
                elif f2 == 2 and wt2 == WT_VARINT:
                    nanos = v & 0xFFFFFFFF
            ts = seconds * 1_000_000_000 + nanos
        elif field == 2 and wt == WT_LEN:
            line = _text(buf, a, b)
        elif field == 3 and wt == WT_LEN:
            name = value = ""
            for f2, wt2, c, d in iter_fields(buf, a, b):
                if f2 == 1 and wt2 == WT_LEN:
                    name = _text(buf, c, d)
                elif f2 == 2 and wt2 == WT_LEN:
                    value = _text(buf, c, d)
            metadata.append((name, value))
    return ts, line, tuple(sorted(metadata))


def decode_push_request(body: bytes) -> list[tuple[Labels, list[Entry]]]:
    """Decode an uncompressed PushRequest; raises ValueError on malformed input or unparsable labels."""
    buf = bytes(body)
    out: list[tuple[Labels, list[Entry]]] = []
    for field, wt, a, b in iter_fields(buf, 0, len(buf)):
        if field != 1 or wt != WT_LEN:
            continue
        labels: Labels = ()
        entries: list[Entry] = []
        for f2, wt2, c, d in iter_fields(buf, a, b):
            if f2 == 1 and wt2 == WT_LEN:
                labels = parse_labels(_text(buf, c, d))
            elif f2 == 2 and wt2 == WT_LEN:
                entries.append(_decode_entry(buf, c, d))
        out.append((labels, entries))
    return out


def decode_push_json(body: bytes) -> list[tuple[Labels, list[Entry]]]:
    """Decode a JSON push body; raises ValueError when it is not one."""
    try:
        doc = json.loads(body)
        out: list[tuple[Labels, list[Entry]]] = []
        for s in doc["streams"]:
            entries: list[Entry] = []
            for v in s["values"]:
                md = tuple(sorted(v[2].items())) if len(v) > 2 and v[2] else ()
                entries.append((int(v[0]), str(v[1]), md))
            out.append((tuple(sorted(s["stream"].items())), entries))
        return out
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"not a Loki JSON push body: {exc}") from exc


def decode_payload(payload: bytes) -> list[tuple[Labels, list[Entry]]]:
    """Decode a queue payload (tag byte, then the wire body) back into streams."""
    body, content_type = payload_body(payload)
    if content_type == "application/json":
        return decode_push_json(body)
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise ValueError(f"not a snappy block: {exc}") from exc
    return decode_push_request(raw)


# -- benchmark -------------------------------------------------------------------------------------


def _bench(n: int = 5000, rounds: int = 20) -> float:
    """Entries/s of `encode_payload` (protobuf + snappy) for one page of Kubernetes-like lines of mixed
    length in 20 streams (best of `rounds`); run as `python -m observe.protocol.loki_push`."""
    import random
    import time

    rng = random.Random(1)
    words = [
        "GET",
        "POST",
        "/api/v1/items",
        "200",
        "404",
        "level=info",
        "msg=served",
        "trace_id=4bf92f3577b3",
    ]
    streams: dict[Labels, list[Entry]] = {}
    for i in range(n):
        labels = (
            ("cluster", "prod-eu-1"),
            ("container", "app"),
            ("namespace", f"team-{i % 5}"),
            ("pod", f"app-{i % 20}"),
        )
        line = "ts=2024-05-01T12:00:00.123Z " + " ".join(
            rng.choice(words) for _ in range(rng.choice((4, 10, 30, 60)))
        )
        streams.setdefault(labels, []).append((1_714_564_800_000_000_000 + i * 1_234, line, ()))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        encode_payload(streams.items())
        best = min(best, time.perf_counter() - t0)
    return n / best


if __name__ == "__main__":
    print(f"encode_payload: {_bench():,.0f} entries/s (one 5,000-entry page, protobuf + snappy, best of 20)")
