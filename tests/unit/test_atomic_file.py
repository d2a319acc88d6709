"""observe.atomic_file: the one temporary-file + fsync + rename + directory-fsync writer."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

import pytest

from observe import atomic_file
from observe.atomic_file import replace_bytes, replace_with, temp_path


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync was called on, "file" or "dir", in order."""
    calls: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(atomic_file.os, "fsync", record)
    return calls


def test_replace_writes_fsyncs_the_file_then_the_directory(tmp_path: Path, fsyncs: list[str]) -> None:
    target = tmp_path / "cursor"
    replace_bytes(target, b"old")
    replace_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert fsyncs == ["file", "dir", "file", "dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cursor"]  # no temporary file left


def test_without_sync_nothing_is_fsynced_but_the_replace_is_still_atomic(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    target = tmp_path / "cursor"
    replace_bytes(target, b"x" * 10_000, sync=False)
    assert target.read_bytes() == b"x" * 10_000 and fsyncs == []


def test_a_crash_before_the_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, fsyncs: list[str]
) -> None:
    target = tmp_path / "part.parquet"
    replace_bytes(target, b"the old content")
    fsyncs.clear()

    def half_then_disk_full(f: BinaryIO) -> None:
        f.write(b"half of the new")
        f.flush()
        assert temp_path(target).read_bytes() == b"half of the new"  # written beside the target, hidden
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_with(target, half_then_disk_full)
    assert target.read_bytes() == b"the old content"
    assert not temp_path(target).exists()
    assert fsyncs == []  # nothing was renamed, so there was nothing to make durable


def test_a_leftover_temporary_from_a_crash_is_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    temp_path(target).write_bytes(b"garbage from a killed process, longer than the new content")
    replace_bytes(target, b"{}")
    assert target.read_bytes() == b"{}" and not temp_path(target).exists()


def test_the_temporary_is_hidden_in_the_same_directory(tmp_path: Path) -> None:
    assert temp_path(tmp_path / "a" / "x.parquet") == tmp_path / "a" / ".x.parquet.tmp"
