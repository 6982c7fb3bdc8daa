"""Calibration of the primary test under the null: on a tiny llama, placebo "located" families (random
neuron sets, so no effect beyond what any such set does) run through the primary test's path (steering's
enhance and reverse edits, their mirrored, activity-matched control replicates, forced-choice scores of all
edits in a few compiled vmapped calls, pooled_test with the sequential p). A calibrated p rejects at about
alpha and is uniform at its support points.

Runtime: 240 families (9,601 edits, chunks of 1,000) took 8.6 min on two busy CPU cores; 200 families score
8,001 edits, about 7 min there: far over the suite's budget, hence the slow mark. The cost is per edit;
fewer items or a smaller R would not keep the rejection rate's binomial error inside the band.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from valuejax import evaluate as ve
from valuejax import intervene as vi

FAMILIES, R, H = 200, 19, 5
ITEMS = [ve.ForcedChoiceItem("w10 w11 w12 w13", "w14 w15", "w16", "a"),
         ve.ForcedChoiceItem("w20 w21 w22", "w23", "w24 w25", "b"),
         ve.ForcedChoiceItem("w30 w31 w32 w33 w34", "w35 w36", "w37 w38", "c"),
         ve.ForcedChoiceItem("w40 w41", "w42 w43 w44", "w45", "d")]


def _placebo(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[vi.SteerSet, vi.SteerSet]:
  """A random pair of disjoint sets, one neuron per layer each, with random steering strengths."""
  plus, minus = np.zeros(shape, bool), np.zeros(shape, bool)
  for layer in range(shape[0]):
    a, b = rng.choice(shape[1], 2, replace=False)
    plus[layer, a], minus[layer, b] = True, True
  v = lambda: (rng.random(shape) * 2 + 1).astype(np.float32)
  return vi.SteerSet(plus, v(), v()), vi.SteerSet(minus, v(), v())


@pytest.mark.slow
def test_primary_p_is_calibrated_under_placebo_families():
  from tests.tiny_models import tiny_tokenizer, valuejax_model
  _, cfg, params = valuejax_model("llama", seed=1)
  shape = (cfg.num_layers, cfg.intermediate_size)
  # Any fixed activity map: exchangeability of located and control sets given the bins does not depend on
  # which map it is. Skewed, as recorded probabilities are (most neurons rarely fire).
  activity = np.random.default_rng(99).beta(0.5, 3.0, shape)
  rng = np.random.default_rng(2024)
  edits, index = [None], []
  for k in range(FAMILIES):
    plus, minus = _placebo(rng, shape)
    located = [vi.steering(plus, minus, 4.0, mode=m, keep_prob=1.0, name=m) for m in ("enhance", "reverse")]
    controls, _ = vi.ControlFamily.of(located, seed=k, activity=activity).controls(located, [R, R])
    index.append(len(edits))
    edits += located + controls[0] + controls[1]
  scores = ve.forced_choice_many(params, cfg, tiny_tokenizer(), ITEMS, edits, lettered=False, batch_size=8,
                                 chunk=1000)
  p_aligned = np.stack([s.p_aligned for s in scores]).astype(np.float64)
  base = p_aligned[0]
  ps = []
  for k, i in enumerate(index):
    enh, rev = p_aligned[i], p_aligned[i + 1]
    ctrl_e, ctrl_r = p_aligned[i + 2:i + 2 + R], p_aligned[i + 2 + R:i + 2 + 2 * R]
    family = [ve.PooledEdit(base, enh, ctrl_e, 1.0, "pair"), ve.PooledEdit(base, rev, ctrl_r, -1.0, "pair")]
    t = ve.pooled_test(family, n_boot=10, seed=k, sequential_h=H, r_max=R)
    ps.append(t.p_value)
  ps = np.asarray(ps)
  assert np.isfinite(ps).all()
  rate = float(np.mean(ps <= 0.05))
  assert 0.02 <= rate <= 0.08, rate
  # The sequential p is discrete: P(p <= s) = s exactly at each support point s under exchangeability, so
  # the empirical CDF is compared with the uniform one there only (a KS distance over those points, which
  # is at most the continuous one, read against the Kolmogorov distribution of n draws: conservative).
  support = np.unique(ps)
  d = float(np.max(np.abs(np.searchsorted(np.sort(ps), support, side="right") / ps.size - support)))
  assert sps.kstwo.sf(d, ps.size) > 0.01, (d, support)
