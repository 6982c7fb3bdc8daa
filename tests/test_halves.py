"""Split-half recording and what is built on it: halves that sum to the whole, the stability of located sets
(split-half Jaccard against its chance value), and the placebo (a set located between two halves of one group).
"""

import os

import numpy as np
import pytest

from tests import helpers, tiny_models
from valuejax.engine.record import (HALVES, Prompt, Recorder, half_group, half_stats, join_halves,
                                    split_halves)
from valuejax.errors import ValueJaxError


def _prompts(n=11):
  rng = np.random.default_rng(1)
  return [Prompt(" ".join(f"w{j}" for j in rng.integers(0, 80, size=3 + i % 4)), ["up", "down"][i % 2],
                 f"p{i}", chat=bool(i % 3)) for i in range(n)]


def test_split_is_seeded_per_group_and_balanced():
  prompts = _prompts()
  groups, group_of = split_halves(["up", "down"], prompts, seed=3)
  assert groups == ["up#a", "up#b", "down#a", "down#b"]
  assert set(group_of) == {p.id for p in prompts}
  for g, n in (("up", 6), ("down", 5)):
    a = sum(group_of[p.id] == half_group(g, "a") for p in prompts)
    b = sum(group_of[p.id] == half_group(g, "b") for p in prompts)
    assert (a, b) == ((n + 1) // 2, n // 2)
  # The same seed splits the same way, a group's split does not depend on the other groups.
  assert split_halves(["up", "down"], prompts, seed=3)[1] == group_of
  only_up = split_halves(["up"], [p for p in prompts if p.group == "up"], seed=3)[1]
  assert all(group_of[k] == v for k, v in only_up.items())
  assert any(split_halves(["up", "down"], prompts, seed=s)[1] != group_of for s in range(4, 8))


def test_halves_sum_to_the_whole_recording():
  """Same prompts, same generated tokens; every count (tokens, items, per-neuron counts, histogram) is equal
  exactly, the float sums up to rounding."""
  model = tiny_models.tiny_model_object("llama")
  prompts = _prompts()
  whole = Recorder(model, groups=["up", "down"], batch_size=4, max_new_tokens=5, hist=True,
                   hist_bins="compact").run(prompts, progress=False)
  groups, group_of = split_halves(["up", "down"], prompts, seed=0)
  split = Recorder(model, groups=groups, batch_size=4, max_new_tokens=5, hist=True, hist_bins="compact",
                   group_of=group_of).run(prompts, progress=False)
  assert split.texts == whole.texts and split.tokens == whole.tokens
  for part in ("prompt_stats", "gen_stats"):
    w, s = getattr(whole, part), getattr(split, part)
    joined = join_halves(s)
    assert joined.group_names == w.group_names
    for k in ("tokens", "items", "count", "hist"):
      np.testing.assert_array_equal(getattr(joined, k), getattr(w, k))
    # Each batch's sums are float32 on device (one group's tokens in one sum, or the same tokens in two), added
    # into float64 on the host: the two orders differ by float32 rounding of each batch's sum, about 2**-24
    # relative to the sum of |a| (or a**2) over the batch's tokens, summed over at most a few batches.
    for k in ("s1", "s2"):
      np.testing.assert_allclose(getattr(joined, k), getattr(w, k), rtol=1e-6, atol=1e-5)
    a, b = half_stats(s, "a"), half_stats(s, "b")
    assert a.group_names == b.group_names == ("up", "down")
    np.testing.assert_array_equal(a.items + b.items, w.items)
    assert (a.items > 0).all() and (b.items > 0).all()


def test_half_stats_refuses_whole_statistics():
  from valuejax.engine.stats import NeuronStats
  with pytest.raises(ValueJaxError, match="not split-half"):
    half_stats(NeuronStats.zeros(["up", "down"], 2, 3), HALVES[0])
