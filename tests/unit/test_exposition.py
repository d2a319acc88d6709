"""The text exposition format 0.0.4 parser: tables of lines, and a round trip through prometheus_client."""

from __future__ import annotations

import math
import re
import struct
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from observe.protocol import exposition
from observe.protocol.exposition import (
    ExpositionError,
    iter_lines,
    parse_series,
    parse_text,
    parse_timestamp,
    parse_value,
    split_line,
)


def test_public_names() -> None:
    assert sorted(exposition.__all__) == [
        "ExpositionError",
        "iter_lines",
        "parse_series",
        "parse_text",
        "parse_timestamp",
        "parse_value",
        "split_line",
    ]
    assert issubclass(ExpositionError, ValueError)


# -- split_line -------------------------------------------------------------------------------------

SPLIT_CASES = [
    ("up 1", ("up", "1", None)),
    ("up 1 1700000000000", ("up", "1", "1700000000000")),
    ('up{job="a"} 1', ('up{job="a"}', "1", None)),
    ('up{job="a",instance="h:9"} 0 1700000000000', ('up{job="a",instance="h:9"}', "0", "1700000000000")),
    ('up{job="a b"} 1', ('up{job="a b"}', "1", None)),  # a space inside a value
    ('up{job="} 1 2"} 3 4', ('up{job="} 1 2"}', "3", "4")),  # `}` and spaces inside a value
    ('up{job="x\\"} y"} 1', ('up{job="x\\"} y"}', "1", None)),  # an escaped quote before a `}`
    ('up{job="a"}\t1\t123', ('up{job="a"}', "1", "123")),  # tabs: the slow path
    ('up{job="a\tb"} 1', ('up{job="a\tb"}', "1", None)),  # a raw tab inside a value
    ("up  1   123  ", ("up", "1", "123")),  # extra blanks
    ("  up 1", ("up", "1", None)),  # leading blanks
    ('up {job="a"} 1', ('up {job="a"}', "1", None)),  # a blank before the brace, as promlex.l allows
    ('up{ job = "a" , } 1', ('up{ job = "a" , }', "1", None)),
    ('up{job="a"} 1\r', ('up{job="a"}', "1", None)),  # CRLF
    ('x_bucket{le="+Inf"} 5', ('x_bucket{le="+Inf"}', "5", None)),
    ('x{quantile="0.99"} 0.5', ('x{quantile="0.99"}', "0.5", None)),
    ("up -Inf -5", ("up", "-Inf", "-5")),
    ("", None),
    ("\r", None),
    ("   \t ", None),
    ("# HELP up Whether the target is up.", None),
    ("# TYPE up gauge", None),
    ("#", None),
    ("  # indented comment", None),
]


@pytest.mark.parametrize(("line", "expected"), SPLIT_CASES, ids=[repr(c[0])[:40] for c in SPLIT_CASES])
def test_split_line(line: str, expected: tuple[str, str, str | None] | None) -> None:
    assert split_line(line) == expected


def test_split_line_series_text_is_the_exact_prefix_on_the_fast_path() -> None:
    # The caller caches parse_series() under this text: it must not be rebuilt or normalised.
    line = 'http_requests_total{code="200",path="/a b/{c}"} 1027 1395066363000'
    parts = split_line(line)
    assert parts is not None
    assert line.startswith(parts[0])
    assert parts[0] == 'http_requests_total{code="200",path="/a b/{c}"}'


# -- parse_series -----------------------------------------------------------------------------------

SERIES_CASES = [
    ("up", ("up", [])),
    ("up{}", ("up", [])),
    ("job:rate5m:sum", ("job:rate5m:sum", [])),
    ("_private", ("_private", [])),
    ('up{job="a",instance="h:9090"}', ("up", [("job", "a"), ("instance", "h:9090")])),
    ('up{job="a",}', ("up", [("job", "a")])),  # a trailing comma, as Prometheus allows
    ('up { job = "a" ,\tb="c" , }', ("up", [("job", "a"), ("b", "c")])),
    ('x{a="back\\\\slash"}', ("x", [("a", "back\\slash")])),
    ('x{a="say \\"hi\\""}', ("x", [("a", 'say "hi"')])),
    ('x{a="two\\nlines"}', ("x", [("a", "two\nlines")])),
    ('x{a="\\\\n"}', ("x", [("a", "\\n")])),  # an escaped backslash, then a plain n
    ('x{a="tab\\t"}', ("x", [("a", "tab\\t")])),  # unknown escapes stay as they are (promparse.go)
    ('x{a="}{,= "}', ("x", [("a", "}{,= ")])),
    ('x{a="ünï€ 😀"}', ("x", [("a", "ünï€ 😀")])),
    ('x{a=""}', ("x", [("a", "")])),  # kept: the caller treats empty as absent
    ('x_bucket{le="+Inf"}', ("x_bucket", [("le", "+Inf")])),
    ('x{quantile="0.99"}', ("x", [("quantile", "0.99")])),
]


