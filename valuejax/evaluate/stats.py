"""Statistics of an edit's effect: per-item paired differences, a seeded bootstrap CI of their mean, and a
p-value of the located set against size-matched random controls, summarised without overclaiming.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from valuejax.errors import ValueJaxError

ALTERNATIVES = ("greater", "less", "two-sided")


def paired_differences(edited: Sequence[float], baseline: Sequence[float]) -> np.ndarray:
  """edited - baseline per item; both must score the same items in the same order."""
  e, b = np.asarray(edited, np.float64), np.asarray(baseline, np.float64)
  if e.shape != b.shape:
    raise ValueJaxError(f"edited and baseline scores differ in shape: {e.shape} vs {b.shape}",
                        fix="score the same items, in the same order, with and without the edit")
  return e - b


def bootstrap_ci(x: Sequence[float], *, level: float = 0.95, n_boot: int = 10000,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap confidence interval of the mean of `x` (resampling items), seeded."""
  x = np.asarray(x, np.float64).reshape(-1)
  if x.size == 0:
    raise ValueJaxError("bootstrap_ci needs at least one value")
  if not 0 < level < 1:
    raise ValueJaxError(f"level must be in (0, 1), got {level}")
  rng = np.random.default_rng(seed)
  means = np.empty(n_boot)
  # Chunked so 10k resamples of a few thousand items stay small in memory.
  step = max(1, 2_000_000 // x.size)
  for start in range(0, n_boot, step):
    stop = min(n_boot, start + step)
    means[start:stop] = x[rng.integers(0, x.size, (stop - start, x.size))].mean(1)
  alpha = (1 - level) / 2
  lo, hi = np.quantile(means, [alpha, 1 - alpha])
  return float(lo), float(hi)


def permutation_p(observed: float, controls: Sequence[float], alternative: str = "greater") -> float:
  """Rank p-value of the located edit's effect among R random-control effects.

  greater: (1 + #{c >= observed}) / (1 + R); less: (1 + #{c <= observed}) / (1 + R); two-sided: twice the
  smaller one-sided p, capped at 1. The +1 counts the observed set as one draw, so p >= 1 / (1 + R): with
  19 controls the smallest possible p is 0.05.
  """
  c = np.asarray(controls, np.float64).reshape(-1)
  if alternative not in ALTERNATIVES:
    raise ValueJaxError(f"unknown alternative {alternative!r}", fix=f"use one of {ALTERNATIVES}")
  if c.size == 0:
    raise ValueJaxError("a permutation p-value needs at least one random control",
                        fix="run random controls (valuejax.intervene.control_edits)")
  greater = (1 + np.sum(c >= observed)) / (1 + c.size)
  less = (1 + np.sum(c <= observed)) / (1 + c.size)
  if alternative == "greater":
    return float(greater)
  if alternative == "less":
    return float(less)
  return float(min(1.0, 2 * min(greater, less)))



def holm(p_values: Sequence[float]) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values (same order as given): the family-wise error over all tests stays at
  alpha when each adjusted p is compared with alpha. Uniformly more powerful than plain Bonferroni."""
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p, kind="stable")
  m = len(p)
  adjusted = np.empty(m)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    adjusted[i] = running
  return adjusted

@dataclasses.dataclass(frozen=True)
class EffectSummary:
  """An edit's effect on a per-item score, with its uncertainty and (if controls ran) its p-value."""
  name: str
  mean: float  # mean paired difference (edited - baseline)
  ci_low: float
  ci_high: float
  n: int  # items
  level: float = 0.95
  p_value: float | None = None  # vs random controls; None when none ran
  n_controls: int = 0
  alternative: str = "two-sided"
  alpha: float = 0.05
  control_mean: float | None = None

  @property
  def ci_excludes_zero(self) -> bool:
    return self.ci_low > 0 or self.ci_high < 0

  @property
  def significant(self) -> bool:
    """Against random controls when they ran (the stronger test: is this set special?), else the CI."""
    if self.p_value is not None:
      return self.p_value <= self.alpha
    return self.ci_excludes_zero

  def describe(self) -> str:
    head = (f"{self.name}: mean change {self.mean:+.4g} ({self.level:.0%} CI [{self.ci_low:+.4g}, "
            f"{self.ci_high:+.4g}], n={self.n})")
    if self.p_value is not None:
      test = (f"p={self.p_value:.3g} ({self.alternative}) against {self.n_controls} random controls "
              f"(their mean change {self.control_mean:+.4g})")
      floor = (2 if self.alternative == "two-sided" else 1) / (1 + self.n_controls)
      if floor > self.alpha:
        test += f"; with so few controls p cannot go below {floor:.3g}"
    else:
      test = "no random controls, judged by whether the CI excludes 0"
    verdict = (f"significant at alpha {self.alpha:g}" if self.significant
               else "no significant effect")
    return f"{head}; {test}: {verdict}"

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "significant": self.significant}


