"""What a catalogue module writes its alerts' `promtool test rules` cases with: the value types, the context
a case is built from, and the series helpers several modules share.

Format: https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/. Input series use
promtool's expanding notation (`0+60x20` = 0, 60, ... 21 samples, one per STEP; `stale` is a staleness
marker). Each case is built from the config, so the tests hold for any fleet and thresholds: the target
cluster fails while another cluster stays healthy, and `exp_alerts` being exact proves the healthy one
raises nothing. promtool_tests.py renders the cases into files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from observe.config import Config
from observe.generate.rules.catalogue.base import Fleet
from observe.generate.rules.model import RuleGenerationError

STEP = 60.0  # seconds between two input samples: every case's `interval`
LOOKBACK = 300.0  # Prometheus' default query.lookback-delta: a series without samples stays visible this long
DIES_AT = 600.0  # when a dying series has its last sample
DYING = f"1x{int(DIES_AT // STEP)}"  # a series with samples from 0 to DIES_AT, then none
Labels = dict[str, str]


@dataclass(frozen=True)
class Check:
    at: float  # seconds since the start of the case
    alert: str
    fires: tuple[Labels, ...]  # the alert's series labels plus `severity`; empty: must stay silent


@dataclass(frozen=True)
class Case:
    series: tuple[tuple[str, str], ...]  # (series selector, promtool values)
    checks: tuple[Check, ...]
    comment: str = ""


@dataclass
class Ctx:
    """What a case needs: the fleet, a target cluster that fails, another that stays healthy."""

    cfg: Config
    fleet: Fleet = field(init=False)

    def __post_init__(self) -> None:
        self.fleet = Fleet(self.cfg)
        names = [c.name for c in self.fleet.metrics_clusters]
        self.target = names[0]
        self.other: str | None = names[1] if len(names) > 1 else None
        self.me = self.cfg.self_cluster
        self.ei = self.cfg.alerts.evaluation_interval
        self.a = self.cfg.alerts

    @property
    def healthy(self) -> list[str]:
        return [self.other] if self.other else []

    @property
    def others(self) -> list[str]:
        """Every metrics cluster but the target."""
        return [c.name for c in self.fleet.metrics_clusters if c.name != self.target]

    def inventory(self, name: str) -> Labels:
        return {**self.cfg.cluster(name).labels, "cluster": name, "self_cluster": self.me}

    def after(self, seconds: float, evals: int = 2) -> float:
        """A time when a condition true since t=0 has held for `seconds`, with rate windows filled."""
        return _ceil(seconds, self.ei) + STEP + evals * self.ei

    def after_death(self, for_: float, *, stale: bool = False) -> float:
        """When an absence alert held `for_` first fires for a DYING series. A staleness marker (one step
        after the last sample) ends the series at once; without one it stays visible for the lookback, plus
        one step because the lookback is inclusive."""
        gone = DIES_AT + STEP if stale else DIES_AT + LOOKBACK + STEP
        return _ceil(gone, self.ei) + _ceil(for_, self.ei)

    def n(self, until: float) -> int:
        """Samples (one a STEP) to cover a case until `until`, with a margin."""
        return int(until // STEP) + 5


CaseBuilder = Callable[[Ctx], list[Case]]


def _ceil(seconds: float, step: float) -> float:
    return math.ceil(seconds / step) * step


def sel(metric: str, labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def clock(n: int) -> str:
    """`n` samples of a timestamp that follows time(): it grows by one STEP a sample."""
    return f"0+{STEP:g}x{n}"


def matcher_labels(selector: str) -> Labels:
    """Label values that satisfy a matcher list like `job="apiserver"` or `job=~".*thanos-receive.*"`."""
    out: Labels = {}
    for name, op, value in re.findall(
        r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', selector
    ):
        if op == "=":
            out[name] = value
        elif op == "=~":
            guess = value.replace(".*", "").replace(".+", "x")
            if not re.fullmatch(value, guess):
                raise RuleGenerationError(
                    f"cannot build a test series matching {name}=~{value!r}; use = or .*word.*"
                )
            out[name] = guess
    return out


def gauge_cases(
    c: Ctx,
    alert: str,
    metric: str,
    labels: Labels,
    bad: str,
    good: str,
    severity: str,
    for_: float,
    *,
    expect: Labels | None = None,
) -> list[Case]:
    """The common shape: the target's series holds `bad`, the healthy cluster's `good`; silent: all good."""
    at = c.after(for_)
    n = c.n(at)
    t_labels = {"cluster": c.target} | labels
    exp = (expect if expect is not None else t_labels) | {"severity": severity}
    healthy = [(sel(metric, {"cluster": o} | labels), f"{good}x{n}") for o in c.healthy]
    return [
        Case((*healthy, (sel(metric, t_labels), f"{bad}x{n}")), (Check(at, alert, (exp,)),), "fires"),
        Case((*healthy, (sel(metric, t_labels), f"{good}x{n}")), (Check(at, alert, ()),), "silent"),
    ]
