"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.loki_api_fake import LokiThread


@pytest.fixture
def loop() -> Iterator[LokiThread]:
    """The thread serving this test's fake Lokis (tests/loki_api_fake.py)."""
    thread = LokiThread()
    yield thread
    thread.close()