def summarize_effect(edited: Sequence[float], baseline: Sequence[float], *,
                     controls: Sequence[Sequence[float]] | None = None, name: str = "edit",
                     alternative: str = "two-sided", level: float = 0.95, alpha: float = 0.05,
                     n_boot: int = 10000, seed: int = 0) -> EffectSummary:
  """Summary of an edit's per-item effect; `controls` are per-item scores of R random-control edits
  ([R, n]), whose mean paired differences form the null distribution."""
  d = paired_differences(edited, baseline)
  if d.size == 0:
    raise ValueJaxError(f"{name}: no items to summarise")
  lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
  p, n_controls, control_mean = None, 0, None
  if controls is not None and len(controls):
    c = np.asarray(controls, np.float64)
    if c.ndim != 2 or c.shape[1] != d.size:
      raise ValueJaxError(f"controls must be [R, {d.size}] per-item scores, got shape {c.shape}")
    effects = (c - np.asarray(baseline, np.float64)[None]).mean(1)
    p = permutation_p(float(d.mean()), effects, alternative)
    n_controls, control_mean = int(c.shape[0]), float(effects.mean())
  return EffectSummary(name, float(d.mean()), lo, hi, int(d.size), level, p, n_controls, alternative,
                       alpha, control_mean)


@dataclasses.dataclass(frozen=True)
class PooledEdit:
  """One edit of a pooled test: per-item scores without and with it, its R controls' per-item scores, the
  sign that turns its predicted direction into "up" (+1 greater, -1 less), and the stratum of its items
  (edits scored on the same items share one, e.g. both modes of one pair). NaN marks an unscored item."""
  baseline: np.ndarray  # [n]
  edited: np.ndarray  # [n]
  controls: np.ndarray  # [R, n]
  sign: float
  stratum: str


@dataclasses.dataclass(frozen=True)
class PooledTest:
  """The mean signed effect of several edits, its bootstrap CI, and its p-value against control replicates
  (replicate r is the same statistic over control r of every edit: one draw of the whole family)."""
  mean: float
  ci_low: float
  ci_high: float
  p_value: float | None
  n_edits: int
  n_controls: int
  control_effects: list[float]
  level: float = 0.95
  alpha: float = 0.05

  @property
  def significant(self) -> bool:
    """Causal and specific: the CI lies in the predicted direction and the controls do less (p <= alpha)."""
    return self.p_value is not None and self.p_value <= self.alpha and self.ci_low > 0

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "significant": self.significant}


def _signed_mean(edits: Sequence[PooledEdit], scores) -> float:
  return float(np.mean([e.sign * np.nanmean(s - e.baseline) for e, s in zip(edits, scores)]))


def pooled_test(edits: Sequence[PooledEdit], *, level: float = 0.95, alpha: float = 0.05, n_boot: int = 10000,
                seed: int = 0) -> PooledTest:
  """One test for a family of edits: the mean over edits of each edit's signed mean change.

  More powerful than one test per edit when every edit is predicted to move its metric (the directions are
  folded in by `sign`), and a single p-value needs no multiplicity correction. The null distribution is
  the same statistic over control replicates: replicate r takes the r-th control of every edit (so
  R = the fewest controls any edit has). The CI resamples items within each stratum, the same draw for
  every edit of a stratum, so edits on shared items keep their correlation.
  """
  edits = list(edits)
  if not edits:
    raise ValueJaxError("a pooled test needs at least one edit")
  for e in edits:
    if e.baseline.shape != e.edited.shape or e.controls.ndim != 2 or e.controls.shape[1] != e.baseline.size:
      raise ValueJaxError(f"pooled edit shapes disagree: baseline {e.baseline.shape}, edited {e.edited.shape}, "
                          f"controls {e.controls.shape}", fix="pass [n], [n] and [R, n] per-item scores")
  observed = _signed_mean(edits, [e.edited for e in edits])
  r = min(e.controls.shape[0] for e in edits)
  ctrl = [_signed_mean(edits, [e.controls[k] for e in edits]) for k in range(r)]
  ctrl = [c for c in ctrl if np.isfinite(c)]
  rng = np.random.default_rng(seed)
  draws = {s: rng.integers(0, n, (n_boot, n)) for s, n in {e.stratum: e.baseline.size for e in edits}.items()}
  boot = np.zeros(n_boot)
  for e in edits:
    d = (e.edited - e.baseline)[draws[e.stratum]]  # [n_boot, n]
    boot += e.sign * np.nanmean(d, axis=1)
  boot /= len(edits)
  tail = (1 - level) / 2
  lo, hi = np.nanquantile(boot, [tail, 1 - tail])
  p = permutation_p(observed, ctrl, "greater") if ctrl else None
  return PooledTest(observed, float(lo), float(hi), p, len(edits), len(ctrl), ctrl, level, alpha)
