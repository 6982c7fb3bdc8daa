"""The sequential Monte Carlo p (Besag & Clifford) against exhaustive enumeration of the exchangeable null,
the t-based p and the excess interval, the small-sample bootstrap-t interval's coverage, and the sequential
primary test through the intervene stage's evaluation (replicates after the stop are never scored)."""

from __future__ import annotations

import itertools
import math
import types
from fractions import Fraction

import numpy as np
import pytest

from valuejax.errors import ValueJaxError
from valuejax.evaluate import (PooledEdit, bootstrap_ci, excess_interval, permutation_p, pooled_test, prediction_t_p,
                               sequential_p)
from valuejax.evaluate.stats import SMALL_N


def _null_distribution(h: int, r_max: int) -> dict[Fraction, Fraction]:
  """Exact law of the sequential p when the observed statistic is uniformly ranked among r_max + 1
  exchangeable values: K = #replicates above it is uniform on {0..r_max}, and given K the replicates above it
  sit at a uniformly random K-subset of the r_max positions. Every (K, subset) is enumerated."""
  law: dict[Fraction, Fraction] = {}
  for k in range(r_max + 1):
    for hits in itertools.combinations(range(r_max), k):
      controls = [1.0 if i in hits else -1.0 for i in range(r_max)]  # observed = 0
      s = sequential_p(0.0, controls, h, r_max)
      p = Fraction(h, s.looked) if s.stopped == "h reached" else Fraction(s.hits + 1, r_max + 1)
      assert s.p_value == pytest.approx(float(p), abs=0)
      w = Fraction(1, (r_max + 1) * math.comb(r_max, k))
      law[p] = law.get(p, Fraction(0)) + w
  assert sum(law.values()) == 1
  return law


def test_sequential_p_matches_the_hand_table_for_h2_rmax5():
  # h = 2, R_max = 5. K = 0 or 1 replicates above: no stop, p = (G + 1) / 6, each with P = 1/6. Otherwise
  # the run stops at the second hit, L = 2..5, p = 2 / L; P(L = 2) = sum_K C(3, K-2) / (6 C(5, K)) = 1/3,
  # P(L = 3) = 1/6, P(L = 4) = 1/10, P(L = 5) = 1/15.
  F = Fraction
  want = {F(1, 6): F(1, 6), F(1, 3): F(1, 6), F(2, 5): F(1, 15), F(1, 2): F(1, 10), F(2, 3): F(1, 6), F(1): F(1, 3)}
  assert _null_distribution(2, 5) == want
  # Besag-Clifford: P(p <= a) = a at every a on the support (exact, not just <=).
  cdf = F(0)
  for a in sorted(want):
    cdf += want[a]
    assert cdf == a


@pytest.mark.parametrize("h,r_max", [(1, 1), (1, 4), (2, 2), (3, 6), (4, 9), (5, 10)])
def test_sequential_p_is_exactly_valid_on_its_support(h, r_max):
  law = _null_distribution(h, r_max)
  cdf = Fraction(0)
  for a in sorted(law):
    cdf += law[a]
    assert cdf == a  # so P(p <= alpha) <= alpha for every alpha, equality on the support


def test_sequential_p_stops_logs_and_handles_edges():
  s = sequential_p(0.5, [0.1, 0.9, 0.2, 0.6, 0.7, 0.0], h=2, r_max=6)
  assert (s.p_value, s.looked, s.hits, s.stopped) == (2 / 4, 4, 2, "h reached") and s.running == [0, 1, 1, 2]
  # replicates past the stop (a block scored at once) are not looked at
  assert sequential_p(0.5, [0.1, 0.9, 0.2, 0.6, 0.7, 0.0, 9, 9], 2, 8).looked == 4
  s = sequential_p(5.0, [1, 2, 3], h=2, r_max=3)
  assert (s.p_value, s.stopped, s.hits) == (1 / 4, "all replicates", 0)
  assert sequential_p(5.0, [1, 2, 3], h=2, r_max=4).p_value is None  # undecided: one replicate not yet scored
  assert sequential_p(0.5, [0.5, 0.5], h=2, r_max=9).p_value == 1.0  # ties reach: conservative
  assert sequential_p(0.5, [0.1, 0.9], h=1, r_max=9, alternative="less").p_value == 1.0
  s = sequential_p(0.5, [np.nan, 0.9, 0.1, 0.8], h=2, r_max=4)
  assert (s.p_value, s.skipped) == (2 / 3, [0])
  assert sequential_p(0.5, [np.nan, 0.1, 0.2], h=2, r_max=3).p_value == 1 / 3
  # h = r_max: the fixed-R rank p, read the sequential way
  c = np.random.default_rng(0).normal(size=7)
  for obs in (-0.3, 0.4, 3.0):
    fixed = permutation_p(obs, c, "greater")
    seq = sequential_p(obs, c, 7, 7).p_value
    assert seq == pytest.approx(fixed) or (seq == 1.0 and fixed > 7 / 8)
  for bad in [(0, 3), (4, 3)]:
    with pytest.raises(ValueJaxError, match="h <= r_max"):
      sequential_p(0.0, [1.0], *bad)
  with pytest.raises(ValueJaxError, match="one-sided"):
    sequential_p(0.0, [1.0], 1, 1, alternative="two-sided")


