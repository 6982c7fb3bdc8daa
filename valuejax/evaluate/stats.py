"""Statistics of an edit's effect: per-item paired differences, a seeded bootstrap CI of their mean, and a
p-value of the located set against size-matched random controls, summarised without overclaiming.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

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


# Below this many items a mean's CI is studentized (bootstrap-t) instead of read off the percentiles of the
# bootstrap means. The percentile interval of a mean is too narrow at small n: it uses the plug-in SD (a factor
# sqrt((n - 1) / n)) and normal rather than t tails, so at n = 7 it covers about 88% for 95%. Both errors shrink
# like 1/n; from 30 items on the difference in width is under 4% and the percentile interval, which never
# leaves the range of the data, is kept.
SMALL_N = 30


def _studentized(stat: float, se: float, boot: np.ndarray, boot_se: np.ndarray, level: float) -> tuple[float, float]:
  """Bootstrap-t interval: the quantiles of (stat* - stat) / se* turned around the estimate and scaled by its SE.

  A resample with se* = 0 (all its items equal) gives no t; it is left out (with real-valued scores such a
  resample has probability about n^(1 - n)). A sample whose SE is 0 has the degenerate interval [stat, stat]."""
  if not se > 0:
    return float(stat), float(stat)
  ok = boot_se > 0
  t = (boot[ok] - stat) / boot_se[ok]
  tail = (1 - level) / 2
  q_lo, q_hi = np.nanquantile(t, [tail, 1 - tail])
  return float(stat - q_hi * se), float(stat - q_lo * se)


def bootstrap_ci(x: Sequence[float], *, level: float = 0.95, n_boot: int = 10000,
                 seed: int = 0) -> tuple[float, float]:
  """Bootstrap confidence interval of the mean of `x` (resampling items), seeded: percentile from SMALL_N items
  on, studentized (bootstrap-t, each resample's mean over its own standard error) below, where the percentile
  interval undercovers (see SMALL_N)."""
  x = np.asarray(x, np.float64).reshape(-1)
  if x.size == 0:
    raise ValueJaxError("bootstrap_ci needs at least one value")
  if not 0 < level < 1:
    raise ValueJaxError(f"level must be in (0, 1), got {level}")
  rng = np.random.default_rng(seed)
  means = np.empty(n_boot)
  small = 1 < x.size < SMALL_N
  ses = np.empty(n_boot) if small else None
  # Chunked so 10k resamples of a few thousand items stay small in memory.
  step = max(1, 2_000_000 // x.size)
  for start in range(0, n_boot, step):
    stop = min(n_boot, start + step)
    draw = x[rng.integers(0, x.size, (stop - start, x.size))]
    means[start:stop] = draw.mean(1)
    if small:
      ses[start:stop] = draw.std(1, ddof=1) / np.sqrt(x.size)
  if small:
    return _studentized(float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)), means, ses, level)
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


@dataclasses.dataclass(frozen=True)
class SequentialP:
  """A sequential Monte Carlo p-value (Besag & Clifford 1991) and every look that led to it.

  Replicates are looked at one at a time in their fixed order; the run stops at the first L at which `h` of
  them reach the observed statistic (p = h / L), or after `r_max` with G < h reaching it (p = (G + 1) /
  (r_max + 1)). Under the null (the observed statistic exchangeable with the replicates) P(p <= a) = a at
  every value a that p can take, as for the fixed-R rank p, while a clear null stops after about h / p looks.
  """
  p_value: float | None  # None while undecided (fewer than r_max replicates given and h not reached)
  h: int
  r_max: int
  looked: int  # L: replicates looked at, the non-finite ones included
  hits: int  # G: replicates that reached the observed statistic
  stopped: str  # "h reached", "all replicates" or "undecided"
  running: list[int]  # G after each replicate looked at, in order
  skipped: list[int]  # looked-at replicates whose statistic is not finite: neither a hit nor a draw

  @property
  def decided(self) -> bool:
    return self.p_value is not None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def sequential_p(observed: float, controls: Sequence[float], h: int, r_max: int,
                 alternative: str = "greater") -> SequentialP:
  """The Besag-Clifford sequential p of `observed` against `controls` in their given order (see SequentialP).

  `h` and `r_max` must be fixed before any score. `controls` may hold fewer than `r_max` replicates (those
  scored so far: then the answer may be undecided) or more (scored in a block past the stop: they are not
  looked at). A replicate reaches the observed one when it is >= it ("greater") or <= it ("less"); ties count
  as reaching, which keeps the p conservative. A non-finite replicate (no item scored) is skipped: it is
  neither a hit nor a draw, and the p at r_max counts only the finite ones, (G + 1) / (finite + 1).
  """
  if alternative not in ("greater", "less"):
    raise ValueJaxError(f"a sequential p is one-sided; got alternative {alternative!r}", fix="use greater or less")
  if not (isinstance(h, (int, np.integer)) and h >= 1 and isinstance(r_max, (int, np.integer)) and r_max >= h):
    raise ValueJaxError(f"a sequential p needs 1 <= h <= r_max, got h={h}, r_max={r_max}",
                        "intervene.sequential_h", "set sequential_h to at most the primary test's replicates")
  c = np.asarray(controls, np.float64).reshape(-1)[:r_max]
  hits, running, skipped = 0, [], []
  for i, v in enumerate(c):
    if not np.isfinite(v):
      skipped.append(i)
    elif (v >= observed) if alternative == "greater" else (v <= observed):
      hits += 1
    running.append(hits)
    if hits == h:
      return SequentialP(h / (i + 1 - len(skipped)), int(h), int(r_max), i + 1, hits, "h reached", running, skipped)
  if c.size < r_max:
    return SequentialP(None, int(h), int(r_max), int(c.size), hits, "undecided", running, skipped)
  finite = r_max - len(skipped)
  return SequentialP((hits + 1) / (finite + 1), int(h), int(r_max), int(r_max), hits, "all replicates", running,
                     skipped)


def prediction_t_p(observed: float, controls: Sequence[float], alternative: str = "greater") -> float | None:
  """p of the observed statistic as a new draw from the controls' distribution, by a t prediction interval.

  t = (observed - mean_c) / (sd_c * sqrt(1 + 1/R)) with R - 1 degrees of freedom, one-sided in the predicted
  direction. It assumes the replicates are normal, which the rank p does not, and can go below 1 / (1 + R);
  it is read beside the rank p, never instead of it. None with fewer than 2 finite controls or sd_c = 0.
  """
  from scipy import stats as sps
  c = np.asarray(controls, np.float64).reshape(-1)
  c = c[np.isfinite(c)]
  if c.size < 2 or not c.std(ddof=1) > 0:
    return None
  t = (observed - c.mean()) / (c.std(ddof=1) * np.sqrt(1 + 1 / c.size))
  return float(sps.t.sf(t if alternative == "greater" else -t, c.size - 1))


# The declared reading of the t prediction p: trusted only when Shapiro-Wilk does not reject the replicates'
# normality at NORMALITY_ALPHA and there are at least NORMALITY_MIN_N of them (below that the test can hardly
# reject anything); otherwise the Monte Carlo (rank or sequential) p is the one to read.
NORMALITY_ALPHA = 0.05
NORMALITY_MIN_N = 8


@dataclasses.dataclass(frozen=True)
class Normality:
  """Whether the control replicates' effects look normal, as the t prediction p assumes: their number, the
  Shapiro-Wilk W and p, the sample skewness and excess kurtosis (bias-corrected, as scipy's bias=False), and
  the declared reading (`trusted`, and `reading` in words)."""
  n: int
  w: float | None
  p: float | None
  skew: float | None
  excess_kurtosis: float | None
  trusted: bool
  reading: str

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def normality_check(controls: Sequence[float], *, alpha: float = NORMALITY_ALPHA,
                    min_n: int = NORMALITY_MIN_N) -> Normality:
  """Shapiro-Wilk, skewness and excess kurtosis of the finite control replicates, read as declared: the t
  prediction p is "trusted" only when Shapiro-Wilk does not reject at `alpha` and n >= `min_n`. W and p need
  n >= 3 and replicates that are not all equal (None otherwise), skewness n >= 3, kurtosis n >= 4."""
  from scipy import stats as sps
  c = np.asarray(controls, np.float64).reshape(-1)
  c = c[np.isfinite(c)]
  n = int(c.size)
  varies = n >= 3 and bool(np.ptp(c) > 0)
  w = p = skew = kurt = None
  if varies:
    w, p = (float(x) for x in sps.shapiro(c))
    skew = float(sps.skew(c, bias=False))
    kurt = float(sps.kurtosis(c, fisher=True, bias=False)) if n >= 4 else None
  if not varies:
    reading = "cannot check normality (fewer than 3 replicates, or all equal): read the Monte Carlo p"
  elif p < alpha:
    reading = "normality rejected: read the Monte Carlo p"
  elif n < min_n:
    reading = f"too few replicates to check normality (n < {min_n}): read the Monte Carlo p"
  else:
    reading = "trusted"
  return Normality(n, w, p, skew, kurt, reading == "trusted", reading)


def excess_interval(observed: float, observed_se: float, controls: Sequence[float], *,
                    level: float = 0.95) -> tuple[float, float, float] | None:
  """The excess over controls, observed - mean_c, and its `level` interval (estimate, low, high).

  What it covers: the located edit's expected effect (over the sampling of items) minus the expected effect of
  a random neuron set of the same shape (over the draw of sets), on these items. Its SE combines the located
  effect's SE over items (`observed_se`, e.g. the SD of its item bootstrap) and the controls' mean's SE
  (sd_c / sqrt(R)), with t quantiles on R - 1 degrees of freedom. The located and the control effects are
  scored on the same items, so their item noise is positively correlated and the interval is, if anything,
  too wide. None with fewer than 2 finite controls.
  """
  from scipy import stats as sps
  c = np.asarray(controls, np.float64).reshape(-1)
  c = c[np.isfinite(c)]
  if c.size < 2 or not np.isfinite(observed_se):
    return None
  excess = float(observed - c.mean())
  half = float(sps.t.ppf((1 + level) / 2, c.size - 1) * np.sqrt(observed_se ** 2 + c.var(ddof=1) / c.size))
  return excess, excess - half, excess + half


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
  (replicate r is the same statistic over control r of every edit: one draw of the whole family).

  With a sequential p (`sequential` set), `p_value` is its p, `n_controls` and `control_effects` are the
  replicates it looked at, and `replicates_scored` may be more (a block scored past the stop). `t_p` and the
  excess over controls (`excess`, `excess_low`, `excess_high`) are read beside the rank p (see prediction_t_p
  and excess_interval); `normality` (normality_check of the same replicates) says whether t_p may be trusted."""
  mean: float
  ci_low: float
  ci_high: float
  p_value: float | None
  n_edits: int
  n_controls: int
  control_effects: list[float]
  level: float = 0.95
  alpha: float = 0.05
  sequential: dict | None = None  # SequentialP.to_dict(): h, r_max, the looks and why it stopped
  replicates_scored: int | None = None
  t_p: float | None = None
  excess: float | None = None
  excess_low: float | None = None
  excess_high: float | None = None
  ci_method: str = "percentile"  # or "bootstrap-t" below SMALL_N items in a stratum
  normality: dict | None = None  # Normality.to_dict() of the replicates behind t_p: whether to trust it

  @property
  def significant(self) -> bool:
    """Causal and specific: the CI lies in the predicted direction and the controls do less (p <= alpha)."""
    return self.p_value is not None and self.p_value <= self.alpha and self.ci_low > 0

  def to_dict(self) -> dict:
    return {**dataclasses.asdict(self), "significant": self.significant}


def _signed_mean(edits: Sequence[PooledEdit], scores) -> float:
  return float(np.mean([e.sign * np.nanmean(s - e.baseline) for e, s in zip(edits, scores)]))


def replicate_effects(edits: Sequence[PooledEdit], start: int = 0) -> list[float]:
  """The pooled statistic of each control replicate from `start` on, in order (replicate r = control r of
  every edit; as many as the fewest controls any edit has). NaN where no item of some edit is scored."""
  r = min(e.controls.shape[0] for e in edits)
  with np.errstate(all="ignore"):
    return [_signed_mean(edits, [e.controls[k] for e in edits]) for k in range(start, r)]


def pooled_test(edits: Sequence[PooledEdit], *, level: float = 0.95, alpha: float = 0.05, n_boot: int = 10000,
                seed: int = 0, sequential_h: int = 0, r_max: int | None = None) -> PooledTest:
  """One test for a family of edits: the mean over edits of each edit's signed mean change.

  More powerful than one test per edit when every edit is predicted to move its metric (the directions are
  folded in by `sign`), and a single p-value needs no multiplicity correction. The null distribution is
  the same statistic over control replicates: replicate r takes the r-th control of every edit (so
  R = the fewest controls any edit has). The CI resamples items within each stratum, the same draw for
  every edit of a stratum, so edits on shared items keep their correlation; below SMALL_N items in a stratum
  it is studentized (bootstrap-t, each resample over its own standard error), as bootstrap_ci is.

  `sequential_h` > 0: the p is Besag and Clifford's sequential p over the replicates in order, stopping at
  `sequential_h` hits, with `r_max` (default: the replicates given) replicates at most; 0: the fixed-R rank p.
  """
  edits = list(edits)
  if not edits:
    raise ValueJaxError("a pooled test needs at least one edit")
  for e in edits:
    if e.baseline.shape != e.edited.shape or e.controls.ndim != 2 or e.controls.shape[1] != e.baseline.size:
      raise ValueJaxError(f"pooled edit shapes disagree: baseline {e.baseline.shape}, edited {e.edited.shape}, "
                          f"controls {e.controls.shape}", fix="pass [n], [n] and [R, n] per-item scores")
  observed = _signed_mean(edits, [e.edited for e in edits])
  scored = replicate_effects(edits)
  seq = None
  if sequential_h:
    seq = sequential_p(observed, scored, sequential_h, len(scored) if r_max is None else r_max)
    scored_n, looked = len(scored), scored[:seq.looked]
  else:
    scored_n, looked = len(scored), scored
  ctrl = [c for c in looked if np.isfinite(c)]
  rng = np.random.default_rng(seed)
  sizes = {e.stratum: e.baseline.size for e in edits}
  draws = {s: rng.integers(0, n, (n_boot, n)) for s, n in sizes.items()}
  small = min(sizes.values()) < SMALL_N
  boot = np.zeros(n_boot)
  # With few items: the SE of the statistic by its linearisation (each item's influence on each edit's mean
  # over its scored items, summed over the edits of its stratum), for the sample and for every resample.
  var, boot_var = 0.0, np.zeros(n_boot)
  for stratum, n in sizes.items():
    infl, boot_infl = np.zeros(n), np.zeros((n_boot, n))
    for e in (e for e in edits if e.stratum == stratum):
      full = e.edited - e.baseline
      d = full[draws[stratum]]  # [n_boot, n]
      with np.errstate(all="ignore"):
        m = np.nanmean(d, axis=1)
      boot += e.sign * m
      if small:
        w = e.sign / len(edits)
        ok, bok = np.isfinite(full), np.isfinite(d)
        infl += np.where(ok, (full - np.nanmean(full)) / max(1, ok.sum()), 0.0) * w
        boot_infl += np.where(bok, (d - m[:, None]) / np.maximum(1, bok.sum(1))[:, None], 0.0) * w
    if small and n > 1:
      var += np.sum(infl ** 2) * n / (n - 1)
      boot_var += np.sum(boot_infl ** 2, axis=1) * n / (n - 1)
  boot /= len(edits)
  tail = (1 - level) / 2
  if small and min(sizes.values()) > 1:
    lo, hi = _studentized(observed, float(np.sqrt(var)), boot, np.sqrt(boot_var), level)
    method = "bootstrap-t"
  else:
    lo, hi = np.nanquantile(boot, [tail, 1 - tail])
    method = "percentile"
  if seq is not None:
    p = seq.p_value
  else:
    p = permutation_p(observed, ctrl, "greater") if ctrl else None
  excess = excess_interval(observed, float(np.nanstd(boot, ddof=1)), ctrl, level=level)
  return PooledTest(observed, float(lo), float(hi), p, len(edits), len(ctrl), ctrl, level, alpha,
                    None if seq is None else seq.to_dict(), scored_n, prediction_t_p(observed, ctrl),
                    *(excess if excess is not None else (None, None, None)), method,
                    normality_check(ctrl).to_dict())


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
  """Pearson's r of paired values (non-finite pairs dropped); None with fewer than 3 pairs or no spread."""
  ok = np.isfinite(x) & np.isfinite(y)
  if int(ok.sum()) < 3:  # before the means: an empty slice has none
    return None
  x, y = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
  if not (np.any(x) and np.any(y)):
    return None
  return float(np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y)))


