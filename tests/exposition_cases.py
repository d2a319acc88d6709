r"""Generated exposition lines and bodies, and what each of observe's two readers makes of them.

The two readers: the parser (`observe.protocol.exposition.parse_text`) and the collector's hot path
(`observe.transform.series_cache.SeriesCache`, which splits plain lines itself and sends the rest to the
parser). `parser_view` and `hot_path_view` reduce both to the same shape so a test can compare them.

The generator is a seeded `random.Random` (no hypothesis: not a dependency), and draws each piece from
a table of odd spellings with a real chance, so a few hundred lines meet every entry:
values (signs, exponents, `Inf`/`NaN` in any case and sign, hex, `_`, non-ASCII digits, whitespace
that float() strips), timestamps (absent, 0, int64 edges, signed, `1e3`, non-ASCII digits), label values
with every escape (`\\`, `\"`, `\n`, other backslash pairs) and raw `}` `,` `=` `#` tabs and Unicode,
label sets (none, `{}`, trailing comma, blanks around tokens, duplicates, `__name__`), HELP/TYPE and
other comments, blank lines, tabs and trailing blanks between tokens, and 50k-character lines.

`prometheus_compatible=True` leaves out the shapes where observe differs from a Prometheus 2.42 scrape
on purpose (CR line ends, blanks before the name, signed timestamps, label pairs without a comma: see
`observe/protocol/exposition.py`), for the differential test against a real Prometheus.
"""

from __future__ import annotations

import random
import struct

from observe.model import STALE_NAN_BITS
from observe.protocol.exposition import parse_text, split_line
from observe.protocol.remote_write import decode_write_request, decompress
from observe.transform.normalize import Normalizer
from observe.transform.series_cache import SeriesCache

# Values a 2.42 scrape takes (checked against the real server by the differential test).
GOOD_VALUES = [
    "0", "1", "-1", "+1", "1.5", "-0", "0.0", ".5", "5.", "+.5e-3", "1e3", "1E+3", "1e-400", "-1e-400",
    "1.7976931348623157e308", "4.9e-324", "2.4703282292062328e-324", "NaN", "nan", "nAN", "Inf", "+Inf",
    "-Inf", "inf", "+infinity", "-iNfInItY", "007", "0" * 40 + "1", "0e99999999999999999999",
    "1e-99999999999999999999", "123456789012345678901234567890", "0." + "0" * 80 + "1e85",
]  # fmt: skip
# ... and values it refuses (the whole scrape fails on one of them).
BAD_VALUES = [
    "1_000", "1_0.5", "0x1p-2", "0x10", "0X1P3", "0x1.8p1", "+NaN", "-nan", "1e400", "-1e400",
    "1.7976931348623159e308", "1e99999999999999999999", "\u0661", "\u0661\u0662", "\uff11", "1\uff10",
    "\u0967.5", "1\u00a0", "\x0c1", "1\x0b", "\x1c1", "1\x00", ".", "1e", "e5", "1e+", "+", "-", "++1",
    "1.5.5", "infinit", "infinityy", "NaNa", "Infinity1", "1,5", "1}", '1"', "1{", "#", "0b1", "1e5.5",
]  # fmt: skip
GOOD_TIMESTAMPS = [
    "0", "1", "007", "0" * 25 + "1", "1700000000000", "9223372036854775807", "999999999999999999",
]  # fmt: skip
BAD_TIMESTAMPS = [
    "9223372036854775808", "99999999999999999999", "1_000", "1e3", "12.0", "\u0661\u0662", "\uff11\uff12",
    "1\uff10", "\x0c12", "12\x0b", "0x10", "12a", "{", "}", "#", "1.", "-", "+",
]  # fmt: skip
SIGNED_TIMESTAMPS = ["-1", "+5", "-0", "-1000", "-9223372036854775808", "+9223372036854775807"]
LABEL_VALUE_PIECES = [
    "plain", "with space", "a\ttab", "}", "{", ",", "=", "#", " ", "\\\\", '\\"', "\\n", "\\t", "\\a",
    "\\x", "\\u00e9", "\\\\n", "\\\\\\\"", "ünï€ 😀", "\u2028", "\x85", "\x0b", "\x0c", "\x1c", "0.99", "+Inf",
    "} 1 2", '\\"} 1', "\\\\}", "/a b/{c}",
]  # fmt: skip
# Labels Prometheus itself attaches (job, instance), the test's own (zz_body) and ours (cluster) stay out.
LABEL_NAMES = ["a", "b", "le", "quantile", "_", "_x1", "Code", "path", "x" * 40, "z9"]
TYPES = ["counter", "gauge", "histogram", "summary", "untyped"]
BAD_TYPES = ["GAUGE", "info", "stateset", "gaugehistogram", "unknown", "", " gauge", "gauge ", "bogus"]
# The timestamp of the warm-up cycle in `hot_path_view(warm=True)`: older than anything generated.
WARM_TS = -(2**63) + 1


