"""LokiSource's query_range tailing against the fake Loki (tests/loki_api_fake.py): the pagination rule's
edge cases (many entries in one nanosecond across a page boundary, identical lines of different streams),
page-size negotiation, and every bad reply a cluster's Loki can give."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from observe.config import LokiSourceConfig
from observe.errors import ConfigError, SourceError
from observe.http import new_session
from observe.sources.log_cursors import Cursor
from observe.sources.loki import LogEntry, LokiSource, split_selector
from tests.loki_api_fake import FakeLoki, Reply

NS = 1_000_000_000
T0 = (int(time.time()) - 3600) * NS
END = T0 + 3000 * NS
MALFORMED = '{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[[1]]}]}}'


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    fake = await FakeLoki().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = new_session(LokiSourceConfig(url="http://127.0.0.1:1", selectors=['{a="b"}']))
    yield s
    await s.close()


def _source(
    loki: FakeLoki,
    session: aiohttp.ClientSession,
    *,
    page_limit: int = 5000,
    tenant: str | None = None,
    selector: str = '{job="app"}',
) -> LokiSource:
    cfg = LokiSourceConfig(url=loki.url, selectors=[selector], tenant=tenant, timeout=10)
    return LokiSource("alpha", cfg, session, page_limit=page_limit)


async def _drain(source: LokiSource, cursor: Cursor, end: int = END, selector: str = '{job="app"}') -> tuple[
    list[LogEntry], Cursor, int, int
]:  # fmt: skip
    entries: list[LogEntry] = []
    pages = gaps = 0
    async for page in source.pages(selector, cursor, end):
        entries.extend(page.entries)
        cursor = page.cursor
        pages += 1
        gaps += page.gaps
    return entries, cursor, pages, gaps


def _stored(
    loki: FakeLoki,
) -> list[tuple[int, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...]]]:
    return [e for e in loki.entries() if T0 <= e[0] < END]


async def test_fake_loki_pages_deliver_every_entry_once(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    for pod in range(3):
        # several entries per nanosecond, so page boundaries fall inside nanoseconds
        loki.add(
            {"job": "app", "pod": str(pod)},
            [(T0 + (i // 3) * 1000, f"pod{pod} line {i}") for i in range(2000)],
        )
    loki.add({"job": "other"}, [(T0, "not selected")])
    got, cursor, pages, _ = await _drain(_source(loki, session, page_limit=97), Cursor(T0))
    assert sorted(got) == [e for e in _stored(loki) if e[1] != (("job", "other"),)]
    assert len(got) == 6000 and pages > 6000 // 97
    assert cursor == Cursor(END)


async def test_fake_loki_10000_entries_in_one_nanosecond_across_a_page_boundary(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    ns = T0 + 500
    for pod in range(4):  # 4 streams x 2,500 entries, all at one nanosecond, after 3,000 earlier entries
        loki.add({"job": "app", "pod": str(pod)}, [(T0 + i, f"early {pod} {i}") for i in range(750)])
        loki.add({"job": "app", "pod": str(pod)}, [(ns, f"burst {i}") for i in range(2500)])
        loki.add({"job": "app", "pod": str(pod)}, [(ns + 1 + i, f"late {pod} {i}") for i in range(10)])
    got, _, _, gaps = await _drain(_source(loki, session), Cursor(T0))
    assert len(got) == len(set(got)) == 3000 + 10_000 + 40
    assert sorted(got) == _stored(loki)
    assert gaps == 0
    assert loki.stats["series"] == 1  # forward and backward pages did not meet: read stream by stream


async def test_fake_loki_one_stream_with_more_than_a_page_in_one_nanosecond(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "app"}, [(T0 + 7, f"same ns {i}") for i in range(7000)] + [(T0 + 8, "after")])
    got, _, _, gaps = await _drain(_source(loki, session), Cursor(T0))
    assert sorted(got) == _stored(loki) and len(got) == 7001 and gaps == 0  # forward + backward met


async def test_fake_loki_more_than_two_pages_of_one_stream_in_one_nanosecond_is_counted_not_hidden(
    loki: FakeLoki, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    loki.add({"job": "app"}, [(T0 + 7, f"same ns {i}") for i in range(400)] + [(T0 + 8, "after")])
    loki.max_entries_limit_per_query = 100  # so the one-nanosecond read cannot use a bigger page either
    got, _, _, gaps = await _drain(_source(loki, session, page_limit=100), Cursor(T0))
    assert gaps == 1
    assert (T0 + 8, (("job", "app"),), "after", ()) in got  # the read moved on past the nanosecond
    assert len(got) == len(set(got)) == 201  # forward 100 + backward 100 + "after"
    assert "more entries in one nanosecond of one stream than two pages hold" in caplog.text


async def test_fake_loki_identical_lines_of_different_streams_at_one_nanosecond(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    # The first page (limit 3) ends inside the nanosecond: it holds 'same' of stream a but not of b.
    loki.add({"job": "app", "s": "a"}, [(T0, "x"), (T0 + 1, "same")])
    loki.add({"job": "app", "s": "b"}, [(T0 + 1, "same"), (T0 + 2, "y")])
    loki.add({"job": "app", "s": "c"}, [(T0 + 1, "same")])
    got, _, pages, _ = await _drain(_source(loki, session, page_limit=3), Cursor(T0))
    assert sorted(got) == _stored(loki)
    assert sorted(e[1] for e in got if e[2] == "same") == [
        (("job", "app"), ("s", "a")), (("job", "app"), ("s", "b")), (("job", "app"), ("s", "c")),
    ]  # fmt: skip
    assert pages >= 2


async def test_fake_loki_resuming_from_a_saved_cursor_neither_loses_nor_repeats(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "app"}, [(T0 + i // 4, f"l{i}") for i in range(1000)])
    source = _source(loki, session, page_limit=50)
    got: list[LogEntry] = []
    cursor = Cursor(T0)
    while True:  # one page per "run", as if the collector were killed after every page
        pages = source.pages('{job="app"}', cursor, END)
        page = await anext(pages, None)
        await pages.aclose()
        if page is None:
            break
        got.extend(page.entries)
        cursor = page.cursor
    assert sorted(got) == _stored(loki) and len(got) == 1000


async def test_fake_loki_structured_metadata_stays_metadata(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.add({"job": "app"}, [(T0, "GET /", {"detected_level": "info", "trace_id": "t"}), (T0 + 1, "plain")])
    got, _, _, _ = await _drain(_source(loki, session), Cursor(T0))
    assert got == [
        (T0, (("job", "app"),), "GET /", (("detected_level", "info"), ("trace_id", "t"))),
        (T0 + 1, (("job", "app"),), "plain", ()),
    ]
    assert loki.query_log  # and the header asking for it was sent (the fake only categorizes when asked)


async def test_fake_loki_cap_400_lowers_the_page_size_instead_of_looping(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.max_entries_limit_per_query = 1000
    loki.add({"job": "app"}, [(T0 + i, f"l{i}") for i in range(2500)])
    source = _source(loki, session, page_limit=5000)
    got, _, _, _ = await _drain(source, Cursor(T0))
    assert len(got) == 2500 and source.limit == 1000
    assert [q["limit"] for q in loki.query_log][:2] == ["5000", "1000"]
    assert len(loki.query_log) == 1 + 3  # one refused request, then three pages


async def test_fake_loki_shorter_max_query_length_narrows_the_window(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.max_query_length = 600.0  # 10 minutes; our first window is 24h
    loki.add({"job": "app"}, [(T0 + i * 60 * NS, f"minute {i}") for i in range(45)])
    source = _source(loki, session)
    got, cursor, _, _ = await _drain(source, Cursor(T0))
    assert [e[2] for e in got] == [f"minute {i}" for i in range(45)]
    assert source.window <= 600 * NS and cursor == Cursor(END)


async def test_fake_loki_bad_selector_is_a_config_error_naming_it(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    source = _source(loki, session, selector='{job=~".*"}')
    with pytest.raises(
        ConfigError, match=r"""cluster alpha: loki selector '\{job=~".\*"\}' rejected by Loki \(HTTP 400\)"""
    ):
        await _drain(source, Cursor(T0), selector='{job=~".*"}')


@pytest.mark.parametrize(("reply", "reason", "text"), [
    (Reply(429, "too many outstanding requests\n"), "throttled", "HTTP 429 (throttled): too many"),
    (Reply(500, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"), "http_5xx",
     "HTTP 500: <html><body><h1>502 Bad Gateway"),
    (Reply(200, "<html>login page</html>", "text/html"), "bad_response", "is not JSON (text/html)"),
    (Reply(200, '{"status":"success","data":{"resultType":"matrix","result":[]}}', "application/json"),
     "bad_response", "not a log query result"),
    (Reply(200, MALFORMED, "application/json"), "bad_response", "malformed stream"),
])  # fmt: skip
async def test_fake_loki_bad_replies_are_source_errors_with_a_reason(
    loki: FakeLoki, session: aiohttp.ClientSession, reply: Reply, reason: str, text: str
) -> None:
    loki.query_script.append(reply)
    with pytest.raises(SourceError) as info:
        await _drain(_source(loki, session), Cursor(T0))
    assert info.value.reason == reason
    assert text in str(info.value)


@pytest.mark.parametrize("body", [
    '{"status":"success","data":{"resultType":"streams","result":[{"stream":{"job":"app"},'
    '"values":[["%d","half \\ud800 a pair"]]}],"stats":{"x":NaN}}}',  # a lone surrogate's escape, NaN
    '\ufeff{"status":"success","data":{"resultType":"streams","result":[{"stream":{"job":"app"},'
    '"values":[["%d","half \\ud800 a pair"]]}]}}',  # a BOM
])  # fmt: skip
async def test_replies_the_fast_decoder_refuses_read_as_the_standard_librarys_json(
    loki: FakeLoki, session: aiohttp.ClientSession, body: str
) -> None:
    loki.query_script.append(Reply(200, (body % T0).encode(), "application/json"))
    entries, _ = await _source(loki, session).query_range('{job="app"}', T0, END, 10, "forward")
    assert entries == [(T0, (("job", "app"),), "half \ud800 a pair", ())]


async def test_fake_loki_missing_tenant_is_an_auth_error_with_a_hint(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    loki.auth_enabled = True
    with pytest.raises(SourceError, match="no org id") as info:
        await _drain(_source(loki, session), Cursor(T0))
    assert info.value.reason == "auth" and "set clusters[].loki.tenant" in str(info.value)
    loki.add({"job": "app"}, [(T0, "hello")], tenant="team-a")
    got, _, _, _ = await _drain(_source(loki, session, tenant="team-a"), Cursor(T0))
    assert [e[2] for e in got] == ["hello"]


async def test_unreachable_loki_is_a_source_error(session: aiohttp.ClientSession) -> None:
    dead = FakeLoki()
    await dead.start()
    await dead.stop()  # a port nobody listens on any more
    with pytest.raises(SourceError) as info:
        await _drain(_source(dead, session), Cursor(T0))
    assert info.value.reason == "unreachable"


async def test_fake_loki_probe_reports_per_selector(loki: FakeLoki, session: aiohttp.ClientSession) -> None:
    now = time.time()
    loki.add({"job": "app"}, [(int((now - 10) * NS), "recent")])
    cfg = LokiSourceConfig(url=loki.url, selectors=['{job="app"}', '{job=~".*"}'])
    probes = await LokiSource("alpha", cfg, session, page_limit=100).probe(now=now)
    assert probes[0].ok and probes[0].entries_last_minute == 1
    assert not probes[1].ok and "rejected by Loki" in (probes[1].error or "")


@pytest.mark.parametrize(("selector", "stream", "pipeline"), [
    ('{app="a"}', '{app="a"}', ""),
    ('{app="}{"} |= "x}"', '{app="}{"}', '|= "x}"'),
    ('{app=`a}`, b="\\"}"} != "y"', '{app=`a}`, b="\\"}"}', '!= "y"'),
])  # fmt: skip
def test_split_selector_minds_quoted_braces(selector: str, stream: str, pipeline: str) -> None:
    assert split_selector(selector) == (stream, pipeline)


async def test_a_413_status_is_too_large_but_does_not_shrink_the_page(
    loki: FakeLoki, session: aiohttp.ClientSession
) -> None:
    # Only a body over MAX_PAGE_BYTES shrinks with the page; a proxy's 413 to a GET would just come back.
    loki.query_script.append(Reply(413, "Request Entity Too Large\n"))
    source = _source(loki, session, page_limit=5000)
    with pytest.raises(SourceError, match=r"HTTP 413: Request Entity Too Large") as info:
        await _drain(source, Cursor(T0))
    assert info.value.reason == "too_large" and source.limit == 5000 and len(loki.query_log) <= 1