@pytest.mark.parametrize(("text", "expected"), SERIES_CASES, ids=[c[0][:40] for c in SERIES_CASES])
def test_parse_series(text: str, expected: tuple[str, list[tuple[str, str]]]) -> None:
    assert parse_series(text) == expected


# -- parse_value / parse_timestamp ------------------------------------------------------------------

VALUES = [
    ("1", 1.0),
    ("-0.5", -0.5),
    (".5", 0.5),
    ("5.", 5.0),
    ("+1.5", 1.5),
    ("1e3", 1000.0),
    ("1E-3", 0.001),
    ("1.5e+10", 1.5e10),
    ("-0", -0.0),
    ("1.7976931348623157e308", 1.7976931348623157e308),
    ("1e-400", 0.0),  # underflow is zero, as in Go
    ("Inf", math.inf),
    ("+Inf", math.inf),
    ("-Inf", -math.inf),
    ("inf", math.inf),
    ("Infinity", math.inf),
    ("-infinity", -math.inf),
]


@pytest.mark.parametrize(("text", "expected"), VALUES)
def test_parse_value(text: str, expected: float) -> None:
    assert parse_value(text) == expected


@pytest.mark.parametrize("text", ["NaN", "nan", "NAN"])
def test_parse_value_nan(text: str) -> None:
    assert math.isnan(parse_value(text))


