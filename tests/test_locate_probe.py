"""Linear probes on synthetic per-item activations: located (label-carrying) neurons beat random neurons
with the same per-layer counts; Wilson intervals and fold assignment behave as documented."""

import numpy as np
import pytest

from valuejax.errors import ValueJaxError
from valuejax.locate import GroupNeurons, compare_to_random, probe_accuracy, wilson_interval
from valuejax.locate.probe import stratified_folds

N, L, F = 160, 3, 24
SIGNAL = [(0, 2), (0, 9), (2, 5), (2, 17)]


def synthetic(seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat([0, 1], N // 2)
  rng.shuffle(labels)
  feats = rng.normal(size=(N, L, F)).astype(np.float32)
  for l, j in SIGNAL:  # these neurons carry the label; the rest are noise
    feats[:, l, j] += 1.2 * (2 * labels - 1)
  return feats, labels


def test_located_neurons_beat_size_matched_random_sets():
  feats, labels = synthetic()
  located = GroupNeurons.create(*zip(*SIGNAL), L, F)
  cmp = compare_to_random(feats, labels, located, num_random=12, seed=0, folds=4, steps=150)
  assert cmp.located.accuracy > 0.85
  assert cmp.located.total == N and cmp.located.num_neurons == 4
  assert cmp.located.ci_low < cmp.located.accuracy < cmp.located.ci_high
  assert cmp.random.shape == (12,)
  assert cmp.located.accuracy > cmp.random.max()
  assert np.median(cmp.random) < 0.7
  assert cmp.p_value == pytest.approx(1 / 13)
  # Same seed, same folds and random draws: the run is reproducible.
  again = compare_to_random(feats, labels, located, num_random=12, seed=0, folds=4, steps=150)
  np.testing.assert_array_equal(again.random, cmp.random)
  assert again.located == cmp.located


def test_noise_neurons_probe_near_chance():
  feats, labels = synthetic(1)
  noise = GroupNeurons.create([1, 1, 1, 1], [0, 1, 2, 3], L, F)
  res = probe_accuracy(feats, labels, noise, folds=4, steps=150)
  assert res.ci_low < 0.5 + 0.1 and res.accuracy < 0.7


def test_wilson_interval_known_values():
  lo, hi = wilson_interval(8, 10)
  assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
  lo, hi = wilson_interval(0, 20)
  assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.1611, abs=1e-4)
  with pytest.raises(ValueJaxError):
    wilson_interval(0, 0)


def test_stratified_folds_balance_classes():
  labels = np.array([0] * 10 + [1] * 6)
  fold = stratified_folds(labels, 3, seed=0)
  for f in range(3):
    assert abs((labels[fold == f] == 0).sum() - 10 / 3) < 1
    assert (labels[fold == f] == 1).sum() == 2


def test_probe_bad_input():
  feats, labels = synthetic()
  located = GroupNeurons.create([0], [2], L, F)
  with pytest.raises(ValueJaxError, match="labels must be 0 or 1"):
    probe_accuracy(feats, labels + 1, located)
  with pytest.raises(ValueJaxError, match="159 labels for 160 items"):
    probe_accuracy(feats, labels[1:], located)
  with pytest.raises(ValueJaxError, match="features cover"):
    probe_accuracy(feats[:, :2], labels, located)
  with pytest.raises(ValueJaxError, match="empty"):
    probe_accuracy(feats, labels, GroupNeurons.create([], [], L, F))
  with pytest.raises(ValueJaxError, match="folds"):
    probe_accuracy(feats, labels, located, folds=1)
  with pytest.raises(ValueJaxError, match="non-finite"):
    probe_accuracy(feats * np.nan, labels, located)
