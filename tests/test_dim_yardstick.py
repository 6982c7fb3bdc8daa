"""Directions of the located edit's size: the diff-in-means edit from the recorded statistics, random Gaussian
directions at the same L2 norm, how they act on the activations, how the intervene stage scores and records them,
and how the report prints them and the effect's share of the prompt yardstick."""

import dataclasses
import os

import jax.numpy as jnp
import numpy as np
import pytest

from valuejax.engine.stats import NeuronStats
from valuejax.intervene import SteerSet, directions as dirs, steering
from valuejax.metrics import effects
from valuejax.metrics.base import Metric, Scored
from valuejax.methods.types import Experiment, Pair, UnitPlan
from valuejax.models.edit import apply_edit
from valuejax.workdir.results import DirectionYardstick, EffectRecord, InterveneResults, UnitResult

SHAPE = (3, 8)
GROUPS = ("x", "x_reversed", "y")


def _stats(seed: int = 0) -> NeuronStats:
  """Recorded sums of three groups with different token counts."""
  rng = np.random.default_rng(seed)
  s = NeuronStats.zeros(GROUPS, *SHAPE)
  s.tokens[:] = [40, 25, 7]
  s.s1[:] = rng.normal(size=s.s1.shape) * s.tokens[:, None, None]
  return s


def _steer(mode: str = "enhance", keep_prob: float = 0.9):
  rng = np.random.default_rng(1)
  plus, minus = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
  plus[0, :3], plus[1, 2] = True, True
  minus[1, 5:7], minus[0, 2] = True, True  # neuron (0, 2) in both sets; layer 2 untouched
  target = SteerSet(plus, rng.uniform(0.2, 1.0, SHAPE), rng.uniform(0.0, 0.5, SHAPE))
  opposite = SteerSet(minus, rng.uniform(0.2, 1.0, SHAPE), rng.uniform(0.0, 0.5, SHAPE))
  return steering(target, opposite, 2.0, mode=mode, keep_prob=keep_prob, seed=0), plus, minus


# -- the direction and the norm ------------------------------------------------------------------------------

def test_diff_in_means_is_the_recorded_mean_difference():
  s = _stats()
  d = dirs.diff_in_means(s, "x", "x_reversed")
  # float64 sums divided by exact integer counts: the same two operations, so equal to the last bit.
  np.testing.assert_array_equal(d, s.s1[0] / 40 - s.s1[1] / 25)
  np.testing.assert_array_equal(dirs.group_mean(s, ["x", "y"]), (s.s1[0] + s.s1[2]) / 47)
  empty = NeuronStats.zeros(GROUPS, *SHAPE)
  with pytest.raises(Exception, match="counted no token"):
    dirs.diff_in_means(empty, "x", "y")


def test_located_norm_is_the_expected_change_to_the_mean_activation():
  edit, plus, minus = _steer(keep_prob=0.9)
  mean = dirs.group_mean(_stats(), ["x", "x_reversed"])
  add = np.asarray(edit.neurons.add, np.float64)
  # By hand: each push applies with probability 0.9; a clamped neuron min(a, 0) loses its mean's positive part
  # (taken at the mean); the neuron in both sets gets both.
  q = float(np.float32(0.9))  # the edit holds keep_prob as float32, and the expectation uses what the draw uses
  push = q * np.where(plus, add, 0.0)
  clamp = np.where(minus, -np.maximum(mean, 0.0), 0.0)
  n = dirs.edit_norm(edit, mean)
  # float64 of the same terms in another order: equal up to a few ulps of the norm.
  assert n["norm"] == pytest.approx(np.linalg.norm(push + clamp), rel=1e-12)
  assert n["push_norm"] == pytest.approx(np.linalg.norm(push), rel=1e-12)
  assert n["clamp_norm"] == pytest.approx(np.linalg.norm(clamp), rel=1e-12)
  assert n["push_norm"] > 0 and n["clamp_norm"] > 0
  np.testing.assert_array_equal(dirs.edited_layers(edit), [True, True, False])


