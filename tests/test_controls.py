"""Tests for the control families (valuejax.intervene.ControlFamily, design.with_controls): the mirror structure
of a unit's random replicates, their stability, activity matching and its fallbacks, and that the old
independent, layer-matched controls are reproduced exactly."""

from __future__ import annotations

import ml_collections as mlc
import numpy as np
import pytest

from valuejax import intervene as vi
from valuejax.errors import ValueJaxError
from valuejax.methods.base import Experiment
from valuejax.methods.design import with_controls

L, F = 3, 60


def _config(n: int = 5, controls: str = "mirrored", match: str = "p") -> mlc.ConfigDict:
  """The shared sections every run has (configs/common.py), with these control entries (no extra primary
  controls, so every edit gets n)."""
  from configs import common
  c = common.base_config("valuelocate")
  c.intervene.update({"n_controls": n, "control_seed": 4, "controls": controls, "control_match": match,
                      "controls_at": "all", "primary_controls": 0})
  return c


def _activity(seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"p": rng.random((L, F)), "mean": rng.normal(size=(L, F))}


def _pair(overlap: bool = True):
  """Two located sets (X's and the other side's) with distinct per-neuron v and delta; with `overlap`, one
  neuron of layer 1 is in both."""
  rng = np.random.default_rng(1)
  plus, minus = np.zeros((L, F), bool), np.zeros((L, F), bool)
  plus[0, [1, 2, 3]], plus[1, [4, 5]], plus[2, [6]] = True, True, True
  minus[0, [7]], minus[1, [8, 9]], minus[2, [10, 11]] = True, True, True
  if overlap:
    minus[1, 5] = True
  v, delta = rng.random((L, F)).astype(np.float32) + 0.5, rng.random((L, F)).astype(np.float32)
  return vi.SteerSet(plus, v, delta), vi.SteerSet(minus, v[::-1].copy(), delta[::-1].copy())


def _steering_exps(overlap: bool = True) -> list[Experiment]:
  plus, minus = _pair(overlap)
  return [Experiment("p", vi.steering(plus, minus, 2.0, mode=m, name=m), "greater" if m == "enhance" else "less",
                     {"mode": m}, []) for m in ("enhance", "reverse")]


def _sets(edit: vi.Edit) -> tuple[np.ndarray, np.ndarray]:
  """(pushed, clamped) [L, F] masks of a steering edit."""
  return np.asarray(edit.neurons.add) != 0, np.isfinite(np.asarray(edit.neurons.clamp_max))


@pytest.mark.parametrize("overlap", [True, False])
def test_mirrored_replicates_swap_the_same_two_random_sets(overlap):
  exps = with_controls(_config(), _steering_exps(overlap), activity=_activity())
  enh, rev = exps
  push, clamp = _sets(enh.edit)
  located = push | clamp
  assert len(enh.controls) == len(rev.controls) == 5
  for ce, cr in zip(enh.controls, rev.controls):
    a, b = _sets(ce)
    np.testing.assert_array_equal(_sets(cr)[0], b)  # reverse r pushes B_r and clamps A_r
    np.testing.assert_array_equal(_sets(cr)[1], a)
    np.testing.assert_array_equal(a.sum(1), push.sum(1))  # the located per-layer counts
    np.testing.assert_array_equal(b.sum(1), clamp.sum(1))
    np.testing.assert_array_equal((a & b).sum(1), (push & clamp).sum(1))  # overlap (or none) like the located
    assert not ((a | b) & located).any()
  assert len({np.flatnonzero(_sets(c)[0]).tobytes() for c in enh.controls}) == 5  # five different families


def test_strengths_move_with_their_neurons_the_same_way_in_enhance_and_reverse():
  config, exps = _config(), _steering_exps()
  with_controls(config, exps, activity=_activity())
  family = vi.ControlFamily.of([e.edit for e in exps], config.intervene.control_seed, _activity()["p"])
  for r in range(3):
    image, _ = family.draw(r)
    for e in exps:
      src = e.edit.edited_mask()
      layers, idx = np.nonzero(src)
      c = e.controls[r]
      for field in ("scale", "add", "clamp_max"):
        np.testing.assert_array_equal(np.asarray(getattr(c.neurons, field))[layers, image[layers, idx]],
                                      np.asarray(getattr(e.edit.neurons, field))[layers, idx])
      assert c.scope == e.edit.scope and float(c.neurons.keep_prob) == float(e.edit.neurons.keep_prob)


