"""Go `regexp` (RE2) patterns and `Regexp.Expand` templates, run on Python's `re`.

Prometheus compiles relabel regexes with Go's `regexp` package (https://pkg.go.dev/regexp/syntax) and
expands `$1`-style templates with `Regexp.Expand` (https://pkg.go.dev/regexp#Regexp.Expand). Python's
`re` reads most RE2 patterns the same way; this module translates the differences that change results:

- `\\d \\s \\w \\b` are ASCII-only in Go (Python's are Unicode); `[[:alpha:]]` POSIX classes (Python
  has none and warns about `[[`); octal `\\012` (a back-reference in Python); `\\x{10FFFF}`; `\\Q..\\E`.
- Go's `$` without `(?m)` is the end of text only (Python's also matches before a final newline): `\\Z`.
- Inline flags `(?i)` anywhere, scoped to the enclosing group (Python 3.11 only accepts them at the very
  start): rewritten as `(?i:...)`, closed and reopened around each `|`. `(?U)` swaps greediness.
- What Go rejects is rejected here too (look-arounds, back-references, possessive `*+`, counts > 1000),
  and what Python cannot express is refused with a reason (`\\pL`, `\\p{Greek}` Unicode classes).
- Named groups are compiled as plain groups (Go allows names like `1x` that Python does not); the
  name -> index map resolves `$name` in templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

_MAX_CODE: Final = 0x10FFFF
_Ranges = list[tuple[int, int]]


def _r(*spans: str) -> _Ranges:
    return [(ord(s[0]), ord(s[-1])) for s in spans]


_PERL: Final[dict[str, _Ranges]] = {
    "d": _r("09"),
    "s": _r("\t\n", "\f\r", " "),  # no \v: Go's \s is [\t\n\f\r ]
    "w": _r("09", "AZ", "__", "az"),
}
_POSIX: Final[dict[str, _Ranges]] = {
    "alnum": _r("09", "AZ", "az"),
    "alpha": _r("AZ", "az"),
    "ascii": [(0, 0x7F)],
    "blank": _r("\t", " "),
    "cntrl": [(0, 0x1F), (0x7F, 0x7F)],
    "digit": _r("09"),
    "graph": _r("!~"),
    "lower": _r("az"),
    "print": _r(" ~"),
    "punct": _r("!/", ":@", "[`", "{~"),
    "space": _r("\t\r", " "),
    "upper": _r("AZ"),
    "word": _r("09", "AZ", "__", "az"),
    "xdigit": _r("09", "AF", "af"),
}
_WORD: Final = "[0-9A-Za-z_]"
_BOUNDARY: Final = f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))"
_NOT_BOUNDARY: Final = f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))"
_REPEAT: Final = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_FLAGS: Final = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")
_GROUP_NAME: Final = re.compile(r"\(\?P<([^>]*)>")
_SIMPLE_ESCAPES: Final = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class GoRegexpError(ValueError):
    """A pattern Go's regexp rejects, or one Python's `re` cannot express."""


@dataclass(frozen=True)
class GoRegexp:
    """A Go pattern compiled for Python; `fullmatch` is Prometheus' anchored `^(?:re)$`."""

    source: str
    compiled: re.Pattern[str]
    names: dict[str, int] = field(default_factory=dict)


def _complement(ranges: _Ranges) -> _Ranges:
    out, lo = [], 0
    for a, b in sorted(ranges):
        if a > lo:
            out.append((lo, a - 1))
        lo = max(lo, b + 1)
    if lo <= _MAX_CODE:
        out.append((lo, _MAX_CODE))
    return out


def _char(code: int) -> str:
    """One code point, safe anywhere in a Python pattern (inside or outside a class)."""
    c = chr(code)
    if c.isascii() and c.isalnum():
        return c
    return f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}"


def _class(ranges: _Ranges, negate: bool = False) -> str:
    body = "".join(_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in ranges)
    return f"[{'^' if negate else ''}{body}]"


