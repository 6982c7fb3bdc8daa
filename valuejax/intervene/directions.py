"""Directions of the located edit's size: a diff-in-means edit in neuron space and random directions, the
yardsticks that say whether a located set moves the metric further than "a push of this size" does.

A direction is an additive edit: `a <- a + alpha * d` on every MLP neuron of the edited layers, at the located
edit's positions (its scope), with every neuron's push kept (keep_prob 1). It is a `NeuronEdit` whose `add`
holds `alpha * d` (models/edit.py applies it as it applies a steering push), so the scoring of every metric
runs it unchanged. It cannot be folded into the weights (an added constant is not a rescaled row of `down`;
intervene/fold.py says so): it runs on the activation path only.

Everything here reads the recorded statistics (engine/stats.py: per group the token count T and per neuron
the sum of activations S1 over the counted tokens) through `NeuronStats`.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit, make_neuron_edit


def group_mean(stats: Any, groups: Sequence[str]) -> np.ndarray:
  """[L, F] float64: the mean activation of every neuron over the counted tokens of `groups` pooled,
  sum(S1) / sum(T). A group with no counted token cannot give a mean: refused."""
  idx = [stats.group(g) for g in groups]
  tokens = float(np.sum(np.asarray(stats.tokens, np.float64)[idx]))
  if tokens <= 0:
    raise ValueJaxError(f"the recording counted no token of {', '.join(groups)}: no mean activation",
                        "record/stats.npz", "rerun the record stage with items in these groups")
  return np.asarray(stats.s1, np.float64)[idx].sum(0) / tokens


def diff_in_means(stats: Any, plus: str, minus: str) -> np.ndarray:
  """[L, F] float64: per neuron the mean activation of group `plus` minus that of group `minus`,
  S1_plus / T_plus - S1_minus / T_minus, from the recorded statistics."""
  return group_mean(stats, [plus]) - group_mean(stats, [minus])


def edited_layers(edit: Edit) -> np.ndarray:
  """[L] bool: the layers in which `edit` changes at least one neuron."""
  return edit.edited_mask().any(axis=1)


def expected_change(edit: Edit, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(push, rest), each [L, F] float64: the located edit's expected change to the mean activation vector
  `mean`, split into its push and its deterministic part (scale and clamp).

  The push is `keep_prob * add` per neuron: each push applies with probability keep_prob, so this is its exact
  expectation on any activations. The deterministic part is the edit applied to the mean,
  `min(scale * mean, clamp_max) - mean`: exact for a scale (linear in a), while for a clamp it is the clamp of
  the mean. The clamp's exact expected change, -E[max(a, 0)] for `min(a, 0)`, needs the mean positive part of
  each neuron's activation, which the recording does not keep (S1 sums a, not max(a, 0)); by Jensen's
  inequality max(E a, 0) <= E max(a, 0), so the clamp's part here is a lower bound on the size of its expected
  change (equal for a neuron never negative)."""
  n = edit.neurons
  scale, add, clamp = (np.asarray(x, np.float64) for x in (n.scale, n.add, n.clamp_max))
  mean = np.asarray(mean, np.float64)
  if mean.shape != scale.shape:
    raise ValueJaxError(f"the mean activations have shape {mean.shape}, the edit {scale.shape}",
                        fix="use statistics recorded on the model the sets were located on")
  push = float(n.keep_prob) * add
  rest = np.minimum(scale * mean, clamp) - mean
  return push, rest


def edit_norm(edit: Edit, mean: np.ndarray) -> dict[str, float]:
  """The L2 norm of the located edit's expected change to the mean activation vector (`expected_change`) over
  all neurons: {"norm", "push_norm", "clamp_norm"} (the whole change and each of its two parts)."""
  push, rest = expected_change(edit, mean)
  return {"norm": float(np.linalg.norm(push + rest)), "push_norm": float(np.linalg.norm(push)),
          "clamp_norm": float(np.linalg.norm(rest))}


def direction_edit(direction: np.ndarray, layers: np.ndarray, norm: float, *, sign: float = 1.0,
                   scope: str = "generated", name: str = "direction", kind: str = "direction") -> Edit:
  """The additive edit `a <- a + sign * alpha * direction` on every neuron of `layers` ([L] bool; the direction
  is zeroed in the other layers), with alpha >= 0 chosen so that ||alpha * direction||_2 = `norm` over those
  layers. Every push is kept (keep_prob 1). A direction that is 0 on every neuron of `layers` cannot be
  scaled to a norm: refused. metadata: kind, alpha, norm, the direction's own norm, its neurons, sign."""
  d = np.where(np.asarray(layers, bool)[:, None], np.asarray(direction, np.float64), 0.0)
  d_norm = float(np.linalg.norm(d))
  if not d_norm > 0 or not np.isfinite(d_norm):
    raise ValueJaxError(f"the {kind} direction is 0 (or not finite) on the edited layers: it cannot be scaled",
                        fix="record more tokens per group, or set intervene.direction_yardstick = False")
  if sign not in (1.0, -1.0):
    raise ValueJaxError(f"a direction's sign is +1 or -1, got {sign}")
  alpha = float(norm) / d_norm
  add = (sign * alpha * d).astype(np.float32)
  meta = {"kind": kind, "alpha": alpha, "norm": float(norm), "direction_norm": d_norm, "sign": float(sign),
          "n_neurons": int(np.asarray(layers, bool).sum() * d.shape[1])}
  return Edit(make_neuron_edit(d.shape, add=add, keep_prob=1.0), scope, name, meta)


def direction_seed(seed: int, unit: str) -> int:
  """The seed of a unit's random directions: the run's seed with the unit's name folded in (crc32), so that
  each unit draws its own directions and the same unit draws the same ones in every run."""
  return int(np.random.SeedSequence([int(seed), zlib.crc32(unit.encode("utf-8"))]).generate_state(1)[0])


def random_directions(shape: tuple[int, int], k: int, seed: int) -> list[np.ndarray]:
  """`k` directions [L, F] float64 of i.i.d. standard normal entries over every neuron, drawn from `seed`.
  Direction i is the same for any k > i (drawn one after another from one generator); `direction_edit` zeroes
  the layers an edit does not reach and scales each to the located edit's norm."""
  if int(k) < 0:
    raise ValueJaxError(f"the number of random directions must be >= 0, got {k}")
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(tuple(shape)) for _ in range(int(k))]