def test_control_r_is_the_same_for_19_or_99_replicates():
  few = with_controls(_config(19), _steering_exps(), activity=_activity())
  many = with_controls(_config(99), _steering_exps(), activity=_activity())
  for a, b in zip(few, many):
    assert len(b.controls) == 99
    for x, y in zip(a.controls, b.controls):
      assert x.name == y.name
      for field in ("scale", "add", "clamp_max"):
        np.testing.assert_array_equal(np.asarray(getattr(x.neurons, field)), np.asarray(getattr(y.neurons, field)))


@pytest.mark.parametrize("match", ["p", "mean"])
def test_control_neurons_fill_the_located_neurons_activity_bins(match):
  act = _activity()
  # Located neurons among the most active of their layer: the case layer matching gets wrong.
  plus, minus = np.zeros((L, F), bool), np.zeros((L, F), bool)
  for layer in range(L):
    order = np.argsort(act[match][layer])
    plus[layer, order[[-1, -7, -13]]], minus[layer, order[[-2, -19]]] = True, True  # bins 9, 8, 7 and 9, 6
  exps = [Experiment("p", vi.value_exploration(plus, minus, toward=t, region="combined", name=t),
                     "greater" if t == "support" else "less", {"toward": t}, []) for t in ("support", "conflict")]
  with_controls(_config(8, match=match), exps, activity=act)
  bins = vi.activity_bins(act[match], (L, F))
  for e in exps:
    located = e.edit.edited_mask()
    assert e.control_activity["fallbacks"] == 0 and e.control_activity["match"] == match
    for c in e.controls:
      cm = c.edited_mask()
      for layer in range(L):
        np.testing.assert_array_equal(np.bincount(bins[layer][cm[layer]], minlength=10),
                                      np.bincount(bins[layer][located[layer]], minlength=10))
  # Mirrored: toward support's x5 set is toward conflict's zeroed set, replicate by replicate.
  for s, c in zip(*(x.controls for x in exps)):
    np.testing.assert_array_equal(np.asarray(s.neurons.scale) == 5, np.asarray(c.neurons.scale) == 0)
  # Under "layer" matching the same controls sit mostly in other bins (the quiet neurons layer matching draws).
  with_controls(_config(8, match="layer"), exps, activity=act)
  top = np.mean([(bins[c.edited_mask()] >= 8).mean() for c in exps[0].controls])
  assert top < 0.5