def test_prediction_t_p_and_excess_interval():
  from scipy import stats as sps
  c = np.array([0.0, 1.0, 2.0, 3.0])  # mean 1.5, sd 1.29
  sd = c.std(ddof=1)
  t = (4.0 - 1.5) / (sd * np.sqrt(1 + 1 / 4))
  assert prediction_t_p(4.0, c) == pytest.approx(sps.t.sf(t, 3))
  assert prediction_t_p(4.0, c, "less") == pytest.approx(sps.t.cdf(t, 3))
  assert prediction_t_p(1.5, c) == pytest.approx(0.5)
  assert prediction_t_p(1.0, [1.0]) is None and prediction_t_p(1.0, [2.0, 2.0]) is None
  est, lo, hi = excess_interval(4.0, 0.5, c)
  half = sps.t.ppf(0.975, 3) * np.sqrt(0.25 + sd ** 2 / 4)
  assert (est, lo, hi) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
  assert excess_interval(4.0, 0.5, [1.0]) is None


def _coverage(samples: np.ndarray, truth: float, level: float = 0.95, n_boot: int = 1000, seed: int = 0):
  """(bootstrap-t coverage, percentile coverage) of the mean over the rows of `samples` ([S, n]), vectorised:
  one set of resampling indices for every sample (the coverage is over samples, so sharing them is fine)."""
  s, n = samples.shape
  idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
  draw = samples[:, idx]  # [S, B, n]
  means, ses = draw.mean(2), draw.std(2, ddof=1) / np.sqrt(n)
  m, se = samples.mean(1), samples.std(1, ddof=1) / np.sqrt(n)
  tail = (1 - level) / 2
  t = np.where(ses > 0, (means - m[:, None]) / np.where(ses > 0, ses, 1), np.nan)
  q_lo, q_hi = np.nanquantile(t, [tail, 1 - tail], axis=1)
  boot_t = (m - q_hi * se <= truth) & (truth <= m - q_lo * se)
  p_lo, p_hi = np.quantile(means, [tail, 1 - tail], axis=1)
  pct = (p_lo <= truth) & (truth <= p_hi)
  return boot_t.mean(), pct.mean()


def test_bootstrap_t_covers_at_n7_where_the_percentile_interval_does_not():
  """2000 seeded samples of 7 items, normal and skewed: the studentized interval covers 95% within a binomial
  tolerance (normal) and that tolerance plus 0.02 (skewed), and better than the percentile one (about 86-88%).
  A few seconds (vectorised numpy)."""
  assert 7 < SMALL_N
  rng = np.random.default_rng(1)
  s = 2000
  # 3 binomial SDs of a coverage of 0.95 over 2000 samples: 3 * sqrt(0.95 * 0.05 / 2000) = 0.015.
  tol = 3 * np.sqrt(0.95 * 0.05 / s)
  normal = rng.normal(0.3, 1.0, (s, 7))
  cov_t, cov_pct = _coverage(normal, 0.3)
  assert abs(cov_t - 0.95) <= tol and cov_t > cov_pct + 0.03, (cov_t, cov_pct)
  # Skewed: a gamma(4) (skewness 1), shifted to mean 0. No interval from 7 items removes all of a skew's
  # effect: bootstrap-t measured 0.93-0.94 over seeds here (percentile 0.84-0.88), hence the 0.02 allowance.
  skewed = rng.gamma(4.0, 1.0, (s, 7)) - 4.0
  cov_t, cov_pct = _coverage(skewed, 0.0)
  assert abs(cov_t - 0.95) <= tol + 0.02 and cov_t > cov_pct + 0.04, (cov_t, cov_pct)
  # bootstrap_ci itself takes the studentized path below SMALL_N: the same interval as computed by hand.
  x = normal[0]
  lo, hi = bootstrap_ci(x, n_boot=4000, seed=5)
  draw = x[np.random.default_rng(5).integers(0, 7, (4000, 7))]
  t = (draw.mean(1) - x.mean()) / (draw.std(1, ddof=1) / np.sqrt(7))
  se = x.std(ddof=1) / np.sqrt(7)
  q_lo, q_hi = np.quantile(t, [0.025, 0.975])
  assert (lo, hi) == pytest.approx((x.mean() - q_hi * se, x.mean() - q_lo * se))
  assert bootstrap_ci([2.0] * 7) == (2.0, 2.0)