BAD_VALUES = [
    ("", "invalid sample value ''"),
    ("abc", "invalid sample value 'abc'"),
    ("1_000", "invalid sample value '1_000'"),  # Prometheus refuses `_` (promparse.go)
    ("0x1p3", "invalid sample value '0x1p3'"),  # ... and hex floats
    ("0x10", "invalid sample value '0x10'"),
    ("+NaN", "NaN takes no sign"),  # Go's ParseFloat has no signed NaN
    ("-nan", "NaN takes no sign"),
    ("1e400", "out of the float64 range"),
    ("-1e400", "out of the float64 range"),
    (" 1", "invalid sample value ' 1'"),
    ("1\x0c", "invalid sample value"),
    ("\u0661", "invalid sample value"),  # an Arabic-Indic digit one: float() takes it, Go does not
    ("1.5.5", "invalid sample value '1.5.5'"),
    ("Infinit", "invalid sample value 'Infinit'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VALUES)
def test_parse_value_rejects(text: str, message: str) -> None:
    with pytest.raises(ExpositionError, match=re.escape(message)):
        parse_value(text)


TIMESTAMPS = [
    ("0", 0),
    ("1700000000000", 1_700_000_000_000),
    ("-1", -1),
    ("+5", 5),
    ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775808", -(2**63)),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS)
def test_parse_timestamp(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


BAD_TIMESTAMPS = [
    ("1.5", "invalid timestamp '1.5': want integer milliseconds"),
    ("1e3", "invalid timestamp '1e3'"),
    ("", "invalid timestamp ''"),
    ("1_000", "invalid timestamp '1_000'"),
    ("\u0661\u0662", "invalid timestamp"),  # Arabic-Indic digits: int() takes them, Go does not
    ("-", "invalid timestamp '-'"),
    ("9223372036854775808", "out of the int64 range"),
    ("-9223372036854775809", "out of the int64 range"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TIMESTAMPS)
def test_parse_timestamp_rejects(text: str, message: str) -> None:
    with pytest.raises(ExpositionError, match=re.escape(message)):
        parse_timestamp(text)


# -- malformed lines, through parse_text: each kind and its message ---------------------------------

BAD_LINES = [
    ("up", "missing value after 'up'"),
    ('up{a="b"}', "missing value after 'up{a=\"b\"}'"),
    ('up{a="b"}   ', "missing value after"),
    ("up abc", "invalid sample value 'abc'"),
    ("up 1 12.5", "invalid timestamp '12.5'"),
    ("up 1 2 3", "unexpected text after the timestamp: '3'"),
    ("1up 1", "invalid metric name '1up'"),
    ('{a="b"} 1', "invalid metric name ''"),
    ('up-down{a="b"} 1', "invalid metric name 'up-down'"),
    ('up{1a="b"} 1', "expected a label name in the labels of 'up', got '1a="),
    ('up{a-b="c"} 1', "expected '=' after label name 'a' in the labels of 'up'"),
    ('up{a "b"} 1', "expected '=' after label name 'a'"),
    ("up{a=b} 1", "expected a double-quoted value for label 'a'"),
    ('up{a="b} 1', "unterminated quoted value for label 'a'"),
    ('up{a="b\\"} 1', "unterminated quoted value for label 'a'"),
    ('up{a="b" 1', "missing '}' in the labels of 'up'"),
    ('up{a="b" c="d"} 1', "expected ',' or '}' after label 'a' in the labels of 'up', got 'c="),
    ('up{,a="b"} 1', "expected a label name in the labels of 'up', got ',a="),
    ('up{a="b",,} 1', "expected a label name in the labels of 'up', got ',}'"),
    ('up{a="b",a="c"} 1', "duplicate label name 'a' in 'up'"),
    ('up{__name__="x"} 1', "label '__name__' in the braces of 'up' duplicates the metric name"),
    ('up{a="b"}{c="d"} 1', "unexpected text after the labels of 'up': '{c=\"d\"}'"),
    ('up{a="b"}x 1', "invalid sample value 'x'"),
    ('up{a="b"} 1 {', "invalid timestamp '{'"),
    ("up -nan", "NaN takes no sign"),
    ("up 1e999", "out of the float64 range"),
    ("up 1 99999999999999999999", "out of the int64 range"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[c[0][:40] for c in BAD_LINES])
def test_malformed_line_is_skipped_with_its_message(line: str, message: str) -> None:
    text = f"ok_before 1\n{line}\nok_after 2\n"
    samples, errors = parse_text(text)
    assert [s[0] for s in samples] == ["ok_before", "ok_after"], "one bad line must not cost the others"
    assert len(errors) == 1
    lineno, got = errors[0]
    assert lineno == 2
    assert message in got, got


# -- whole bodies -----------------------------------------------------------------------------------


def test_iter_lines_numbers_and_skips() -> None:
    text = "# HELP up x\r\n# TYPE up gauge\r\nup 1\r\n\r\n  \r\n  # c\nup{a=\"b\"} 2\nlast 3"
    assert list(iter_lines(text)) == [(3, "up 1"), (7, 'up{a="b"} 2'), (8, "last 3")]


def test_lines_split_on_newline_only() -> None:
    # Label values may hold \x0b, \x0c, \x1c, \x85, \u2028 raw; str.splitlines() would cut the line there.
    odd = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g"
    samples, errors = parse_text(f'x{{v="{odd}"}} 1\n')
    assert errors == []
    assert samples == [("x", [("v", odd)], 1.0, None)]


def test_parse_text_histogram_summary_crlf_and_no_final_newline() -> None:
    text = (
        "# HELP rpc_duration_seconds A summary.\r\n"
        "# TYPE rpc_duration_seconds summary\r\n"
        'rpc_duration_seconds{quantile="0.01"} 3102 1395066363000\r\n'
        'rpc_duration_seconds{quantile="0.99"} NaN 1395066363000\r\n'
        "rpc_duration_seconds_sum 1.7560473e+07\r\n"
        "rpc_duration_seconds_count 2693\r\n"
        "# TYPE http_request_duration_seconds histogram\n"
        'http_request_duration_seconds_bucket{le="0.05"} 24054\n'
        'http_request_duration_seconds_bucket{le="+Inf"} 144320\n'
        "http_request_duration_seconds_sum 53423\n"
        "http_request_duration_seconds_count 144320"  # no final newline
    )
    samples, errors = parse_text(text)
    assert errors == []
    assert len(samples) == 8
    assert samples[0] == ("rpc_duration_seconds", [("quantile", "0.01")], 3102.0, 1395066363000)
    name, labels, value, ts = samples[1]
    assert (name, labels, ts) == ("rpc_duration_seconds", [("quantile", "0.99")], 1395066363000)
    assert math.isnan(value)
    assert samples[2] == ("rpc_duration_seconds_sum", [], 1.7560473e07, None)
    assert samples[5] == ("http_request_duration_seconds_bucket", [("le", "+Inf")], 144320.0, None)
    assert samples[7] == ("http_request_duration_seconds_count", [], 144320.0, None)


def test_very_long_label_value() -> None:
    big = "x" * (1 << 20) + ' "quoted" } {' + "y" * 1000
    escaped = big.replace('"', '\\"')
    start = time.perf_counter()
    samples, errors = parse_text(f'big{{job="a",v="{escaped}"}} 7 1000\nsmall 1\n')
    assert time.perf_counter() - start < 2.0
    assert errors == []
    assert samples == [("big", [("job", "a"), ("v", big)], 7.0, 1000), ("small", [], 1.0, None)]


def test_very_long_unterminated_value_fails_fast_with_a_short_message() -> None:
    start = time.perf_counter()
    _, errors = parse_text('big{v="' + "x" * (1 << 20) + "} 1\n")
    assert time.perf_counter() - start < 2.0
    assert len(errors) == 1
    assert "unterminated quoted value for label 'v'" in errors[0][1]
    assert len(errors[0][1]) < 300, "a 1 MB value must not end up in a log line"


# -- round trip against prometheus_client's writer and parser ---------------------------------------

TRICKY = [
    "plain",
    "with space",
    'a "quoted" word',
    "back\\slash",
    "two\nlines",
    "\\n literally",
    "brace } and { inside",
    "comma, equals= and # hash",
    "ünïcødé € 😀",
    "tab\there",
    "\u2028line separator",
    "",
    "trailing backslash \\",
]


class _TimestampedCollector(Collector):
    """Federation output carries timestamps; prometheus_client writes them for custom collectors."""

    def collect(self) -> list[GaugeMetricFamily]:
        g = GaugeMetricFamily("stamped", "Samples with timestamps.", labels=["k"])
        g.add_metric(["a"], 1.5, timestamp=1_700_000_000.123)
        g.add_metric(["neg"], -2.0, timestamp=-1.0)
        return [g]


def _registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    g = Gauge("tricky_gauge", "Gauge with tricky label values.", ["value", "job"], registry=reg)
    for i, v in enumerate(TRICKY):
        g.labels(v, f"job-{i}").set(i * 1.25 - 3)
    special = Gauge("special_values", "NaN and infinities.", ["kind"], registry=reg)
    specials = {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "tiny": 5e-324, "huge": 1.7e308}
    for kind, val in specials.items():
        special.labels(kind).set(val)
    c = Counter("requests", "A counter.", ["code"], registry=reg)
    c.labels("200").inc(1027)
    h = Histogram("latency_seconds", "A histogram.", ["path"], buckets=(0.1, 1.0), registry=reg)
    for x in (0.05, 0.5, 5.0):
        h.labels('/a "b"').observe(x)
    s = Summary("payload_bytes", "A summary.", registry=reg)
    s.observe(512)
    reg.register(_TimestampedCollector())
    return reg


def _key(name: str, labels: dict[str, str], value: float) -> tuple[str, tuple[tuple[str, str], ...], str]:
    return name, tuple(sorted(labels.items())), repr(value)  # repr: NaN == NaN


def test_round_trip_through_prometheus_client_writer() -> None:
    text = generate_latest(_registry()).decode("utf-8")
    samples, errors = parse_text(text)
    assert errors == []

    ours = {_key(n, dict(lbls), v) for n, lbls, v, _ in samples}
    tricky = {dict(lbls)["value"] for n, lbls, _, _ in samples if n == "tricky_gauge"}
    assert tricky == set(TRICKY), "every tricky value comes back unchanged"

    theirs: set[tuple[str, tuple[tuple[str, str], ...], str]] = set()
    their_ts: dict[tuple[str, tuple[tuple[str, str], ...]], float | None] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            theirs.add(_key(s.name, s.labels, s.value))
            stamp = None if s.timestamp is None else float(s.timestamp)
            their_ts[(s.name, tuple(sorted(s.labels.items())))] = stamp
    assert ours == theirs

    # Timestamps: ours are integer ms; prometheus_client's parser gives float seconds.
    for n, lbls, _, ts in samples:
        expected = their_ts[(n, tuple(sorted(lbls)))]
        assert ts == (None if expected is None else round(expected * 1000))
    stamped = {dict(lbls)["k"]: ts for n, lbls, _, ts in samples if n == "stamped"}
    assert stamped == {"a": 1_700_000_000_123, "neg": -1000}


def test_histogram_and_summary_series_from_prometheus_client() -> None:
    samples, _ = parse_text(generate_latest(_registry()).decode("utf-8"))
    buckets = {dict(lbls)["le"]: v for n, lbls, v, _ in samples if n == "latency_seconds_bucket"}
    assert buckets == {"0.1": 1.0, "1.0": 2.0, "+Inf": 3.0}
    assert ("payload_bytes_sum", [], 512.0, None) in samples
    assert ("payload_bytes_count", [], 1.0, None) in samples


# -- what a Prometheus 2.42 scrape refuses, checked against the real server -------------------------
# (tests/integration/test_exposition_differential_prometheus.py: each row failed a real scrape)

MORE_BAD_VALUES = [
    "\uff11",  # fullwidth one: float() takes it
    "1\uff10",
    "\u0967.5",  # Devanagari one
    "1\x0b",  # whitespace float() strips
    "\x1c1",
    "1\x00",
    "0X1P3",
    "0x1.8p1",
    "1.7976931348623159e308",  # rounds past the largest float64: Go's ErrRange
    ".",
    "1e",
    "e5",
    "1e+",
    "+",
    "++1",
    "1}",
    "infinityy",
    "NaNa",
]


@pytest.mark.parametrize("text", MORE_BAD_VALUES, ids=[repr(t) for t in MORE_BAD_VALUES])
def test_parse_value_refuses_what_prometheus_refuses(text: str) -> None:
    with pytest.raises(ExpositionError):
        parse_value(text)


@pytest.mark.parametrize("text", ["NaN", "nan", "nAn"])
def test_parse_value_nan_has_prometheus_normal_nan_bits(text: str) -> None:
    assert struct.unpack("<Q", struct.pack("<d", parse_value(text)))[0] == 0x7FF8000000000001


@pytest.mark.parametrize("text", ["\uff11\uff12", "1\uff10", "\x0c12", "12\x0b", "12\r", "1.", "+", "0x10"])
def test_parse_timestamp_refuses_what_prometheus_refuses(text: str) -> None:
    with pytest.raises(ExpositionError):
        parse_timestamp(text)


GOOD_COMMENTS = [
    "# HELP up Whether the target is up, with \\\\ and \\n.",
    "# HELP up",
    "# HELP up-x text",  # the name is `up`; the rest is text
    "#  HELP  up  two blanks",
    "# TYPE up untyped",
    "# TYPE up\tgauge",  # the first character after the name is dropped, whatever it is
    "# TYPE up counter\r",  # CRLF: our leniency
    "  # TYPE up histogram",
    "#TYPE up bogus",  # no blank after `#`: a plain comment
    "# help up bogus",
    "# EOF",
    "#",
]
BAD_COMMENTS = [
    ("# TYPE up bogus", "invalid metric type 'bogus' for 'up'"),
    ("# TYPE up GAUGE", "invalid metric type 'GAUGE'"),
    ("# TYPE up info", "invalid metric type 'info'"),
    ("# TYPE up  gauge", "invalid metric type ' gauge'"),
    ("# TYPE up gauge ", "invalid metric type 'gauge '"),
    ("# TYPE up", "invalid metric type ''"),
    ("# TYPE up-b gauge", "invalid metric type 'b gauge'"),
    ("  # TYPE up bogus", "invalid metric type 'bogus'"),
    ("# HELP ", "expected a metric name after HELP, got ''"),
    ("# TYPE ", "expected a metric name after TYPE"),
    ("# HELP\t1x text", "expected a metric name after HELP, got '1x text'"),
]


@pytest.mark.parametrize("line", GOOD_COMMENTS)
def test_comments_prometheus_takes(line: str) -> None:
    assert split_line(line) is None
    assert parse_text(line + "\nup 1\n") == ([("up", [], 1.0, None)], [])


@pytest.mark.parametrize(("line", "message"), BAD_COMMENTS, ids=[c[0] for c in BAD_COMMENTS])
def test_malformed_help_and_type_lines_are_bad_lines(line: str, message: str) -> None:
    # A Prometheus scrape fails on these; we skip the line and count it, and lose no sample.
    with pytest.raises(ExpositionError, match=re.escape(message)):
        split_line(line)
    samples, errors = parse_text(f"up 1\n{line}\ndown 0\n")
    assert [s[0] for s in samples] == ["up", "down"]
    assert [n for n, _ in errors] == [2]