def test_the_direction_is_scaled_to_the_located_norm_over_the_edited_layers():
  edit, _, _ = _steer()
  s = _stats()
  d = dirs.diff_in_means(s, "x", "x_reversed")
  layers = dirs.edited_layers(edit)
  norm = dirs.edit_norm(edit, dirs.group_mean(s, ["x", "x_reversed"]))["norm"]
  e = dirs.direction_edit(d, layers, norm, scope=edit.scope)
  add = np.asarray(e.neurons.add, np.float64)
  # Each entry of add is alpha * d rounded once to float32 (relative error <= 2**-24), so the norm is within
  # 2**-24 of the target, relatively; 1e-6 leaves room for the float64 sums.
  assert np.linalg.norm(add) == pytest.approx(norm, rel=1e-6)
  np.testing.assert_allclose(add[:2], e.metadata["alpha"] * d[:2], rtol=2 ** -23)
  assert not add[2].any()  # the layer the located edit leaves alone
  assert e.metadata["n_neurons"] == 2 * SHAPE[1] and e.scope == "generated"
  assert float(e.neurons.keep_prob) == 1.0 and np.all(np.asarray(e.neurons.scale) == 1)
  assert not np.isfinite(np.asarray(e.neurons.clamp_max)).any()
  # Reverse subtracts exactly what enhance adds (the sign flips a float exactly).
  r = dirs.direction_edit(d, layers, norm, sign=-1.0)
  np.testing.assert_array_equal(np.asarray(r.neurons.add), -np.asarray(e.neurons.add))
  with pytest.raises(Exception, match="cannot be scaled"):
    dirs.direction_edit(np.zeros(SHAPE), layers, norm)


def test_the_direction_adds_exactly_alpha_d_to_the_activations():
  edit, _, _ = _steer()
  d = dirs.diff_in_means(_stats(), "x", "x_reversed")
  e = dirs.direction_edit(d, dirs.edited_layers(edit), 3.0, scope="generated")
  a = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, SHAPE[1])), jnp.float32)
  where = jnp.asarray(np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]], bool))
  add = np.asarray(e.neurons.add)
  for layer in range(SHAPE[0]):
    out = np.asarray(apply_edit(a, jnp.asarray(layer), e.neurons, where, steps=jnp.arange(5)))
    # min(a * 1, inf) is a exactly, so the edit is one float32 addition, the one numpy makes here.
    expected = np.where(np.asarray(where)[..., None], np.asarray(a) + add[layer], np.asarray(a))
    np.testing.assert_array_equal(out, expected)


def test_random_directions_are_seeded_and_take_the_norm():
  edit, _, _ = _steer()
  layers = dirs.edited_layers(edit)
  seed = dirs.direction_seed(0, "x_vs_x_reversed")
  assert seed == dirs.direction_seed(0, "x_vs_x_reversed") != dirs.direction_seed(0, "y_vs_y_reversed")
  a, b = dirs.random_directions(SHAPE, 3, seed), dirs.random_directions(SHAPE, 5, seed)
  for x, y in zip(a, b):  # direction i does not depend on how many are drawn
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], a[1])
  assert not np.array_equal(a[0], dirs.random_directions(SHAPE, 1, seed + 1)[0])
  for x in a:
    e = dirs.direction_edit(x, layers, 2.5, kind="random_direction")
    # float32 rounding of each entry, as for the diff-in-means direction.
    assert np.linalg.norm(np.asarray(e.neurons.add, np.float64)) == pytest.approx(2.5, rel=1e-6)
  assert dirs.random_directions(SHAPE, 0, seed) == []


# -- scored and recorded by the intervene stage --------------------------------------------------------------

class _SumMetric(Metric):
  """A probability per item moved by the mean push an edit adds: 0.5 + 0.1 * mean(add), item i shifted by
  0.01 i; item 3 unscored. Records the edits it scored."""
  probability = True

  def __init__(self):
    self.calls = []

  def score(self, config, model, items, edits):
    self.calls.append(list(edits))
    rows = [0.5 + 0.1 * float(np.mean(np.asarray(e.neurons.add))) + 0.01 * np.arange(len(items)) for e in edits]
    values = np.asarray(rows, np.float64)
    values[:, 3] = np.nan
    return Scored(values)