class _Translator:
    def __init__(self, src: str) -> None:
        self.src = src
        self.i = 0
        self.out: list[str] = []
        self.groups = 0
        self.names: dict[str, int] = {}
        # One frame per open group: the Python flag groups opened by inline `(?flags)` in it, and the
        # multiline/ungreedy state, which Go scopes to the enclosing group.
        self.frames: list[tuple[list[str], bool, bool]] = [([], False, False)]

    def fail(self, what: str) -> GoRegexpError:
        return GoRegexpError(f"{what} at position {self.i}")

    def run(self) -> str:
        src = self.src
        while self.i < len(src):
            c = src[self.i]
            if c == "\\":
                self.out.append(self.escape())
            elif c == "[":
                self.out.append(self.char_class())
            elif c == "(":
                self.open_group()
            elif c == ")":
                if len(self.frames) == 1:
                    raise self.fail("unexpected )")
                wraps, _, _ = self.frames.pop()
                self.out.append(")" * (len(wraps) + 1))
                self.i += 1
            elif c == "|":
                wraps = self.frames[-1][0]
                self.out.append(")" * len(wraps) + "|" + "".join(wraps))
                self.i += 1
            elif c in "*+?":
                self.i += 1
                self.quantifier(c)
            elif c == "{" and (m := _REPEAT.match(src, self.i)):
                lo, comma, hi = m.group(1), m.group(2), m.group(3)
                if int(lo) > 1000 or (hi and int(hi) > 1000) or (hi and int(hi) < int(lo)):
                    raise self.fail(f"invalid repeat count {m.group(0)}")
                self.i = m.end()
                self.quantifier("{" + lo + (comma or "") + (hi or "") + "}")
            elif c == "$":
                self.out.append("$" if self.frames[-1][1] else r"\Z")
                self.i += 1
            elif c in "^.":
                self.out.append(c)
                self.i += 1
            else:  # a literal, including `{` `}` `]` that do not start or end anything
                self.out.append(re.escape(c))
                self.i += 1
        if len(self.frames) > 1:
            raise self.fail("missing closing )")
        self.out.append(")" * len(self.frames[0][0]))
        return "".join(self.out)

    def quantifier(self, q: str) -> None:
        lazy = self.src.startswith("?", self.i)
        if lazy:
            self.i += 1
        if self.i < len(self.src) and (self.src[self.i] in "*+?" or _REPEAT.match(self.src, self.i)):
            raise self.fail("invalid nested repetition operator")
        self.out.append(q + ("?" if lazy != self.frames[-1][2] else ""))

    def open_group(self) -> None:
        src, i = self.src, self.i
        _, multiline, ungreedy = self.frames[-1]
        if not src.startswith("(?", i):
            self.groups += 1
            self.frames.append(([], multiline, ungreedy))
            self.out.append("(")
            self.i += 1
            return
        if m := _GROUP_NAME.match(src, i):
            name = m.group(1)
            if not re.fullmatch(r"[A-Za-z0-9_]+", name) or name in self.names:
                raise self.fail(f"invalid named capture {m.group(0)!r}")
            self.groups += 1
            self.names[name] = self.groups
            self.frames.append(([], multiline, ungreedy))
            self.out.append("(")
            self.i = m.end()
            return
        m = _FLAGS.match(src, i)
        if m is None or (m.group(2) is not None and not m.group(2)):
            raise self.fail(f"invalid or unsupported Perl syntax {src[i : i + 3]!r}")
        on, off, end = m.group(1), m.group(2) or "", m.group(3)
        multiline = ("m" in on or multiline) and "m" not in off
        ungreedy = ("U" in on or ungreedy) and "U" not in off
        py_on, py_off = on.replace("U", ""), off.replace("U", "")
        opener = f"(?{py_on}{'-' + py_off if py_off else ''}:"
        self.i = m.end()
        if end == ":":
            self.frames.append(([], multiline, ungreedy))
            self.out.append(opener)
            return
        wraps = self.frames[-1][0]
        if py_on or py_off:
            wraps.append(opener)
            self.out.append(opener)
        self.frames[-1] = (wraps, multiline, ungreedy)

    def escape(self) -> str:
        """An escape outside a class, as a Python pattern fragment."""
        src = self.src
        if self.i + 1 >= len(src):
            raise self.fail("trailing backslash")
        c = src[self.i + 1]
        if c in "dswDSW":
            self.i += 2
            return _class(_PERL[c.lower()], negate=c.isupper())
        if c in "bB":
            self.i += 2
            return _BOUNDARY if c == "b" else _NOT_BOUNDARY
        if c == "A":
            self.i += 2
            return r"\A"
        if c == "z":
            self.i += 2
            return r"\Z"
        if c == "Q":
            end = src.find(r"\E", self.i + 2)
            text = src[self.i + 2 :] if end < 0 else src[self.i + 2 : end]
            self.i = len(src) if end < 0 else end + 2
            return re.escape(text)
        return _char(self.class_char())

    def class_char(self) -> int:
        """A single character, literal or escaped (Go's parseClassChar/parseEscape); advances."""
        src = self.src
        if src[self.i] != "\\":
            self.i += 1
            return ord(src[self.i - 1])
        if self.i + 1 >= len(src):
            raise self.fail("trailing backslash")
        c = src[self.i + 1]
        self.i += 2
        if c.isascii() and not c.isalnum():
            return ord(c)
        if c in _SIMPLE_ESCAPES:
            return ord(_SIMPLE_ESCAPES[c])
        if c in "01234567":
            # `\1`..`\7` alone would be a back-reference, which Go rejects; with more digits it is octal.
            digits = re.match(r"[0-7]{0,2}", src[self.i :])
            assert digits is not None
            if c != "0" and not digits.group(0):
                raise self.fail("invalid escape sequence (back-references are not supported)")
            self.i += len(digits.group(0))
            return int(c + digits.group(0), 8)
        if c == "x":
            m = re.match(r"\{([0-9A-Fa-f]{1,8})\}|([0-9A-Fa-f]{2})", src[self.i :])
            if m is None or int(m.group(1) or m.group(2), 16) > _MAX_CODE:
                raise self.fail("invalid escape sequence \\x")
            self.i += m.end()
            return int(m.group(1) or m.group(2), 16)
        if c in "pP":
            raise self.fail(f"Unicode classes \\{c}{{...}} are not supported (use explicit ranges)")
        raise self.fail(f"invalid escape sequence \\{c}")

    def char_class(self) -> str:
        src = self.src
        self.i += 1
        negate = src.startswith("^", self.i)
        if negate:
            self.i += 1
        ranges: _Ranges = []
        first = True
        while first or not src.startswith("]", self.i):
            if self.i >= len(src):
                raise self.fail("missing closing ]")
            first = False
            if m := re.match(r"\[:(\^?)([a-z]+):\]", src[self.i :]):
                if m.group(2) not in _POSIX:
                    raise self.fail(f"invalid character class range {m.group(0)}")
                cls = _POSIX[m.group(2)]
                ranges.extend(_complement(cls) if m.group(1) else cls)
                self.i += m.end()
                continue
            if src.startswith("\\", self.i) and self.i + 1 < len(src) and src[self.i + 1] in "dswDSW":
                c = src[self.i + 1]
                cls = _PERL[c.lower()]
                ranges.extend(_complement(cls) if c.isupper() else cls)
                self.i += 2
                continue
            lo = self.class_char()
            hi = lo
            if src.startswith("-", self.i) and self.i + 1 < len(src) and src[self.i + 1] != "]":
                self.i += 1
                hi = self.class_char()
                if hi < lo:
                    raise self.fail(f"invalid character class range {chr(lo)}-{chr(hi)}")
            ranges.append((lo, hi))
        self.i += 1
        return _class(ranges, negate)