def test_pooled_test_sequential_p_and_the_numbers_beside_it():
  rng = np.random.default_rng(0)
  base = rng.normal(size=8)
  ctrl = base[None] + rng.normal(0, 0.1, (40, 8))
  null = PooledEdit(base, base + rng.normal(0, 0.1, 8), ctrl, 1.0, "a")
  t = pooled_test([null], n_boot=500, sequential_h=4, r_max=40)
  seq = t.sequential
  assert seq["h"] == 4 and seq["r_max"] == 40 and t.replicates_scored == 40
  assert t.n_controls == seq["looked"] == len(seq["running"]) and len(t.control_effects) == seq["looked"]
  assert t.p_value == sequential_p(t.mean, t.control_effects, 4, 40).p_value
  assert t.ci_method == "bootstrap-t" and t.t_p is not None
  assert t.excess == pytest.approx(t.mean - np.mean(t.control_effects))
  assert t.excess_low < t.excess < t.excess_high
  strong = PooledEdit(base, base + 1.0, ctrl, 1.0, "a")
  s = pooled_test([strong], n_boot=500, sequential_h=4, r_max=40)
  assert s.p_value == 1 / 41 and s.sequential["stopped"] == "all replicates" and s.significant
  assert s.t_p < 1e-6 and s.excess_low > 0.5
  # fixed-R without h, and undecided with too few replicates for r_max
  assert pooled_test([strong], n_boot=200).sequential is None
  assert pooled_test([strong], n_boot=200, sequential_h=4, r_max=60).p_value is None


class _FakeEdit:
  def __init__(self, name: str):
    self.name = name

  def edited_mask(self):
    return np.ones((1, 3), bool)


class _FakeMetric:
  """Scores each edit by a seeded draw from its name (controls: noise; located "strong" edits: +1), and
  remembers every edit it scored, so a test sees which replicates ran."""
  from valuejax.metrics.base import Metric as _M
  paired = _M.paired
  records = _M.records

  def __init__(self, n: int):
    self.n, self.seen = n, []

  def score(self, config, model, items, edits):
    from valuejax.metrics.base import Scored
    rows = []
    for e in edits:
      self.seen.append(None if e is None else e.name)
      if e is None:
        rows.append(np.zeros(self.n))
        continue
      rng = np.random.default_rng([sum(map(ord, e.name)), len(e.name)])
      shift = 1.0 if e.name.startswith("strong") and "control" not in e.name else 0.0
      rows.append(rng.normal(0, 0.1, self.n) + shift)
    return Scored(np.stack(rows))


def _plan(located: str, r_max: int):
  from valuejax.methods.base import Experiment, UnitPlan
  plan = []
  for unit in ("u1", "u2"):
    exps = [Experiment(unit, _FakeEdit(f"{located}-{unit}"), "greater", {"gamma": 2.0},
                       [_FakeEdit(f"{located}-{unit}-control{i}") for i in range(r_max)]),
            Experiment(unit, _FakeEdit(f"explore-{unit}"), "greater", {"gamma": 0.5},
                       [_FakeEdit(f"explore-{unit}-control{i}") for i in range(4)])]
    plan.append(UnitPlan(unit, [types.SimpleNamespace(item_id=f"{unit}-{k}") for k in range(6)], exps))
  return plan


def _config(h: int, test: str = "pooled"):
  """The shared sections every run has (configs/common.py), with this test's intervene entries."""
  from configs import common
  config = common.base_config("valuelocate")
  config.intervene.update({"primary_test": test, "primary_gamma": 2.0, "alpha": 0.05, "n_boot": 300,
                           "n_controls": 4, "sequential_h": h})
  return config