def _label_value(rng: random.Random) -> str:
    """An escaped label value: the text between the quotes."""
    if rng.random() < 0.01:
        return "x" * rng.randrange(10_000, 50_000) + rng.choice(LABEL_VALUE_PIECES)
    return "".join(rng.choice(LABEL_VALUE_PIECES) for _ in range(rng.randrange(0, 4)))


def _blank(rng: random.Random, odd: bool) -> str:
    return rng.choice([" \t", "\t", "  ", " \t "]) if odd else " "


def _series(rng: random.Random, name: str, odd: bool, compatible: bool) -> str:
    """`name{labels}` with distinct label names (or a duplicate / `__name__` when `odd` says so)."""
    shape = rng.random()
    if shape < 0.15:
        return name
    names = rng.sample(LABEL_NAMES, rng.randrange(0, 4))
    if odd and rng.random() < 0.2:
        names.append(rng.choice([*names, "__name__"]) if names else "__name__")
    pairs = [f'{n}="{_label_value(rng)}"' for n in names]
    if not odd or rng.random() < 0.5:
        body = ",".join(pairs) + ("," if pairs and rng.random() < 0.1 else "")
        return f"{name}{{{body}}}"
    # Blanks between every token, as promlex.l allows.
    sep = rng.choice([",", " ,", ", ", "\t,\t"])
    if not compatible and len(pairs) > 1 and rng.random() < 0.2:
        sep = " "  # no comma: Prometheus takes it, we do not
    inner = sep.join(p.replace("=", rng.choice(["=", " = ", "\t=\t"]), 1) for p in pairs)
    return f"{name}{rng.choice(['', ' ', chr(9)])}{{{_blank(rng, True)}{inner}{_blank(rng, True)}}}"


def _bad_series(rng: random.Random, name: str) -> str:
    return rng.choice(
        [
            f"1{name}", f"{name}-x", "", f'{name}{{,a="b"}}', f"{name}{{a=b}}", f'{name}{{a="b}}',
            f'{name}{{a="b\\"}}', f'{name}{{1a="b"}}', f'{name}{{a:b="c"}}', f'{name}{{a="b",,}}',
            f'{name}{{a="b"}}{{c="d"}}', f'{name}{{a="b"', f"{name}{{", f'{name}{{a="b" ,b}}',
        ]
    )  # fmt: skip


def _comment(rng: random.Random, name: str, odd: bool) -> str:
    good = [
        f'# HELP {name} Help with \\\\ and \\n escapes, {{braces}} and "quotes".',
        f"# TYPE {name} {rng.choice(TYPES)}",
        f"# TYPE {name}\t{rng.choice(TYPES)}",
        f"#  HELP  {name}  two blanks",
        f"# HELP {name}",
        f"# HELP {name}-x text",
        "# a plain comment",
        "#comment",
        "#",
        "#TYPE x bogus",
        "# help 1 x",
        "# EOF",
        "#\tTYPE-less comment",
        f"  # TYPE {name} gauge",
    ]
    bad = [
        f"# TYPE {name} {rng.choice(BAD_TYPES)}",
        f"# TYPE {name}",
        "# HELP ",
        "# TYPE ",
        "# HELP\t1x",
        f"# TYPE {name}-b gauge",
        f"  # TYPE {name} bogus",
    ]
    return rng.choice(bad if odd else good)


def random_value(rng: random.Random, odd: bool) -> str:
    if odd and rng.random() < 0.5:
        return rng.choice(BAD_VALUES)
    r = rng.random()
    if r < 0.3:
        return rng.choice(GOOD_VALUES)
    x = rng.choice([rng.uniform(-1e6, 1e6), rng.expovariate(1e-3), 10.0 ** rng.uniform(-320, 308), 0.1])
    text = rng.choice([repr(x), f"{x:.17g}", f"{x:e}", f"{x:E}", str(int(x)), f"{x:+.3f}"])
    if odd and rng.random() < 0.5:  # one ASCII digit as another script's digit, or an underscore
        digits = [i for i, c in enumerate(text) if c.isdigit()]
        if digits:
            i = rng.choice(digits)
            other = rng.choice([0x0660, 0xFF10, 0x0966])  # Arabic-Indic, fullwidth, Devanagari
            text = text[:i] + rng.choice([chr(other + int(text[i])), text[i] + "_"]) + text[i + 1 :]
    return text


