"""The series table behind a simulated cluster, rendered as an exporter's `/metrics` or as Prometheus'
`/federate`.

Text format 0.0.4: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
Federation: https://prometheus.io/docs/prometheus/latest/federation/ and `web/federate.go`: every family
is `untyped` with no HELP, every sample carries its millisecond timestamp, the server's external labels
are appended to each series that lacks them, staleness markers are never returned.
Numbers are written as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes them (what client_golang and
Prometheus emit): `1.6663078912e+10`, not Python's `16663078912.0`.

A value is a closed-form function of the time and of the cluster's outage history (`Timeline`), so a
rendering is a pure function of `now`: the same seed, history and `now` give the same bytes, and a
counter never decreases however far apart two renderings are. Rows are plain parallel lists and the
text before each value is built once, because a 100k-series cluster is re-rendered every cycle and only
the numbers change. `python -m observe.demo.fleet` measures it; for 100k series on CPython 3.11:
exposition ~0.15 s, federate ~0.15 s once its view is cached (the first call builds it, ~1 s).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from observe.model import Labels

# Value kinds; each row's `params` tuple is laid out as commented.
CONST: Final = 0  # (value,)
STATE: Final = 1  # (value while healthy, value during an outage)
GAUGE: Final = 2  # (base, relative amplitude, period s, phase, factor during an outage, integer 0|1)
COUNTER: Final = 3  # (base, rate while healthy /s, rate during an outage /s, period s, phase, integer 0|1)
BACKUP_LAST_SUCCESS: Final = 4  # (period s, offset s from epoch, duration s)
BACKUP_RUNS: Final = 5  # (period, offset, duration, which: 0 attempts, 1 successes, 2 failures)
BACKUP_LAST_STATUS: Final = 6  # (period, offset, duration)

# When a row exists: always, only while healthy (a node's exporter that dies), only during an outage
# (a crash-looping container's waiting reason).
ALWAYS: Final = 0
WHEN_HEALTHY: Final = 1
WHEN_UNHEALTHY: Final = 2

_TWO_PI: Final = 2 * math.pi
_MAX_BACKUP_LOOKBACK: Final = 10_000  # runs searched back for the last success: 10k hourly runs ≈ 14 months

Selector = Callable[[str, Labels], bool]
"""A match[] filter: (metric name, labels without __name__) -> keep?"""


def format_value(v: float) -> str:
    """`v` as Go's strconv.FormatFloat(v, 'g', -1, 64), with Prometheus' spellings of NaN and infinities.

    Shortest round-trip digits (Python's repr gives the same digits), exponent form when the decimal
    exponent is < -4 or >= 6 (Go's rule for the shortest form), two-digit exponents at least.
    """
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v.is_integer() and -1e6 < v < 1e6:
        return str(int(v))
    r = repr(v)
    if "e" in r:  # Python switches to exponent form only outside [1e-4, 1e16): Go would too
        return r
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    whole, _, frac = r.partition(".")
    if frac == "0":
        frac = ""
    if whole != "0" and len(whole) <= 6:
        return sign + whole + ("." + frac if frac else "")
    if whole == "0":  # 0.000123 -> exponent -4 is still positional in Go; repr already chose that form
        return sign + r if frac else sign + "0"
    digits = (whole + frac).rstrip("0")
    exp = len(whole) - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e+{exp:02d}"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels_text(labels: Sequence[tuple[str, str]]) -> str:
    return ",".join(f'{n}="{escape_label_value(v)}"' for n, v in labels)


class Timeline:
    """When a cluster was unhealthy: [start, end) intervals of Unix time; the last one may be open."""

    def __init__(self, epoch: float, *, healthy: bool = True) -> None:
        self.epoch = epoch
        self.outages: list[list[float]] = [] if healthy else [[epoch, math.inf]]

    def fail(self, at: float) -> None:
        if not self.outages or self.outages[-1][1] != math.inf:
            if self.outages and at < self.outages[-1][1]:
                raise ValueError(
                    f"outage at {at} starts before the previous one ended ({self.outages[-1][1]})"
                )
            self.outages.append([at, math.inf])

    def recover(self, at: float) -> None:
        if self.outages and self.outages[-1][1] == math.inf:
            if at < self.outages[-1][0]:
                raise ValueError(f"recovery at {at} precedes the outage start {self.outages[-1][0]}")
            self.outages[-1][1] = at

    @property
    def healthy(self) -> bool:
        """Healthy from now on (no outage left open)."""
        return not self.outages or self.outages[-1][1] != math.inf

    def healthy_at(self, now: float) -> bool:
        return not any(a <= now < b for a, b in self.outages)

    def clipped(self, now: float) -> list[tuple[float, float]]:
        """Outages within [epoch, now], as seconds since the epoch."""
        out: list[tuple[float, float]] = []
        for a, b in self.outages:
            lo, hi = max(a, self.epoch), min(b, now)
            if hi > lo:
                out.append((lo - self.epoch, hi - self.epoch))
        return out


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str  # counter | gauge | histogram | untyped
    help: str


@dataclass
class _View:
    """A federation rendering's fixed part for one (job, instance, external labels)."""

    rows: list[int]  # index into the table, or a negative id of a synthetic scrape series
    prefixes: list[str]
    names: list[str]
    labels: list[Labels]
    headers: dict[str, str] = field(default_factory=dict)


# Series a Prometheus adds for every scrape target (https://prometheus.io/docs/concepts/jobs_instances/).
_SCRAPE_SERIES: Final = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)


class SeriesTable:
    """Rows of (family, name, labels, value kind, params, presence), rendered fast; build, then `freeze()`."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._families: dict[str, Family] = {}
        self._pending: dict[str, list[tuple[str, Labels, int, tuple[float, ...], int]]] = {}
        self._frozen = False
        self._lock = threading.Lock()  # guards _views: several HTTP threads may render at once
        self._views: dict[tuple[str, str, tuple[tuple[str, str], ...]], _View] = {}

    # -- building ---------------------------------------------------------------------------------
    def family(self, name: str, type_: str, help_: str) -> None:
        if name not in self._families:
            self._families[name] = Family(name, type_, help_)
            self._pending[name] = []

    def add(
        self,
        family: str,
        labels: Mapping[str, str],
        kind: int,
        params: tuple[float, ...],
        *,
        presence: int = ALWAYS,
        suffix: str = "",
    ) -> None:
        """One row; `suffix` is `_bucket`/`_sum`/`_count` for a histogram's parts."""
        if self._frozen:
            raise RuntimeError("the table is frozen")
        for n, v in labels.items():
            if v == "":
                raise ValueError(f"{family}: label {n!r} is empty (Prometheus treats that as absent)")
        self._pending[family].append((family + suffix, tuple(sorted(labels.items())), kind, params, presence))

    def freeze(self) -> None:
        """Lay the rows out family by family, families sorted by name, as client_golang's Gather does."""
        self.families: list[Family] = []
        self.names: list[str] = []
        self.labels: list[Labels] = []
        self.kinds: list[int] = []
        self.params: list[tuple[float, ...]] = []
        self.presence: list[int] = []
        self.family_of: list[int] = []
        self.prefixes: list[str] = []
        for fi, fname in enumerate(sorted(self._families)):
            fam = self._families[fname]
            self.families.append(fam)
            for name, labels, kind, params, presence in self._pending[fname]:
                self.names.append(name)
                self.labels.append(labels)
                self.kinds.append(kind)
                self.params.append(params)
                self.presence.append(presence)
                self.family_of.append(fi)
                # client_golang writes a bucket's `le` after the other labels
                shown = [lp for lp in labels if lp[0] != "le"] + [lp for lp in labels if lp[0] == "le"]
                self.prefixes.append(f"{name}{{{_labels_text(shown)}}} " if shown else f"{name} ")
        self.headers = [
            f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n"
            f"# TYPE {f.name} {f.type}\n"
            for f in self.families
        ]
        del self._pending
        self._frozen = True

    # -- values -----------------------------------------------------------------------------------
    def _evaluator(self, now: float) -> Callable[[int, tuple[float, ...]], float]:
        tl = self.timeline
        x = max(0.0, now - tl.epoch)
        outages = tl.clipped(now)
        outage_s = sum(b - a for a, b in outages)
        down = not tl.healthy_at(now)
        sin = math.sin
        floor = math.floor

        def wobble(t: float, period: float, phase: float) -> float:
            # F(t) = t + P/(4π)·sin(2πt/P + φ): F' = 1 + ½cos(...) >= ½, so the rate varies but stays positive
            return t + period / (4 * math.pi) * sin(_TWO_PI * t / period + phase)

        def value(kind: int, p: tuple[float, ...]) -> float:
            if kind == CONST:
                return p[0]
            if kind == STATE:
                return p[1] if down else p[0]
            if kind == GAUGE:
                v = p[0] * (1 + p[1] * sin(_TWO_PI * x / p[2] + p[3]))
                if down:
                    v *= p[4]
                return float(floor(v)) if p[5] else v
            if kind == COUNTER:
                base, rate_ok, rate_down, period, phase, integer = p
                healthy = wobble(x, period, phase) - wobble(0.0, period, phase)
                for a, b in outages:
                    healthy -= wobble(b, period, phase) - wobble(a, period, phase)
                v = base + rate_ok * healthy + rate_down * outage_s
                return float(floor(v)) if integer else v
            if kind in (BACKUP_LAST_SUCCESS, BACKUP_RUNS, BACKUP_LAST_STATUS):
                return _backup(kind, p, x, outages, tl.epoch)
            raise ValueError(f"unknown value kind {kind}")

        return value

    def _present(self, now: float) -> Callable[[int], bool]:
        healthy = self.timeline.healthy_at(now)
        return lambda p: p == ALWAYS or (p == WHEN_HEALTHY) == healthy

    def count(self, now: float) -> int:
        """Rows present at `now` (what `/metrics` would show)."""
        present = self._present(now)
        return sum(1 for p in self.presence if present(p))

    # -- renderings -------------------------------------------------------------------------------
    def exposition(self, now: float) -> str:
        value = self._evaluator(now)
        healthy = self.timeline.healthy_at(now)
        kinds, params, presence, fam, prefixes = (
            self.kinds,
            self.params,
            self.presence,
            self.family_of,
            self.prefixes,
        )
        parts: list[str] = []
        append = parts.append
        last = -1
        for i in range(len(kinds)):
            p = presence[i]
            if p and (p == WHEN_HEALTHY) != healthy:
                continue
            if fam[i] != last:
                last = fam[i]
                append(self.headers[last])
            append(prefixes[i] + format_value(value(kinds[i], params[i])) + "\n")
        return "".join(parts)

    def federate(
        self,
        now: float,
        *,
        external_labels: Mapping[str, str],
        job: str,
        instance: str,
        timestamp: float | None = None,
        select: Selector | None = None,
        scrape_duration: float = 0.05,
    ) -> str:
        """What a Prometheus that scraped this table as target (`job`, `instance`) returns from `/federate`.

        Scraped with `honor_labels: true`: a row's own `job`/`instance` win, the target's fill in. The
        target's own `up` and `scrape_*` series are included. Values and timestamps are those at
        `timestamp` (default `now`), the time of the last scrape.
        """
        t = now if timestamp is None else timestamp
        view = self._view(job, instance, external_labels)
        value = self._evaluator(t)
        healthy = self.timeline.healthy_at(t)
        count = self.count(t)
        synthetic = (1.0, scrape_duration, float(count), float(count), 0.0)
        ts = f" {round(t * 1000)}\n"
        kinds, params, presence = self.kinds, self.params, self.presence
        parts: list[str] = []
        append = parts.append
        last = ""
        for j, row in enumerate(view.rows):
            if row >= 0:
                p = presence[row]
                if p and (p == WHEN_HEALTHY) != healthy:
                    continue
            name = view.names[j]
            if select is not None and not select(name, view.labels[j]):
                continue
            if name != last:
                last = name
                append(view.headers[name])
            v = value(kinds[row], params[row]) if row >= 0 else synthetic[-row - 1]
            append(view.prefixes[j] + format_value(v) + ts)
        return "".join(parts)

    def _view(self, job: str, instance: str, external_labels: Mapping[str, str]) -> _View:
        key = (job, instance, tuple(external_labels.items()))
        view = self._views.get(key)
        if view is not None:
            return view
        with self._lock:
            view = self._views.get(key)
            if view is None:
                view = self._build_view(job, instance, external_labels)
                self._views[key] = view
        return view

    def _build_view(self, job: str, instance: str, external_labels: Mapping[str, str]) -> _View:
        target = (("instance", instance), ("job", job))
        entries: list[tuple[str, Labels, int]] = []
        for i, (name, labels) in enumerate(zip(self.names, self.labels, strict=True)):
            have = {n for n, _ in labels}
            missing = tuple(lp for lp in target if lp[0] not in have)
            merged = tuple(sorted(labels + missing)) if missing else labels
            entries.append((name, merged, i))
        for k, name in enumerate(_SCRAPE_SERIES):
            entries.append((name, target, -k - 1))
        entries.sort(key=lambda e: (e[0], e[1]))
        view = _View(rows=[], prefixes=[], names=[], labels=[])
        for name, labels, row in entries:
            have = {n for n, _ in labels}
            # federate.go appends external labels after the series' own, unsorted, only where absent
            shown = list(labels) + [(n, v) for n, v in external_labels.items() if n not in have]
            view.rows.append(row)
            view.names.append(name)
            view.labels.append(labels)
            view.prefixes.append(f"{name}{{{_labels_text(shown)}}} ")
            view.headers.setdefault(name, f"# TYPE {name} untyped\n")
        return view


def _backup(
    kind: int, p: tuple[float, ...], x: float, outages: list[tuple[float, float]], epoch: float
) -> float:
    """Velero schedule arithmetic: run k starts at offset + k·period (s since epoch), ends `duration` later,
    and fails when it starts during an outage."""
    period, offset, duration = p[0], p[1], p[2]
    k_max = math.floor((x - duration - offset) / period)  # last run finished by x
    if k_max < 0:
        return 0.0

    def failed(k: int) -> bool:
        start = offset + k * period
        return any(a <= start < b for a, b in outages)

    if kind == BACKUP_LAST_STATUS:
        return 0.0 if failed(k_max) else 1.0
    if kind == BACKUP_LAST_SUCCESS:
        for k in range(k_max, max(-1, k_max - _MAX_BACKUP_LOOKBACK), -1):
            if not failed(k):
                return epoch + offset + k * period + duration  # a Unix timestamp, as Velero sets it
        return 0.0
    total = k_max + 1
    fails = 0
    for a, b in outages:
        lo = max(0, math.ceil((a - offset) / period))
        hi = min(k_max, math.ceil((b - offset) / period) - 1)
        fails += max(0, hi - lo + 1)
    which = p[3]
    return float(total if which == 0 else total - fails if which == 1 else fails)