def _config():
  from configs import valuelocate
  c = valuelocate.get_config("smoke")
  c.intervene.random_directions = 2
  return c


def _effect(unit: str, edit, expected: str, gamma: float, controls=(0.01,)) -> EffectRecord:
  return EffectRecord(unit=unit, edit=edit.name, expected=expected,
                      params={"mode": edit.metadata["mode"], "gamma": gamma}, mean=0.1, ci_low=0.0, ci_high=0.2,
                      control_effects=controls, n=4)


def test_direction_yardsticks_score_each_primary_edit_with_its_sign():
  config = _config()
  s = _stats()
  (enhance, _, _), (reverse, _, _) = _steer("enhance"), _steer("reverse")
  weak = dataclasses.replace(enhance, name="weak")
  unit = "x_vs_x_reversed"
  items = ["a", "b", "c", "d", "e"]
  plan = [UnitPlan(unit, items, [Experiment(unit, e, x, {}, []) for e, x in
                                 ((enhance, "greater"), (reverse, "less"), (weak, "greater"))])]
  results = [UnitResult(unit=unit, baseline=(0.5, 0.51, None, 0.53, 0.54), effects=(
      _effect(unit, enhance, "greater", 2.0), _effect(unit, reverse, "less", 2.0),
      _effect(unit, weak, "greater", 0.5)))]  # gamma 0.5: not the smoke config's primary gamma (2)
  metric = _SumMetric()
  out = effects.direction_yardsticks(config, None, metric, plan, results, [Pair(unit, "x", "x_reversed", "d")], s)
  assert len(metric.calls) == 1 and len(metric.calls[0]) == 2 * (1 + 2)  # one call: 2 primary edits x (1 + K)
  e_up, e_down, e_weak = out[0].effects
  assert e_weak.directions is None
  mean = dirs.group_mean(s, ["x", "x_reversed"])
  d = dirs.diff_in_means(s, "x", "x_reversed")
  for rec, located, sign in ((e_up, enhance, 1.0), (e_down, reverse, -1.0)):
    y = rec.directions
    assert isinstance(y, DirectionYardstick) and y.sign == sign and y.groups == ("x", "x_reversed")
    assert y.norm == pytest.approx(dirs.edit_norm(located, mean)["norm"], rel=1e-12)
    layers = dirs.edited_layers(located)
    assert y.layers == tuple(np.flatnonzero(layers)) and y.n_neurons == layers.sum() * SHAPE[1]
    # The edits scored: the diff-in-means one first, with this edit's sign, then the K random ones.
    dim = metric.calls[0][(0 if sign > 0 else 3)]
    expected_add = sign * y.alpha * np.where(layers[:, None], d, 0.0)
    np.testing.assert_allclose(np.asarray(dim.neurons.add), expected_add, rtol=2 ** -23, atol=0)
    # Paired on the items scored under both (items 2 and 3 drop): the edit's shift of every item.
    shift = 0.1 * float(np.mean(np.asarray(dim.neurons.add)))
    assert y.n == 3 and y.mean == pytest.approx(shift, abs=1e-12)
    assert len(y.random_means) == 2 and y.random_mean == pytest.approx(np.mean(y.random_means))
    assert y.random_sd == pytest.approx(np.std(y.random_means, ddof=1))
    assert dim.scope == located.scope == "generated"
  # The same unit draws the same random directions for both edits, each scaled to its own norm and signed.
  r_up, r_down = [np.asarray(metric.calls[0][k].neurons.add, np.float64) for k in (1, 4)]
  np.testing.assert_allclose(r_up / np.linalg.norm(r_up), -r_down / np.linalg.norm(r_down), atol=1e-6)
  # Round trip through metrics.json.
  back = UnitResult.from_json(out[0].to_json())
  assert back.effects[0].directions == e_up.directions


