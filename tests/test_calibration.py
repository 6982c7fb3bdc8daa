"""Calibration of the primary test under the null: on a tiny llama, placebo "located" families (random
neuron sets, so no effect beyond what any such set does) run through the primary test's path (steering's
enhance and reverse edits, their mirrored, activity-matched control replicates, forced-choice scores of many
edits per compiled vmapped call, pooled_test with the sequential p). A calibrated p rejects at about alpha
and is uniform at its support points.

Runtime: 200 families take 14-19 s on two busy CPU cores (7 minutes before): marked slow, since that is an eighth of
the fast lane's whole budget. Where the time went: not the forward passes (8,000 edits score in about 8 s once
compiled) but `Edit.stack` of thousands of edits in one call, whose `jnp.stack` over that many operands took minutes
to compile. Edits are now scored in calls of a fixed BLOCK (the last one padded with the unedited model), so the stack
and the vmapped scoring compile once each, and replicates are scored in blocks of H, as intervene does under the
sequential rule: a family's replicates after its stop are never scored (it looks at 10.5 of 19 on average), which
changes no p, since the sequential p never looks past its stop.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from valuejax import evaluate as ve
from valuejax import intervene as vi

FAMILIES, R, H = 200, 19, 5
# Edits per scoring call: one compiled stack and one compiled vmap of this many edits (the whole test took 16 s
# at 64 and 128, 19 s at 256, 26 s at 512: larger blocks compile longer, smaller ones make more calls).
BLOCK = 128
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


def _scorer(params, cfg, tokenizer):
  """score(edits) -> [len(edits), items] p_aligned, in calls of exactly BLOCK edits (padding: unedited)."""
  def score(edits: list) -> np.ndarray:
    out = []
    for start in range(0, len(edits), BLOCK):
      part = edits[start:start + BLOCK]
      res = ve.forced_choice_many(params, cfg, tokenizer, ITEMS, part + [None] * (BLOCK - len(part)),
                                  lettered=False, batch_size=8, chunk=BLOCK)
      out += [r.p_aligned for r in res[:len(part)]]
    return np.stack(out).astype(np.float64)
  return score


@pytest.mark.slow
def test_primary_p_is_calibrated_under_placebo_families():
  from tests.tiny_models import tiny_tokenizer, valuejax_model
  _, cfg, params = valuejax_model("llama", seed=1)
  shape = (cfg.num_layers, cfg.intermediate_size)
  score = _scorer(params, cfg, tiny_tokenizer())
  # Any fixed activity map: exchangeability of located and control sets given the bins does not depend on
  # which map it is. Skewed, as recorded probabilities are (most neurons rarely fire).
  activity = np.random.default_rng(99).beta(0.5, 3.0, shape)
  rng = np.random.default_rng(2024)
  located, controls = [], []
  for k in range(FAMILIES):
    plus, minus = _placebo(rng, shape)
    pair = [vi.steering(plus, minus, 4.0, mode=m, keep_prob=1.0, name=m) for m in ("enhance", "reverse")]
    located.append(pair)
    controls.append(vi.ControlFamily.of(pair, seed=k, activity=activity).controls(pair, [R, R])[0])
  first = score([None] + [e for pair in located for e in pair])
  base, edited = first[0], first[1:].reshape(FAMILIES, 2, -1)
  # Replicates in blocks of H for every family still undecided, as intervene's sequential scoring does.
  scored = [np.zeros((2, 0, base.size)) for _ in range(FAMILIES)]
  tests: dict[int, ve.PooledTest] = {}
  r = 0
  while len(tests) < FAMILIES:
    live = [k for k in range(FAMILIES) if k not in tests]
    block = score([c for k in live for mode in (0, 1) for c in controls[k][mode][r:r + H]])
    n = min(H, R - r)
    for j, k in enumerate(live):
      scored[k] = np.concatenate([scored[k], block[j * 2 * n:(j + 1) * 2 * n].reshape(2, n, -1)], axis=1)
      family = [ve.PooledEdit(base, edited[k, 0], scored[k][0], 1.0, "pair"),
                ve.PooledEdit(base, edited[k, 1], scored[k][1], -1.0, "pair")]
      t = ve.pooled_test(family, n_boot=10, seed=k, sequential_h=H, r_max=R)
      if t.p_value is not None:
        tests[k] = t
    r += H
  ps = np.asarray([tests[k].p_value for k in range(FAMILIES)])
  assert np.isfinite(ps).all()
  # The stop is the sequential rule's: h hits among the replicates looked at, or all R of them.
  for t in tests.values():
    assert t.sequential["stopped"] in ("h reached", "all replicates") and t.sequential["looked"] <= R
  rate = float(np.mean(ps <= 0.05))
  assert 0.02 <= rate <= 0.08, rate
  # The sequential p is discrete: P(p <= s) = s exactly at each support point s under exchangeability, so
  # the empirical CDF is compared with the uniform one there only (a KS distance over those points, which
  # is at most the continuous one, read against the Kolmogorov distribution of n draws: conservative).
  support = np.unique(ps)
  d = float(np.max(np.abs(np.searchsorted(np.sort(ps), support, side="right") / ps.size - support)))
  assert sps.kstwo.sf(d, ps.size) > 0.01, (d, support)
