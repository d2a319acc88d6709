r"""Parser for the Prometheus text exposition format 0.0.4, the body of a `/federate` response.

Spec: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
What a real scrape accepts (followed here where the spec is vague): the lexer in prometheus/prometheus
`model/textparse/promlex.l` and `promparse.go`, checked against a real Prometheus 2.42 scrape by
`tests/integration/test_exposition_differential_prometheus.py`.

    # HELP name text / # TYPE name type    checked (a malformed one fails a Prometheus scrape), skipped
    # any other comment                    skipped
    name{label="value",...} value [timestamp_ms]

Deliberately more lenient than a 2.42 scrape, each pinned by a unit test: CRLF line ends, blanks before
the metric name (2.42 keeps them in the name and fails), and signed timestamps (`-1000`, written by
prometheus_client for times before 1970; promlex.l takes digits only). Stricter: a label pair must be
followed by `,` or `}` (promparse.go takes `{a="1" b="2"}`), and a label value may not hold a raw
newline (promlex.l takes one; we split the body on newlines first). Federation never writes any of these.

Label values escape only `\\`, `\"` and `\n`, so a value may hold spaces, tabs, `}` and `,`; lines
are split on `\n` only (never `str.splitlines()`, which also splits on `\x0b`, `\x85`, `\u2028`...
that may sit raw inside a label value).

Built for the hot path: a 100k-series pull is 100k lines every cycle, while the set of series barely
changes. So the work is split in two:
- `split_line` cuts a line into (series text, value text, timestamp text) with `str` methods that run
  in C (`rfind`, `split`), and falls back to a careful tokenizer on anything unusual;
- `parse_series` validates and decodes `name{labels}`; the caller runs it once per *distinct* series
  text and caches the result under that text (see `observe/transform/series_cache.py`).
Measured on 100k federate-like lines of 6 labels (CPython 3.11): split_line 2.3 M lines/s; split +
cache hit + value + timestamp 1.0 M lines/s; with a cold cache (parse_series on every line, ~2.6 us
each) 130 k lines/s, of which the cyclic GC takes a third (200 k lines/s with it disabled).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

__all__ = [
    "ExpositionError",
    "iter_lines",
    "parse_series",
    "parse_text",
    "parse_timestamp",
    "parse_value",
    "split_line",
]

Sample = tuple[str, list[tuple[str, str]], float, int | None]
"""(metric name, labels in text order, value, timestamp in ms or None)."""


class ExpositionError(ValueError):
    """A line of the text format is malformed; the message says what is wrong and shows the bad part."""


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# A quoted label value in the "unrolled loop" form: linear, and ~50x faster than `"(?:[^"\\]|\\.)*"`
# on a 1 MB value in CPython's sre (0.002 s against 0.1 s).
_VALUE = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_QUOTED = re.compile(_VALUE)
# The shape Prometheus writes, `name{a="x",b="y"}`: validated by one fullmatch (no groups: faster),
# then the pairs extracted by one findall.
_PAIR = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=" + _VALUE)
_PAIR_NO_GROUP = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*(?:\\.[^"\\]*)*"'
_SERIES_COMPACT = re.compile(
    r"[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:" + _PAIR_NO_GROUP + "(?:," + _PAIR_NO_GROUP + r")*,?)?\})?"
)
# Any other shape, one pair at a time: blanks allowed between tokens, as promlex.l allows them.
_LABEL_PAIR = re.compile(r"[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*" + _VALUE + r"[ \t]*([,}])")
_CLOSE = re.compile(r"[ \t]*\}")
_ESCAPE = re.compile(r"\\(.)")
# Prometheus decodes these three escapes and keeps any other backslash pair as it is (promparse.go
# `lvalReplacer`); the regex consumes pairs left to right exactly as Go's strings.Replacer does.
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
# `#`, blanks, HELP or TYPE, blanks: a metadata line, which promparse.go checks (promlex.l `sComment`).
_META = re.compile(r"#[ \t]+(HELP|TYPE)[ \t]+")
# The five types promparse.go's text parser knows; any other, even `GAUGE` or `info`, fails the scrape.
_TYPES = frozenset(("counter", "gauge", "histogram", "summary", "untyped"))
# Prometheus stores every NaN read from text as value.NormalNaN; so do we, so what we ship has the bits
# a Prometheus' own remote-write would (and never the staleness marker's).
_NORMAL_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]


def _show(text: str, limit: int = 60) -> str:
    """`text` quoted for an error message, cut short: a label value may be 1 MB."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"