@lru_cache(maxsize=1024)
def compile_go(pattern: str) -> GoRegexp:
    """Compile a Go RE2 pattern; use `.compiled.fullmatch` for Prometheus' anchored matching."""
    t = _Translator(pattern)
    translated = t.run()
    try:
        compiled = re.compile(f"(?:{translated})")
    except re.error as exc:  # what Python refuses that Go accepted, e.g. a repeat of an empty-width assertion
        raise GoRegexpError(str(exc)) from None
    return GoRegexp(source=pattern, compiled=compiled, names=dict(t.names))


Template = tuple[str | int, ...]
"""A compiled `Regexp.Expand` template: literal text and group numbers."""


def _extract(s: str, i: int) -> tuple[str, int] | None:
    """Go's `extract`: a `name` or `{name}` at s[i:]; returns (name, end) or None when malformed."""
    brace = s.startswith("{", i)
    j = i + 1 if brace else i
    start = j
    while j < len(s) and (s[j].isalpha() or s[j].isdecimal() or s[j] == "_"):
        j += 1
    if j == start:
        return None
    name = s[start:j]
    if brace:
        if not s.startswith("}", j):
            return None
        j += 1
    return name, j


def compile_template(template: str, regexp: GoRegexp) -> Template:
    """`$1`, `${1}`, `$name`, `${name}`, `$$` as Go expands them. `$1x` is the group named `1x`;
    an unknown or unmatched group expands to nothing; a malformed `$` stays literal."""
    parts: list[str | int] = []
    literal: list[str] = []
    ngroups = regexp.compiled.groups
    i = 0
    while (j := template.find("$", i)) >= 0:
        literal.append(template[i:j])
        if template.startswith("$", j + 1):
            literal.append("$")
            i = j + 2
            continue
        found = _extract(template, j + 1)
        if found is None:
            literal.append("$")
            i = j + 1
            continue
        name, i = found
        # A number (no leading zero) is a group index, anything else a group name.
        is_num = name.isascii() and name.isdigit() and (name == "0" or name[0] != "0") and len(name) <= 9
        index = int(name) if is_num else regexp.names.get(name, -1)
        if 0 <= index <= ngroups:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(index)
    literal.append(template[i:])
    if "".join(literal):
        parts.append("".join(literal))
    return tuple(parts)


def expand(template: Template, match: re.Match[str]) -> str:
    if len(template) == 1 and isinstance(template[0], str):
        return template[0]
    return "".join(p if isinstance(p, str) else (match.group(p) or "") for p in template)
