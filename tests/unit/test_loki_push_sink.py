"""LokiPushSink: one POST, and each reply of the fake Loki (tests/loki_api_fake.py) classified."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from observe.config import LokiPushConfig
from observe.errors import PermanentError, RetryableError
from observe.http import new_session
from observe.protocol.loki_push import encode_payload
from observe.sinks.loki_push import AUTH_RETRY_FLOOR, LokiPushSink
from tests.loki_api_fake import FakeLoki, Reply

NOW = time.time_ns()
STREAMS = [
    (
        (("app", "api"), ("cluster", "alpha")),
        [(NOW, "hello", (("detected_level", "info"),)), (NOW + 1, "two", ())],
    )
]


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    fake = await FakeLoki(auth_enabled=True).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def sink(loki: FakeLoki) -> AsyncIterator[LokiPushSink]:
    cfg = LokiPushConfig(url=loki.push_url, tenant="fleet")
    session = new_session(cfg)
    yield LokiPushSink(cfg, session)
    await session.close()


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_push_to_fake_loki_lands_with_tenant_and_metadata(
    loki: FakeLoki, sink: LokiPushSink, encoding: str
) -> None:
    await sink.send(encode_payload(STREAMS, encoding))  # type: ignore[arg-type]
    assert loki.entries("fleet") == [
        (NOW, (("app", "api"), ("cluster", "alpha")), "hello", (("detected_level", "info"),)),
        (NOW + 1, (("app", "api"), ("cluster", "alpha")), "two", ()),
    ]


async def test_fake_loki_429_is_retryable_with_retry_after_and_counted(loki: FakeLoki) -> None:
    cfg = LokiPushConfig(url=loki.push_url, tenant="fleet")
    seen: list[int] = []
    async with new_session(cfg) as session:
        sink = LokiPushSink(cfg, session, on_throttled=lambda: seen.append(1))
        loki.push_script.append(
            Reply(429, "Ingestion rate limit exceeded for user fleet", headers={"Retry-After": "7"})
        )
        with pytest.raises(RetryableError) as info:
            await sink.send(encode_payload(STREAMS))
    assert (info.value.reason, info.value.status, info.value.retry_after) == ("throttled", 429, 7.0)
    assert "Ingestion rate limit exceeded" in str(info.value)
    assert seen == [1]


async def test_fake_loki_5xx_html_is_retryable_and_readable(loki: FakeLoki, sink: LokiPushSink) -> None:
    loki.push_script.append(Reply(502, "<html>\n<body>Bad   Gateway</body></html>", "text/html"))
    with pytest.raises(RetryableError, match="HTTP 502: <html> <body>Bad Gateway") as info:
        await sink.send(encode_payload(STREAMS))
    assert info.value.reason == "http_5xx"


async def test_fake_loki_400_is_permanent_with_lokis_own_message(loki: FakeLoki, sink: LokiPushSink) -> None:
    old = [((("app", "api"),), [(NOW - 8 * 86400 * 10**9, "ancient", ())])]
    with pytest.raises(PermanentError, match="has timestamp too old") as info:
        await sink.send(encode_payload(old))
    assert (info.value.reason, info.value.status) == ("http_4xx", 400)


async def test_fake_loki_401_no_org_id_is_retried_slowly_not_dropped(loki: FakeLoki) -> None:
    cfg = LokiPushConfig(url=loki.push_url)  # no tenant, and the fake has auth_enabled
    async with new_session(cfg) as session:
        with pytest.raises(RetryableError, match="HTTP 401: no org id") as info:
            await LokiPushSink(cfg, session).send(encode_payload(STREAMS))
    assert info.value.reason == "auth" and info.value.retry_after == AUTH_RETRY_FLOOR
    assert loki.entries("fleet") == []


async def test_unreachable_loki_is_retryable() -> None:
    gone = await FakeLoki().start()
    await gone.stop()
    cfg = LokiPushConfig(url=gone.push_url, timeout=2)
    async with new_session(cfg) as session:
        with pytest.raises(RetryableError) as info:
            await LokiPushSink(cfg, session).send(encode_payload(STREAMS))
    assert info.value.reason == "unreachable"


async def test_a_record_that_is_not_a_push_payload_is_permanent(sink: LokiPushSink) -> None:
    with pytest.raises(PermanentError, match="not a Loki push payload"):
        await sink.send(b"\x09whatever")


async def test_sink_satisfies_the_sink_protocol(sink: LokiPushSink) -> None:
    from observe.sinks import Sink

    s: Sink = sink
    assert s.name == "loki_push"
    await s.close()
    assert isinstance(sink._session, aiohttp.ClientSession)