# -- lines ------------------------------------------------------------------------------------------


def iter_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for each sample line: blank and comment lines skipped, CR removed."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        first = line[0]
        if first == "#":
            continue
        if line[-1] == "\r":
            line = line[:-1]
            if not line:
                continue
        if first == " " or first == "\t":
            rest = line.lstrip(" \t")
            if not rest or rest[0] == "#":
                continue
        yield lineno, line


def split_line(line: str) -> tuple[str, str, str | None] | None:
    """(series text, value text, timestamp text or None) of a sample line; None for blank or comment lines.

    The series text is exactly the line's `name{labels}` (a cache key for `parse_series`). Raises
    ExpositionError when the line cannot be split; the parts themselves are validated by
    `parse_series`, `parse_value` and `parse_timestamp`.
    """
    if not line:
        return None
    if line[-1] == "\r":
        line = line[:-1]
        if not line:
            return None
    first = line[0]
    if first == "#":
        _check_comment(line, 0)
        return None
    # Fast path: the shape Prometheus itself writes, single spaces between tokens and no tabs.
    if first != " " and "\t" not in line:
        brace = line.rfind("}")  # the closing brace is the last `}`: value and timestamp hold none
        if brace < 0:
            parts = line.split(" ")
            n = len(parts)
            if n == 2 and parts[1]:
                return parts[0], parts[1], None
            if n == 3 and parts[1] and parts[2]:
                return parts[0], parts[1], parts[2]
        else:
            parts = line[brace + 1 :].split(" ")
            n = len(parts)
            if n == 2 and not parts[0] and parts[1]:
                return line[: brace + 1], parts[1], None
            if n == 3 and not parts[0] and parts[1] and parts[2]:
                return line[: brace + 1], parts[1], parts[2]
    return _split_slow(line)


def _skip_blanks(line: str, i: int) -> int:
    n = len(line)
    while i < n and line[i] in " \t":
        i += 1
    return i


def _split_slow(line: str) -> tuple[str, str, str | None] | None:
    """The tokenizer of promlex.l, for lines with tabs, extra blanks or a broken shape."""
    n = len(line)
    i = _skip_blanks(line, 0)
    if i == n:
        return None
    if line[i] == "#":
        _check_comment(line, i)
        return None
    m = _METRIC_NAME.match(line, i)
    if m is None:
        raise ExpositionError(f"expected a metric name at the start of the line, got {_show(line[i:], 20)}")
    start, i = i, m.end()
    j = _skip_blanks(line, i)
    if j < n and line[j] == "{":
        i = _scan_labels(line, j)
    series = line[start:i]
    i = _skip_blanks(line, i)
    if i == n:
        raise ExpositionError(f"missing value after {_show(series)}")
    if line[i] == "{":
        raise ExpositionError(f"unexpected '{{' after {_show(series)}")
    j = i
    while j < n and line[j] not in " \t":
        j += 1
    value = line[i:j]
    i = _skip_blanks(line, j)
    if i == n:
        return series, value, None
    j = i
    while j < n and line[j] not in " \t":
        j += 1
    timestamp = line[i:j]
    if _skip_blanks(line, j) != n:
        raise ExpositionError(f"unexpected text after the timestamp: {_show(line[j:].strip(), 40)}")
    return series, value, timestamp


def _check_comment(line: str, i: int) -> None:
    """Raises ExpositionError if the comment at `line[i]` is a malformed HELP or TYPE line.

    promlex.l reads `# HELP name text` as the name, then the rest of the line, of which promparse.go
    drops the first character: so `# TYPE x  gauge` has type ' gauge' and fails, `# TYPE x\tgauge` passes.
    """
    meta = _META.match(line, i)
    if meta is None:
        return
    kind = meta.group(1)
    name = _METRIC_NAME.match(line, meta.end())
    if name is None:
        raise ExpositionError(f"expected a metric name after {kind}, got {_show(line[meta.end() :], 20)}")
    if kind == "TYPE" and line[name.end() + 1 :] not in _TYPES:
        raise ExpositionError(
            f"invalid metric type {_show(line[name.end() + 1 :], 20)} for {name.group()!r}: "
            f"want one of {', '.join(sorted(_TYPES))}"
        )