def test_evaluate_stops_scoring_primary_replicates_once_the_sequential_rule_decides():
  from valuejax.methods import primary
  from valuejax.metrics.effects import evaluate
  metric = _FakeMetric(6)
  results = evaluate(_config(3), None, _plan("null", 60), metric)
  out = primary(_config(3), results).pooled
  seq = out.sequential
  assert seq.stopped == "h reached" and seq.h == 3 and seq.r_max == 60
  # Scored in blocks of h: at most h - 1 replicates past the stop, none of the later blocks.
  assert seq.looked <= out.replicates_scored < seq.looked + 3 < 60
  primary_controls = [n for n in metric.seen if n and n.startswith("null-") and "control" in n]
  assert len(primary_controls) == 2 * out.replicates_scored
  assert all(int(n.rsplit("control", 1)[1]) < out.replicates_scored for n in primary_controls)
  # the exploratory edits' controls run in full, the baseline and located edits once each
  assert sum(1 for n in metric.seen if n and n.startswith("explore-") and "control" in n) == 8
  for r in results:
    e = {x.edit: x for x in r.effects}
    assert e[f"null-{r.unit}"].controls_scored == out.replicates_scored
    assert e[f"null-{r.unit}"].sequential.p_value == out.p_value
    assert r.evaluations == 1 + 2 + out.replicates_scored + 4
  # The p read back from the results is the one the run stopped on, and equals the rule on a full run's
  # replicates (control i is the same edit however many run).
  full = evaluate(_config(0), None, _plan("null", 60), _FakeMetric(6))
  again = primary(_config(3), full).pooled
  assert again.p_value == out.p_value and again.sequential.looked == seq.looked
  assert primary(_config(0), full).pooled.sequential is None


def test_evaluate_runs_every_replicate_when_the_located_edit_beats_them_all():
  from valuejax.methods import primary
  from valuejax.metrics.effects import evaluate
  results = evaluate(_config(3), None, _plan("strong", 20), _FakeMetric(6))
  out = primary(_config(3), results).pooled
  assert out.p_value == 1 / 21 and out.sequential.stopped == "all replicates"
  assert out.replicates_scored == 20 and out.significant and out.excess_low > 0.5
  # "each": every primary edit has its own sequential p, Holm-corrected
  each = primary(_config(3, "each"), evaluate(_config(3, "each"), None, _plan("null", 60), _FakeMetric(6)))
  assert [r.sequential.stopped for r in each.each] == ["h reached"] * 2
  assert all(r.p_value == r.sequential.p_value for r in each.each)


def test_report_prints_the_sequential_primary_and_old_results_still_render():
  from valuejax.methods import primary
  from valuejax.metrics.effects import evaluate
  from valuejax.report.markdown import _primary
  from valuejax.workdir import InterveneResults
  pt = primary(_config(3), evaluate(_config(3), None, _plan("null", 60), _FakeMetric(6)))
  run = lambda d: InterveneResults.from_json({"primary": d, "n_controls": 4})
  text = "\n".join(_primary(run(pt.to_json()), [], [], "the score"))
  seq = pt.pooled.sequential
  assert f"sequential, h = 3: stopped after {seq.looked} of up to 60 replicates" in text
  assert "excess over the controls' mean" in text and "t prediction-interval p" in text
  # A result written before the sequential p and the excess existed (old metrics.json) still renders.
  old = {k: v for k, v in pt.to_json()["result"].items()
         if k not in ("sequential", "replicates_scored", "t_p", "excess", "excess_low", "excess_high", "ci_method")}
  text = "\n".join(_primary(run({**pt.to_json(), "result": old}), [], [], "the score"))
  assert "at least" in text and "sequential, h" not in text and "excess" not in text


def test_sequential_h_is_checked_before_anything_loads():
  import importlib
  from valuejax.validate import check_config
  cfg = importlib.import_module("configs.valuelocate").get_config()
  check_config(cfg)
  for bad in (-1, -5):  # (a ConfigDict refuses a float for an integer entry itself)
    cfg.intervene.sequential_h = bad
    with pytest.raises(ValueJaxError, match="integer >= 0"):
      check_config(cfg)
  # An h above the replicates is allowed (a lowered n_controls): the rule then looks at every replicate.
  cfg.intervene.sequential_h = 1000
  check_config(cfg)


def test_an_h_above_the_replicates_gives_the_fixed_rank_p():
  from valuejax.evaluate import permutation_p
  from valuejax.methods import primary
  from valuejax.metrics.effects import evaluate
  results = evaluate(_config(100), None, _plan("null", 6), _FakeMetric(6))
  out = primary(_config(100), results).pooled
  assert out.replicates_scored == 6 and out.sequential.looked == 6 and out.sequential.h == 6
  assert out.p_value == pytest.approx(permutation_p(out.mean, out.control_effects, "greater"))
