"""Replace a file atomically and durably: a crash leaves the old file or the new one, never half of one.

The steps, each for a reason:
1. write a temporary file in the same directory (`.<name>.tmp`: hidden, so directory readers such as
   pyarrow skip it, and on the same filesystem, since rename(2) is atomic only within one);
2. fsync it, so the new bytes are on disk before any name points at them;
3. rename it over the target (POSIX rename(2) replaces atomically: readers see old or new);
4. fsync the directory. The rename is durable only once the directory entry is: without this a power
   cut after step 3 can bring back the old name (or none), on ext4 and XFS alike. It costs one more
   fsync per replace, which every caller here can afford (a cursor every few seconds, one Parquet file
   per send).

With `sync=False` (the queue's `fsync: never`) steps 2 and 4 are skipped: still atomic against a crash
of the process, no longer against a crash of the machine.

One writer per target at a time: two writers of one path would share its temporary file. On failure
the temporary file is removed and the target is untouched; the error (an `OSError`, or whatever
`write` raised) is the caller's to translate.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["fsync_directory", "replace_bytes", "replace_with", "temp_path"]


def temp_path(path: Path) -> Path:
    """Where `path`'s next content is written before the rename (a crash may leave it: it is reused)."""
    return path.with_name(f".{path.name}.tmp")


def replace_with(path: Path, write: Callable[[BinaryIO], None], *, sync: bool = True) -> None:
    """Replace `path` with what `write` writes to the (binary, buffered) file it is given."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_directory(path.parent)


def replace_bytes(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace `path` with `data`."""

    def write(f: BinaryIO) -> None:
        f.write(data)  # a buffered file's write() writes it all (or raises)

    replace_with(path, write, sync=sync)


def fsync_directory(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable (see step 4 above)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