def _scan_labels(line: str, i: int) -> int:
    """Index just past the `}` closing the label set opening at `line[i]`; quoted values are skipped whole."""
    n = len(line)
    i += 1
    while i < n:
        c = line[i]
        if c == "}":
            return i + 1
        if c == '"':
            m = _QUOTED.match(line, i)
            if m is None:
                raise ExpositionError(f"unterminated quoted label value: {_show(line[i:], 40)}")
            i = m.end()
        else:
            i += 1
    raise ExpositionError(f"missing '}}' closing the labels of {_show(line, 40)}")


# -- series -----------------------------------------------------------------------------------------


def parse_series(series_text: str) -> tuple[str, list[tuple[str, str]]]:
    """Metric name and labels (text order, escapes decoded) of `name{labels}`.

    Blanks between tokens and one trailing comma are accepted, as Prometheus does. A label with an
    empty value is kept: in the data model it means "no such label", which the caller applies.
    """
    s = series_text
    if _SERIES_COMPACT.fullmatch(s) is not None:
        # The shape Prometheus writes: one C-level pass validated it, one more extracts the pairs
        # (3.5 us for 6 labels, against 5 us for the general loop below).
        brace = s.find("{")
        if brace < 0:
            return s, []
        name = s[:brace]
        labels: list[tuple[str, str]] = _PAIR.findall(s, brace)
        if "\\" in s:
            labels = [(k, _ESCAPE.sub(_unescape, v) if "\\" in v else v) for k, v in labels]
    else:
        brace = s.find("{")
        name = (s if brace < 0 else s[:brace]).strip(" \t")
        if _METRIC_NAME.fullmatch(name) is None:
            raise ExpositionError(f"invalid metric name {_show(name)}: want [a-zA-Z_:][a-zA-Z0-9_:]*")
        labels = [] if brace < 0 else _parse_labels(s, brace + 1, name)
    if len(labels) > 1:
        names = {k for k, _ in labels}
        if len(names) != len(labels):
            raise ExpositionError(f"duplicate label name {_first_duplicate(labels)!r} in {name!r}")
        if "__name__" in names:
            raise ExpositionError(f"label '__name__' in the braces of {name!r} duplicates the metric name")
    elif labels and labels[0][0] == "__name__":
        raise ExpositionError(f"label '__name__' in the braces of {name!r} duplicates the metric name")
    return name, labels


def _parse_labels(s: str, pos: int, metric: str) -> list[tuple[str, str]]:
    """The general label-set parser (blanks between tokens allowed) from just after `{` to the end."""
    labels: list[tuple[str, str]] = []
    match_pair = _LABEL_PAIR.match
    while True:
        m = match_pair(s, pos)
        if m is None:
            close = _CLOSE.match(s, pos)
            if close is None:
                raise ExpositionError(_diagnose_labels(s, pos, metric))
            pos = close.end()
            break
        label, raw, sep = m.groups()
        labels.append((label, _ESCAPE.sub(_unescape, raw) if "\\" in raw else raw))
        pos = m.end()
        if sep == "}":
            break
    if pos != len(s) and s[pos:].strip(" \t"):
        raise ExpositionError(f"unexpected text after the labels of {metric!r}: {_show(s[pos:].strip(), 40)}")
    return labels


def _first_duplicate(labels: list[tuple[str, str]]) -> str:
    seen: set[str] = set()
    for label, _ in labels:
        if label in seen:
            return label
        seen.add(label)
    raise AssertionError("no duplicate")


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    return _UNESCAPED.get(c) or "\\" + c