@dataclasses.dataclass(frozen=True)
class MirrorCorrelation:
  """rho over replicates between a pair's two mirrored edits (enhance and -reverse; toward support and -toward
  conflict), per pair (`pairs`: stratum, rho, replicates, item_rho, items) and pooled over the family (`rho`,
  `n`), beside the same correlation over items for the located edits (`item_rho`, `n_items`)."""
  rho: float | None
  n: int
  item_rho: float | None
  n_items: int
  pairs: list[dict]

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def mirror_correlation(edits: Sequence[PooledEdit]) -> MirrorCorrelation:
  """How much a pair's two mirrored edits move together, counted in their predicted directions.

  In each stratum the edits predicted up (sign +1) pair, in order, with those predicted down (sign -1). For a
  pair (a, b) and replicate r: x_r = sign_a * mean(control_a[r] - baseline), y_r = sign_b * mean(control_b[r] -
  baseline) (NaN items left out), over the replicates both have; rho is Pearson's r of (x_r, y_r). Mirrored
  replicates use one random family for both edits, as the located pair uses one located family, so their
  effects are correlated the way the located pair's are; the located edits' per-item effects (x_i = sign_a *
  (edited_a - baseline) on item i, y_i likewise) give the reference correlation. Pooled over pairs: Pearson's
  r of every pair's values centred on that pair's means, so pairs whose effects differ in level do not make a
  correlation that is in no pair. None where fewer than 3 values or no spread.
  """
  pairs, xs, ys, ixs, iys = [], [], [], [], []
  strata = list(dict.fromkeys(e.stratum for e in edits))
  for s in strata:
    up = [e for e in edits if e.stratum == s and e.sign > 0]
    down = [e for e in edits if e.stratum == s and e.sign < 0]
    for a, b in zip(up, down):
      r = min(a.controls.shape[0], b.controls.shape[0])
      with np.errstate(all="ignore"):
        x = a.sign * np.nanmean(a.controls[:r] - a.baseline, axis=1) if r else np.zeros(0)
        y = b.sign * np.nanmean(b.controls[:r] - b.baseline, axis=1) if r else np.zeros(0)
      ix, iy = a.sign * (a.edited - a.baseline), b.sign * (b.edited - b.baseline)
      ok, iok = np.isfinite(x) & np.isfinite(y), np.isfinite(ix) & np.isfinite(iy)
      pairs.append({"stratum": s, "rho": _pearson(x, y), "replicates": int(ok.sum()),
                    "item_rho": _pearson(ix, iy), "items": int(iok.sum())})
      for v, w, keep, to_x, to_y in ((x, y, ok, xs, ys), (ix, iy, iok, ixs, iys)):
        if keep.any():
          to_x.append(v[keep] - v[keep].mean())
          to_y.append(w[keep] - w[keep].mean())
  cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)
  x, y, ix, iy = cat(xs), cat(ys), cat(ixs), cat(iys)
  return MirrorCorrelation(_pearson(x, y), int(x.size), _pearson(ix, iy), int(ix.size), pairs)