def random_timestamp(rng: random.Random, odd: bool, compatible: bool, near_ms: int | None) -> str | None:
    """None for no timestamp. With `near_ms`, only timestamps a TSDB head takes (the last 10 minutes)."""
    if near_ms is not None:
        return None if rng.random() < 0.4 else str(near_ms - rng.randrange(0, 600_000))
    r = rng.random()
    if r < 0.3:
        return None
    if odd and r < 0.65:
        return rng.choice(BAD_TIMESTAMPS)
    if not compatible and r < 0.75:
        return rng.choice(SIGNED_TIMESTAMPS)
    return rng.choice(GOOD_TIMESTAMPS) if r < 0.9 else str(rng.randrange(0, 2**63))


def random_line(
    rng: random.Random, index: int, *, odd: bool, compatible: bool = False, near_ms: int | None = None
) -> str:
    """One line; `odd` makes one part of it unusual (and maybe invalid). Names are unique per `index`."""
    name = f"m{index}_" + rng.choice(["x", "a:b", "total", "_", "bucket"])
    part = rng.randrange(6) if odd else -1
    if part == 0:
        return _comment(rng, name, odd=rng.random() < 0.7)
    if part == 1 and not compatible and rng.random() < 0.5:
        return rng.choice(["", "   ", "\t", "\r"])
    series = _bad_series(rng, name) if part == 1 else _series(rng, name, odd=part == 2, compatible=compatible)
    value = random_value(rng, odd=part == 3)
    ts = random_timestamp(rng, odd=part == 4, compatible=compatible, near_ms=near_ms)
    spaced = part == 5
    line = series + _blank(rng, spaced) + value + ("" if ts is None else _blank(rng, spaced) + ts)
    if spaced:
        line += rng.choice(["", " ", "\t", " \t"])
        if series.endswith("}") and rng.random() < 0.3:
            line = series + line[len(series) :].lstrip(" \t")  # `name{a="b"}1`: no blank is needed
    if not compatible and rng.random() < 0.05:
        line = rng.choice(["  ", "\t"]) + line if rng.random() < 0.5 else line + "\r"
    return line


# -- what each reader makes of a body ---------------------------------------------------------------

Sample = tuple[tuple[tuple[str, str], ...], str, int]
"""(labels sorted, `__name__` and our cluster label included; value bits in hex; timestamp ms)."""


def value_key(value: float) -> str:
    return struct.pack(">d", value).hex()


def normalizer() -> Normalizer:
    return Normalizer(cluster_label="cluster", cluster="c", static_labels={}, relabeler=None)


def parser_view(body: str, now_ms: int, *, newer_than: int | None = None) -> tuple[set[Sample], list[int]]:
    """What parse_text reads, stamped as the series cache stamps it; and the numbers of the bad lines."""
    samples, errors = parse_text(body)
    norm = normalizer()
    out: set[Sample] = set()
    for name, labels, value, ts in samples:
        final = norm.apply({**dict(labels), "__name__": name})
        assert final is not None
        stamp = now_ms if ts is None else ts
        if newer_than is None or stamp > newer_than:
            out.add((tuple(sorted(final.items())), value_key(value), stamp))
    return out, [n for n, _ in errors]


def warm_up_body(body: str) -> str:
    """A body of the same series texts with ordinary values and the oldest timestamp: a cycle of it
    fills the series cache, so the next cycle of `body` meets its odd values on the hot path."""
    lines = []
    for line in body.split("\n"):
        try:
            split = split_line(line)
        except ValueError:
            continue
        if split is not None:
            lines.append(f"{split[0]} 0 {WARM_TS}")
    return "\n".join(lines) + "\n"


def hot_path_view(body: str, now_ms: int, *, warm: bool) -> tuple[set[Sample], list[int]]:
    """What SeriesCache.process sends for `body` (stale markers aside) and the lines it counted bad;
    `warm` runs `warm_up_body` through the cache first."""
    bad: list[int] = []
    cache = SeriesCache(normalizer(), max_samples_per_send=1000, on_bad_line=lambda n, _: bad.append(n))
    if warm:
        cache.process(warm_up_body(body), now_ms - 1)
        bad.clear()
    batch = cache.process(body, now_ms)
    out: set[Sample] = set()
    for payload, _ in batch.payloads:
        for labels, samples in decode_write_request(decompress(payload)):
            for value, ts in samples:
                if struct.unpack("<Q", struct.pack("<d", value))[0] != STALE_NAN_BITS:
                    out.add((tuple(labels), value_key(value), ts))
    assert batch.bad_lines == len(bad)
    return out, bad
