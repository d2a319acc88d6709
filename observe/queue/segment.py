"""Segment files of the durable queue: the record frame, appending, and scanning back after a crash.

One record per frame, frames back to back in append-only files named `<first_seq:020d>.seg`
(all integers little-endian):

    [u32 length][u32 crc32(header + payload)][header: seq u64, group u64, count u32, created f64][payload]

`length` counts header + payload. The CRC covers the header too, so no field of a torn or flipped
record is trusted. The shape is the classic write-ahead log: LevelDB's log format
(https://github.com/google/leveldb/blob/main/doc/log_format.md) and Prometheus' WAL
(https://github.com/prometheus/prometheus/blob/main/tsdb/docs/format/wal.md), minus their 32 KiB
blocks: a reader here only ever needs to resynchronise at a segment boundary.

Functions here raise plain `OSError`; `durable.py` translates them into `QueueError` at one place.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal, NamedTuple

FRAME: Final = struct.Struct("<II")  # length, crc32
HEADER: Final = struct.Struct("<QQId")  # seq, group, count, created
OVERHEAD: Final = FRAME.size + HEADER.size  # 36 bytes per record
SUFFIX: Final = ".seg"
# A frame claiming more than this is garbage, not a record: no batch is anywhere near 1 GiB.
MAX_FRAME: Final = 2**30


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The first seq a segment file name stands for, or None if it is not a segment file."""
    stem = name.removesuffix(SUFFIX)
    if stem == name or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


def encode(seq: int, group: int, count: int, created: float, payload: bytes) -> bytes:
    """The frame prefix (everything but the payload): the caller joins prefix and payload once per batch."""
    header = HEADER.pack(seq, group, count, created)
    return FRAME.pack(len(header) + len(payload), zlib.crc32(payload, zlib.crc32(header))) + header


def decode(frame: bytes) -> tuple[int, int, int, float, bytes] | None:
    """(seq, group, count, created, payload) of one whole frame, or None if it fails its checksum."""
    if len(frame) < OVERHEAD:
        return None
    length, crc = FRAME.unpack_from(frame)
    if length != len(frame) - FRAME.size or zlib.crc32(memoryview(frame)[FRAME.size :]) != crc:
        return None
    seq, group, count, created = HEADER.unpack_from(frame, FRAME.size)
    return seq, group, count, created, frame[OVERHEAD:]


@dataclass(frozen=True, slots=True)
class Scanned:
    """One intact record found by `scan`; `length` is the whole frame's."""

    seq: int
    offset: int
    length: int
    group: int
    count: int
    created: float


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: list[Scanned]
    good_end: int  # offset just past the last intact record
    size: int  # the file's size
    problem: Literal["torn", "corrupt"] | None = None
    # For "corrupt": the bad record's `count` if its header could be read, else 0. Unverified (the CRC
    # failed), so only used for accounting, bounded by u32.
    lost_count: int = 0
    detail: str = ""


def scan(path: Path, *, min_seq: int) -> ScanResult:
    """Read every record of a segment, verifying each checksum, until the first bad one.

    A bad record is "torn" when it is the last thing in the file (a write cut short by a crash, or the
    zeros a filesystem leaves after power loss): nothing after it was ever acknowledged as written.
    Anything else is "corrupt": a damaged record with data after it, which cannot be skipped because its
    length is untrusted; the caller drops the rest of the segment.
    """
    records: list[Scanned] = []
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        last_seq = min_seq - 1
        while offset < size:
            found = _next_record(f, offset, size, last_seq)
            if isinstance(found, _Bad):
                return ScanResult(records, offset, size, found.kind, found.lost, found.detail)
            records.append(found)
            last_seq = found.seq
            offset += found.length
    return ScanResult(records, offset, size)


class _Bad(NamedTuple):
    kind: Literal["torn", "corrupt"]
    detail: str
    lost: int = 0


def _next_record(f: BinaryIO, offset: int, size: int, last_seq: int) -> Scanned | _Bad:
    """The intact record at `offset` (the file position), or why there is none."""
    remaining = size - offset
    prefix = f.read(FRAME.size)
    if len(prefix) < FRAME.size:
        return _Bad("torn", f"{remaining} trailing bytes, shorter than a frame header")
    length, crc = FRAME.unpack(prefix)
    if length < HEADER.size or length > MAX_FRAME:
        rest = prefix + f.read(remaining - FRAME.size)
        if not rest.strip(b"\x00"):
            return _Bad("torn", f"{remaining} zero bytes at the end")
        return _Bad("corrupt", f"impossible frame length {length} at offset {offset}")
    if FRAME.size + length > remaining:
        return _Bad("torn", f"frame of {length} bytes at offset {offset} cut short at {remaining} bytes")
    body = f.read(length)
    if len(body) < length:  # the file shrank under us
        return _Bad("torn", f"frame at offset {offset} cut short while reading")
    seq, group, count, created = HEADER.unpack_from(body)
    if zlib.crc32(body) != crc:
        kind: Literal["torn", "corrupt"] = "torn" if FRAME.size + length == remaining else "corrupt"
        return _Bad(kind, f"checksum mismatch for the frame at offset {offset}", count)
    if seq <= last_seq:
        return _Bad("corrupt", f"seq {seq} at offset {offset} does not follow {last_seq}", count)
    return Scanned(seq, offset, FRAME.size + length, group, count, created)


class Segment:
    """One segment file: appended to while it is the newest, read by offset, deleted when fully acked.

    The file descriptor is opened lazily and kept until `close()`/`delete()`; only the few oldest
    segments are ever read, so few stay open.
    """

    __slots__ = ("_fd", "_writable", "first_seq", "last_seq", "path", "size")

    def __init__(self, path: Path, first_seq: int, *, size: int = 0, last_seq: int | None = None) -> None:
        self.path = path
        self.first_seq = first_seq
        self.size = size
        self.last_seq = first_seq - 1 if last_seq is None else last_seq  # highest seq written here
        self._fd: int | None = None
        self._writable = False

    @classmethod
    def create(cls, directory: Path, first_seq: int, *, sync: bool) -> Segment:
        path = directory / segment_name(first_seq)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        segment = cls(path, first_seq)
        segment._fd, segment._writable = fd, True
        if sync:  # make the new name itself durable, not only its future contents
            sync_directory(directory)
        return segment

    def append(self, data: bytes, *, sync: bool) -> None:
        """Write `data` at the end with one write() (looping only on a short write); undo a partial write."""
        fd = self._writable_fd()
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
            if sync:
                os.fdatasync(fd)
        except OSError:
            # Never leave half a batch behind a failed write: the next append would follow it. If even
            # this fails, the original error is the one to report; open() truncates a torn tail anyway.
            if written:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self.size)
            raise
        self.size += len(data)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._readable_fd(), length, offset)

    def truncate(self, size: int, *, sync: bool) -> None:
        fd = self._writable_fd()
        os.ftruncate(fd, size)
        if sync:
            os.fsync(fd)
        self.size = size

    def sync(self) -> None:
        os.fdatasync(self._writable_fd())

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def _writable_fd(self) -> int:
        if self._fd is None or not self._writable:
            self.close()
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            self._writable = True
        return self._fd

    def _readable_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
