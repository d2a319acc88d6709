"""PromQL series selectors (`up{job="x"}`, `{__name__=~".+"}`) parsed into label matchers.

Spec: https://prometheus.io/docs/prometheus/latest/querying/basics/#time-series-selectors and the
lexer and parser that define it, https://github.com/prometheus/prometheus/blob/v2.42.0/promql/parser/lex.go
(`lexString`, `lexEscape`, `lexRawString`), `promql/parser/parser.go` (`newVectorSelector`, the
non-empty-matcher rule) and `util/strutil/quote.go` (`Unquote`, which PromQL uses for its literals).

    selector := metric_name [ "{" [ matcher { "," matcher } [ "," ] ] "}" ] | "{" matcher ... "}"
    matcher  := label_name ( "=" | "!=" | "=~" | "!~" ) string
    string   := "..." | '...' | `...`   (Go escapes in the first two: \\a \\b \\f \\n \\r \\t \\v \\\\ \\<quote>,
                                         \\NNN octal, \\xNN, \\uNNNN, \\UNNNNNNNN; raw strings take none)

As PromQL: the metric name may not also appear as a `__name__` matcher, and at least one matcher must
not match the empty string (`{job=~".*"}` is rejected). Regular expressions are passed on as written
(Prometheus anchors them); the empty-string check uses Python's `re`, and a pattern Python cannot
compile (RE2-only syntax) is left for the server to judge. Each error names the selector and the
0-based position of the problem.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = [
    "MATCH_EQ",
    "MATCH_NEQ",
    "MATCH_NRE",
    "MATCH_RE",
    "Matcher",
    "format_selector",
    "parse_selector",
]

# prompb.LabelMatcher.Type
MATCH_EQ: Final = 0
MATCH_NEQ: Final = 1
MATCH_RE: Final = 2
MATCH_NRE: Final = 3

_OPS: Final = {"=": MATCH_EQ, "!=": MATCH_NEQ, "=~": MATCH_RE, "!~": MATCH_NRE}
_OP_TEXT: Final = {v: k for k, v in _OPS.items()}
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SPACE: Final = re.compile(r"[ \t\r\n]*")
_SIMPLE_ESCAPES: Final = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
}
_HEX_DIGITS: Final = {"x": 2, "u": 4, "U": 8}


class Matcher(NamedTuple):
    """One prompb.LabelMatcher: `type` is MATCH_EQ, MATCH_NEQ, MATCH_RE or MATCH_NRE."""

    type: int
    name: str
    value: str


def parse_selector(selector: str) -> tuple[Matcher, ...]:
    """The matchers of a PromQL series selector, in written order (a metric name first, as `__name__`).

    Raises ValueError naming the selector and position for anything PromQL would not parse as a plain
    series selector (range, offset and `@` modifiers included).
    """
    return _Parser(selector).parse()


def format_selector(matchers: tuple[Matcher, ...] | list[Matcher]) -> str:
    """`{name="value",...}` that `parse_selector` reads back into the same matchers (for logs and tests)."""
    parts = []
    for m in matchers:
        value = m.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{m.name}{_OP_TEXT[m.type]}"{value}"')
    return "{" + ",".join(parts) + "}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str, pos: int | None = None) -> ValueError:
        at = self.pos if pos is None else pos
        return ValueError(f"series selector {self.text!r}: {what} at position {at}")

    def skip_space(self) -> None:
        m = _SPACE.match(self.text, self.pos)
        assert m is not None  # `*` always matches
        self.pos = m.end()

    def parse(self) -> tuple[Matcher, ...]:
        matchers: list[Matcher] = []
        self.skip_space()
        name_pos = self.pos
        m = _METRIC_NAME.match(self.text, self.pos)
        if m:
            matchers.append(Matcher(MATCH_EQ, "__name__", m.group()))
            self.pos = m.end()
            self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == "{":
            self.pos += 1
            matchers.extend(self.matchers())
        elif not matchers:
            if self.pos >= len(self.text):
                raise self.fail("empty selector")
            raise self.fail(f"expected a metric name or '{{', found {self.text[self.pos]!r}")
        self.skip_space()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.text[self.pos]!r} after the selector")
        if m and any(x.name == "__name__" for x in matchers[1:]):
            raise self.fail("metric name set twice (before the braces and as __name__)", name_pos)
        if not any(not _matches_empty(x) for x in matchers):
            raise self.fail("no matcher that rejects the empty string (PromQL requires one)", name_pos)
        return tuple(matchers)

    def matchers(self) -> list[Matcher]:
        out: list[Matcher] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.fail("unclosed '{'")
            if self.text[self.pos] == "}":
                self.pos += 1
                return out
            name = _LABEL_NAME.match(self.text, self.pos)
            if not name:
                raise self.fail(f"expected a label name, found {self.text[self.pos]!r}")
            self.pos = name.end()
            self.skip_space()
            op = self.text[self.pos : self.pos + 2]
            if op in _OPS:
                self.pos += 2
            elif op[:1] == "=":
                op = "="
                self.pos += 1
            else:
                raise self.fail(f"expected one of = != =~ !~ after label {name.group()!r}")
            self.skip_space()
            out.append(Matcher(_OPS[op], name.group(), self.string()))
            self.skip_space()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
            elif self.pos < len(self.text) and self.text[self.pos] != "}":
                raise self.fail(f"expected ',' or '}}', found {self.text[self.pos]!r}")

    def string(self) -> str:
        start = self.pos
        if start >= len(self.text):
            raise self.fail("expected a quoted string, found the end")
        quote = self.text[start]
        if quote not in "\"'`":
            raise self.fail(f"expected a quoted string, found {quote!r}")
        self.pos += 1
        if quote == "`":  # raw: no escapes, newlines allowed
            end = self.text.find("`", self.pos)
            if end < 0:
                raise self.fail("unterminated raw string", start)
            self.pos = end + 1
            return self.text[start + 1 : end]
        out = bytearray()
        text = self.text
        while True:
            if self.pos >= len(text) or text[self.pos] == "\n":
                raise self.fail("unterminated quoted string", start)
            ch = text[self.pos]
            self.pos += 1
            if ch == quote:
                break
            if ch != "\\":
                out += ch.encode("utf-8")
                continue
            out += self.escape(quote)
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not valid UTF-8 after unescaping", start) from None

    def escape(self, quote: str) -> bytes:
        esc_pos = self.pos - 1
        if self.pos >= len(self.text):
            raise self.fail("escape sequence not terminated", esc_pos)
        ch = self.text[self.pos]
        self.pos += 1
        if ch in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[ch]
        if ch == quote:
            return ch.encode()
        if ch in "01234567":
            digits = self.text[self.pos - 1 : self.pos + 2]
            if len(digits) < 3 or any(d not in "01234567" for d in digits):
                raise self.fail("octal escape needs 3 digits", esc_pos)
            self.pos += 2
            value = int(digits, 8)
            if value > 255:
                raise self.fail(f"octal escape \\{digits} is over 255", esc_pos)
            return bytes((value,))
        if ch in _HEX_DIGITS:
            n = _HEX_DIGITS[ch]
            digits = self.text[self.pos : self.pos + n]
            if len(digits) < n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"\\{ch} escape needs {n} hex digits", esc_pos)
            self.pos += n
            value = int(digits, 16)
            if ch == "x":
                return bytes((value,))
            if value > 0x10FFFF or 0xD800 <= value < 0xE000:  # not a Unicode scalar value
                raise self.fail(f"\\{ch}{digits} is not a valid code point", esc_pos)
            return chr(value).encode("utf-8")
        raise self.fail(f"unknown escape sequence \\{ch}", esc_pos)


def _matches_empty(m: Matcher) -> bool:
    if m.type == MATCH_EQ:
        return m.value == ""
    if m.type == MATCH_NEQ:
        return m.value != ""
    try:
        hit = re.fullmatch(m.value, "") is not None
    except re.error:
        return False  # RE2 syntax Python lacks: count it as selective and let the server judge
    return hit if m.type == MATCH_RE else not hit
