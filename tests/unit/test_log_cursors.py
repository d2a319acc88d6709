"""Durable per (cluster, selector) log cursors: atomic replace, corrupt files, the boundary entry key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from observe.errors import QueueError
from observe.sources.log_cursors import Cursor, CursorStore, entry_key


def test_cursor_round_trips_per_selector(tmp_path: Path) -> None:
    store = CursorStore(tmp_path, "alpha")
    a = Cursor(1_700_000_000_123_456_789, frozenset({"k1", "k2"}))
    store.save('{app="a"}', a)
    store.save('{app="b"}', Cursor(5))
    again = CursorStore(tmp_path, "alpha")
    assert again.load('{app="a"}') == a
    assert again.load('{app="b"}') == Cursor(5)
    assert again.load('{app="c"}') is None
    assert CursorStore(tmp_path, "beta").load('{app="a"}') is None  # per cluster
    assert sorted(p.suffix for p in (tmp_path / "alpha").iterdir()) == [".json", ".json"]  # no .tmp left


def test_cursor_file_names_its_selector_for_people(tmp_path: Path) -> None:
    store = CursorStore(tmp_path, "alpha")
    store.save('{app="a"} |= "x"', Cursor(7))
    doc = json.loads(store.path('{app="a"} |= "x"').read_text())
    assert doc["selector"] == '{app="a"} |= "x"' and doc["start_ns"] == "7" and doc["cluster"] == "alpha"


def test_corrupt_cursor_is_moved_aside_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CursorStore(tmp_path, "alpha")
    store.path('{a="1"}').write_text("{not json")
    assert store.load('{a="1"}') is None
    assert "log cursor unreadable" in caplog.text
    assert store.path('{a="1"}').with_suffix(".corrupt").exists()


def test_a_cursor_of_another_selector_is_not_taken(tmp_path: Path) -> None:
    store = CursorStore(tmp_path, "alpha")
    store.save('{a="1"}', Cursor(9))
    store.path('{a="2"}').write_bytes(store.path('{a="1"}').read_bytes())  # a copied file
    assert store.load('{a="2"}') is None


def test_unwritable_directory_is_a_queue_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(QueueError, match="log cursors"):
        CursorStore(blocker, "alpha")


def test_advancing_within_the_same_nanosecond_keeps_what_was_seen() -> None:
    c = Cursor(10, frozenset({"a"}))
    assert c.advanced(10, ["b"]) == Cursor(10, frozenset({"a", "b"}))
    assert c.advanced(11, ["c"]) == Cursor(11, frozenset({"c"}))


def test_entry_key_tells_streams_metadata_and_lines_apart() -> None:
    base = entry_key((("app", "a"),), 1, "same line", ())
    assert base == entry_key((("app", "a"),), 1, "same line", ())
    assert base != entry_key((("app", "b"),), 1, "same line", ())  # identical line, other stream
    assert base != entry_key((("app", "a"),), 2, "same line", ())
    assert base != entry_key((("app", "a"),), 1, "same line", (("trace", "t"),))
    assert base != entry_key((("app", "a"),), 1, "same line ", ())
    # no ambiguity from moving characters between label value and line
    assert entry_key((("a", "x"),), 1, "y", ()) != entry_key((("a", ""),), 1, "xy", ())