def test_direction_yardsticks_off_or_without_statistics_change_nothing():
  config = _config()
  edit, _, _ = _steer()
  unit = "x_vs_x_reversed"
  plan = [UnitPlan(unit, ["a"] * 5, [Experiment(unit, edit, "greater", {}, [])])]
  results = [UnitResult(unit=unit, baseline=(0.5,) * 5, effects=(_effect(unit, edit, "greater", 2.0),))]
  units = [Pair(unit, "x", "x_reversed", "d")]
  metric = _SumMetric()
  assert effects.direction_yardsticks(config, None, metric, plan, results, units, None) == results
  config.intervene.direction_yardstick = False
  assert effects.direction_yardsticks(config, None, metric, plan, results, units, _stats()) == results
  assert not metric.calls


def test_prompt_fraction_only_against_a_prompt_yardstick_told_apart_from_none():
  assert effects.prompt_scale({"mean": 0.2, "ci": [0.1, 0.3]})
  assert effects.prompt_scale({"mean": -0.2, "ci": [-0.3, -0.1]})
  assert not effects.prompt_scale({"mean": 0.02, "ci": [-0.01, 0.05]})
  assert not effects.prompt_scale({"mean": None, "ci": [None, None]})
  assert not effects.prompt_scale(None)


# -- the report ----------------------------------------------------------------------------------------------

def test_the_report_prints_the_directions_and_n_a_for_a_missing_share():
  from valuejax.report import markdown
  y = DirectionYardstick(norm=1.5, push_norm=1.2, clamp_norm=0.9, layers=(0, 1), n_neurons=16,
                         groups=("x", "x_reversed"), mean=0.031, n=4, random_means=(0.01, -0.02, 0.004),
                         random_mean=-0.002, random_sd=0.015)
  e = EffectRecord(unit="x_vs_x_reversed", edit="enhance gamma=2", expected="greater", mean=0.05, ci_low=0.0,
                   ci_high=0.1, yardsticks={"flips": 0.25, "logodds": 0.2}, directions=y)
  text = "\n".join(markdown._yardsticks(InterveneResults("valuelocate", "forced_choice",
                                                          [UnitResult("x_vs_x_reversed", effects=(e,))])))
  assert "Directions of the same size" in text and "3 seeded random Gaussian directions" in text
  row = next(line for line in text.splitlines() if line.startswith("| x_vs_x_reversed | enhance gamma=2 | +0.05 | 1.5"))
  assert "1.5 (1.2, 0.9)" in row and "| 16 |" in row and "+0.031" in row and "-0.002 ± 0.015 (3)" in row
  share = next(line for line in text.splitlines() if "| 25% |" in line)
  assert "| n/a |" in share


# -- the smoke run -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_run_records_and_reports_the_directions(smoke_run):
  from valuejax.workdir.outputs import read_intervene
  from valuejax.workdir import layout
  results = read_intervene(smoke_run.workdir)
  stats = NeuronStats.load(os.path.join(smoke_run.workdir, layout.RECORD_STATS))
  with_dirs = [(u, e) for u in results.units for e in u.effects if e.directions is not None]
  # The smoke config's primary family: every pair at gamma 2, enhance and reverse.
  primary = [(u, e) for u in results.units for e in u.effects if e.params.get("gamma") == 2.0
             and e.params.get("part", "full") == "full" and e.control_effects]
  assert with_dirs and [e.edit for _, e in with_dirs] == [e.edit for _, e in primary]
  for u, e in with_dirs:
    y = e.directions
    plus, minus = y.groups
    assert u.unit == f"{plus}_vs_{minus}" and y.sign == (1.0 if e.expected == "greater" else -1.0)
    d = dirs.diff_in_means(stats, plus, minus)
    own = np.linalg.norm(d[list(y.layers)])
    # The direction's own norm from the recorded sums, as stored: float64 of the same sums (JSON keeps float64).
    assert y.dim_norm == pytest.approx(own, rel=1e-12) and y.alpha * y.dim_norm == pytest.approx(y.norm, rel=1e-12)
    assert y.norm > 0 and y.push_norm > 0 and np.isfinite(y.clamp_norm)
    assert y.n >= 2 and np.isfinite(y.mean) and len(y.random_means) == 1  # configs/valuelocate.py: one
    assert all(np.isfinite(v) for v in y.random_means)
  with open(os.path.join(smoke_run.workdir, "report.md"), encoding="utf-8") as f:
    report = f.read()
  assert "Directions of the same size" in report