def test_a_full_bin_falls_back_to_the_nearest_bin_and_is_counted():
  act = np.tile(np.arange(F, dtype=np.float64), (L, 1))  # bin b of every layer: neurons 6b .. 6b + 5
  located = np.zeros((L, F), bool)
  located[0, 54:60] = True  # the whole top bin of layer 0: its replacements must come from bin 8
  located[1, [0, 30]] = True
  exps = [Experiment("t", vi.deactivate(located, name="off"), "greater", {}, [])]
  with_controls(_config(4), exps, activity={"p": act})
  assert exps[0].control_activity["fallbacks"] == 6 * 4
  for c in exps[0].controls:
    cm = c.edited_mask()
    np.testing.assert_array_equal(np.flatnonzero(cm[0]), np.arange(48, 54))  # bin 8 holds exactly six
    assert set(np.flatnonzero(cm[1]) // 6) == {0, 5}  # the other layer's own bins, no fallback


def test_deactivation_targets_of_one_family_get_counterparts_of_one_relabelling():
  zh, en = np.zeros((L, F), bool), np.zeros((L, F), bool)
  zh[0, [1, 2, 3]], en[0, [3, 4]], en[2, [9]] = True, True, True
  exps = [Experiment(g, vi.deactivate(m, name=g), "greater", {}, [], family="deactivate:lape")
          for g, m in (("zh", zh), ("en", en))]
  with_controls(_config(6), exps, activity=_activity())
  for a, b in zip(exps[0].controls, exps[1].controls):
    ma, mb = a.edited_mask(), b.edited_mask()
    assert (ma & mb).sum() == 1 and (ma & mb)[0].sum() == 1  # the shared neuron's image is shared
    assert not ((ma | mb) & (zh | en)).any()


def test_independent_layer_controls_are_the_old_controls_exactly():
  offset = 2000
  exps = with_controls(_config(7, "independent", "layer"), _steering_exps(), offset=offset)
  for i, e in enumerate(exps):
    old = vi.control_edits(e.edit, 7, seed=4 + offset + i)
    # The old draw written out: control j's neurons from random_controls, strengths by transplant.
    masks = vi.random_controls(e.edit.edited_mask(), 7, 4 + offset + i)
    by_hand = [vi.transplant(e.edit, m, seed=(4 + offset + i) * 100003 + j) for j, m in enumerate(masks)]
    for a, b, c in zip(e.controls, old, by_hand):
      assert a.name == b.name
      for field in ("scale", "add", "clamp_max"):
        for other in (b, c):
          np.testing.assert_array_equal(np.asarray(getattr(a.neurons, field)),
                                        np.asarray(getattr(other.neurons, field)))
  # Independent controls of enhance and reverse are not one family's: their pushed sets differ.
  assert not np.array_equal(_sets(exps[0].controls[0])[0], _sets(exps[1].controls[0])[1])
  # Without statistics, layer matching needs none; activity matching refuses.
  with pytest.raises(ValueJaxError, match="statistics"):
    with_controls(_config(3), _steering_exps())


def test_independent_activity_matched_controls_are_each_edits_own():
  exps = with_controls(_config(5, "independent", "p"), _steering_exps(), activity=_activity())
  for e in exps:
    bins = vi.activity_bins(_activity()["p"], (L, F))
    located = e.edit.edited_mask()
    for c in e.controls:
      for layer in range(L):
        np.testing.assert_array_equal(np.bincount(bins[layer][c.edited_mask()[layer]], minlength=10),
                                      np.bincount(bins[layer][located[layer]], minlength=10))


def test_mirror_correlation_by_hand():
  from valuejax.evaluate import PooledEdit, mirror_correlation
  base = np.zeros(4)
  # Pair "a": replicate effects (means over the 4 items) of enhance 1, 2, 3 and of reverse -1, -3, -2, so
  # enhance and -reverse are (1, 2, 3) and (1, 3, 2): centred (-1, 0, 1) and (-1, 1, 0), r = 1 / 2.
  ce = np.repeat(np.array([[1.0], [2.0], [3.0]]), 4, axis=1)
  cr = np.repeat(np.array([[-1.0], [-3.0], [-2.0]]), 4, axis=1)
  # Located per-item effects: enhance (1, 2, 3, 4), reverse (-2, -1, -4, -3): -reverse (2, 1, 4, 3), centred
  # (-1.5, -.5, .5, 1.5) and (-.5, -1.5, 1.5, .5), r = (.75 + .75 + .75 + .75) / 5 = 0.6.
  up, down = np.array([1.0, 2, 3, 4]), np.array([-2.0, -1, -4, -3])
  a = [PooledEdit(base, up, ce, 1.0, "a"), PooledEdit(base, down, cr, -1.0, "a")]
  # Pair "b": the same replicates shifted by +10 (enhance) and -10 (reverse), a NaN item in one control, a 4th
  # replicate only enhance has: per pair r = 1 / 2 again, and centring keeps the shift out of the pooled r.
  ce_b, cr_b = np.vstack([ce + 10, np.ones((1, 4))]), cr - 10
  ce_b[0, 0] = np.nan  # the mean of the other three items is still 11
  b = [PooledEdit(base, up, ce_b, 1.0, "b"), PooledEdit(base, down, cr_b, -1.0, "b")]
  m = mirror_correlation(a + b)
  # Float tolerance: sums of a few small integers and halves, exact up to one rounding of the square root.
  assert [p["stratum"] for p in m.pairs] == ["a", "b"]
  for p in m.pairs:
    assert p["rho"] == pytest.approx(0.5, abs=1e-12) and p["replicates"] == 3
    assert p["item_rho"] == pytest.approx(0.6, abs=1e-12) and p["items"] == 4
  # Pooled: two copies of the same centred values, so the same r as each pair (uncentred, the +-10 shifts
  # would drive it to about -1).
  assert m.rho == pytest.approx(0.5, abs=1e-12) and m.n == 6
  assert m.item_rho == pytest.approx(0.6, abs=1e-12) and m.n_items == 8
  # Fewer than 3 replicates, or no spread: no rho.
  short = mirror_correlation([PooledEdit(base, base, ce[:2], 1.0, "s"), PooledEdit(base, base, cr[:2], -1.0, "s")])
  assert short.rho is None and short.pairs[0]["item_rho"] is None and short.pairs[0]["replicates"] == 2