def _diagnose_labels(s: str, pos: int, metric: str) -> str:
    """Why the label set of `s` does not parse at `pos`: the slow path, run only for a bad series."""
    where = f"in the labels of {metric!r}"
    pos = _skip_blanks(s, pos)
    if pos == len(s):
        return f"missing '}}' {where}"
    m = _LABEL_NAME.match(s, pos)
    if m is None:
        return f"expected a label name {where}, got {_show(s[pos:], 20)}"
    label = m.group()
    pos = _skip_blanks(s, m.end())
    if pos == len(s) or s[pos] != "=":
        return f"expected '=' after label name {label!r} {where}"
    pos = _skip_blanks(s, pos + 1)
    if pos == len(s) or s[pos] != '"':
        return f"expected a double-quoted value for label {label!r} {where}"
    q = _QUOTED.match(s, pos)
    if q is None:
        return f"unterminated quoted value for label {label!r} {where}"
    pos = _skip_blanks(s, q.end())
    if pos == len(s):
        return f"missing '}}' {where}"
    return f"expected ',' or '}}' after label {label!r} {where}, got {_show(s[pos:], 20)}"


# -- value and timestamp ----------------------------------------------------------------------------


def parse_value(text: str) -> float:
    """A sample value as Go's strconv.ParseFloat reads it, minus the forms Prometheus refuses.

    Accepted: ASCII decimals and exponents (`1`, `-0.5`, `.5`, `5.`, `1e-3`, `1E+10`; underflow is 0),
    `NaN`, `Inf`/`Infinity` with an optional sign, in any case. Refused like a 2.42 scrape: `_` and hex
    floats (promparse.go refuses any `p`, `P` or `_`, and Go's hex floats need a `p`), a signed NaN,
    out-of-range numbers (`1e400`), and what Python's float() takes beyond Go: non-ASCII digits (Arabic-Indic,
    fullwidth) and surrounding whitespace (`\x0c1`, `1\r`). Every NaN comes back with NormalNaN's bits.

    The hot path's one value parser too (series_cache.py): float() does the work, the checks after it
    are three C-level scans of a short string (~60 ns of a cached-miss line's ~1.3 us).
    """
    try:
        v = float(text)
    except ValueError:
        raise ExpositionError(f"invalid sample value {_show(text)}") from None
    if "_" in text or not text.isascii() or text.strip() is not text:
        raise ExpositionError(f"invalid sample value {_show(text)}")
    if v - v == 0.0:  # finite: the usual case, tested first (cheaper than math.isfinite's call)
        return v
    word = text.lower().lstrip("+-")
    if v != v:
        if text.lower() != "nan":
            raise ExpositionError(f"invalid sample value {_show(text)}: NaN takes no sign")
        return _NORMAL_NAN
    if word not in ("inf", "infinity"):
        raise ExpositionError(f"sample value {_show(text)} is out of the float64 range")
    return v


def parse_timestamp(text: str) -> int:
    """A sample timestamp: integer milliseconds since the epoch, int64, possibly signed.

    ASCII digits only: int() also takes `1_000`, `١٢` and surrounding whitespace, which Go's ParseInt
    and promlex.l refuse. A sign is our leniency (see the module docstring).
    """
    if len(text) < 19 and text.isascii() and text.isdigit():  # the usual case: positive, within int64
        return int(text)
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not (digits.isascii() and digits.isdigit()):
        raise ExpositionError(f"invalid timestamp {_show(text)}: want integer milliseconds")
    ts = int(text)
    if not _INT64_MIN <= ts <= _INT64_MAX:
        raise ExpositionError(f"timestamp {_show(text)} is out of the int64 range")
    return ts


# -- whole bodies -----------------------------------------------------------------------------------


def parse_text(text: str) -> tuple[list[Sample], list[tuple[int, str]]]:
    """Every sample of a body, and (line number, message) for each malformed line, which is skipped.

    The convenient form for tests, `observe check` and small bodies; the pull loop uses the pieces
    above with a series cache instead.
    """
    samples: list[Sample] = []
    errors: list[tuple[int, str]] = []
    # Every line, not iter_lines(): split_line checks HELP and TYPE lines, which iter_lines skips.
    for lineno, line in enumerate(text.split("\n"), 1):
        try:
            parts = split_line(line)
            if parts is None:
                continue
            series, value, ts = parts
            name, labels = parse_series(series)
            samples.append((name, labels, parse_value(value), None if ts is None else parse_timestamp(ts)))
        except ExpositionError as exc:
            errors.append((lineno, str(exc)))
    return samples, errors