@dataclasses.dataclass(frozen=True)
class DoseEdit:
  """One located edit at one dose: its gamma, per-item scores unedited and edited (NaN = unparsed), the sign
  of its predicted direction and its stratum (the unit, whose items every edit of the unit shares)."""
  gamma: float
  baseline: np.ndarray
  edited: np.ndarray
  sign: float
  stratum: str


def _dose_line(gammas: np.ndarray, effects: np.ndarray) -> tuple[float, float]:
  """Least-squares (a, b) of effect = a + b * gamma (NaN effects left out)."""
  ok = np.isfinite(effects)
  b, a = np.polyfit(gammas[ok], effects[ok], 1)
  return float(a), float(b)


def dose_response_fit(edits: Sequence[DoseEdit], *, level: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any]:
  """effect = a + b * gamma by least squares over the edits' signed mean changes, with paired-bootstrap CIs:
  each replicate resamples the items of every stratum once and uses that one draw for every edit of the
  stratum, at every gamma, so the CI of b holds the items fixed across doses as the design does. Needs two
  distinct gammas. Returns {"a", "b", "a_ci", "b_ci", "level", "gammas", "means" (the mean signed change per
  gamma), "n_edits", "n_boot"}."""
  if len({e.gamma for e in edits}) < 2:
    raise ValueJaxError("a dose-response fit needs edits at two gammas at least")
  gammas = np.asarray([e.gamma for e in edits], np.float64)
  diffs = [e.sign * (np.asarray(e.edited, np.float64) - np.asarray(e.baseline, np.float64)) for e in edits]

  def effects(draw: dict[str, np.ndarray] | None) -> np.ndarray:
    with np.errstate(all="ignore"):
      return np.asarray([np.nanmean(d if draw is None else d[draw[e.stratum]]) if np.isfinite(d).any() else np.nan
                         for e, d in zip(edits, diffs)])

  observed = effects(None)
  a, b = _dose_line(gammas, observed)
  sizes = {}
  for e, d in zip(edits, diffs):
    if sizes.setdefault(e.stratum, d.size) != d.size:
      raise ValueJaxError(f"edits of stratum {e.stratum!r} score different numbers of items")
  rng = np.random.default_rng(seed)
  boot = np.empty((n_boot, 2))
  for i in range(n_boot):
    draw = {s: rng.integers(0, n, n) for s, n in sizes.items()}
    boot[i] = _dose_line(gammas, effects(draw))
  tail = (1 - level) / 2
  ci = lambda col: [float(np.nanquantile(boot[:, col], tail)), float(np.nanquantile(boot[:, col], 1 - tail))]
  levels = sorted(set(gammas.tolist()))
  means = [float(np.nanmean(observed[gammas == g])) for g in levels]
  return {"a": a, "b": b, "a_ci": ci(0), "b_ci": ci(1), "level": level, "gammas": levels, "means": means,
          "n_edits": len(edits), "n_boot": n_boot}
