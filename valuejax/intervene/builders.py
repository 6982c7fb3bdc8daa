"""The papers' manipulations as `Edit` builders: LAPE deactivation, ValueLocate/NPTI steering (clamp one set,
then push the other, each push kept at random per decode step), ValueExploration's x5 / 0 edits by layer
region, and the identity baseline.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit, MaskLike, as_mask, make_neuron_edit, values_from_indices
# The layer split is locate's (one rule and one type for locating and editing); re-exported here for the edits.
from valuejax.locate.analysis import LayerSplit, layer_split

# ValueLocate's gate on the contrast: neurons barely above the 0.1 selection threshold get little push.
_STEER_SHARPNESS = 10.0
_STEER_CENTRE = 0.15


def baseline(shape: tuple[int, int], name: str = "baseline") -> Edit:
  """The identity edit (empty neuron set): the reference every effect is measured against."""
  return Edit(make_neuron_edit(shape), "all", name, {"kind": "baseline", "n_neurons": 0})


def deactivate(neurons: MaskLike, shape: tuple[int, int] | None = None, group: str | None = None,
               name: str = "deactivate") -> Edit:
  """LAPE: a = 0 on the set, at every position."""
  mask = as_mask(neurons, shape, group)
  scale = np.where(mask, 0.0, 1.0).astype(np.float32)
  return Edit(make_neuron_edit(mask.shape, scale=scale), "all", name,
              {"kind": "deactivate", "n_neurons": int(mask.sum())})


@dataclasses.dataclass(frozen=True)
class SteerSet:
  """One aspect's located neurons with the per-neuron `v` (p+ or NPTI's v95) and contrast `delta`."""
  mask: np.ndarray  # [L, F] bool
  v: np.ndarray  # [L, F] float, read only on the mask
  delta: np.ndarray  # [L, F] float, read only on the mask

  def __post_init__(self):
    shapes = {np.shape(self.mask), np.shape(self.v), np.shape(self.delta)}
    if len(shapes) != 1 or len(np.shape(self.mask)) != 2:
      raise ValueJaxError(f"SteerSet mask, v and delta must all be [L, F], got {sorted(shapes)}")

  @classmethod
  def from_neurons(cls, layers: Sequence[int], indices: Sequence[int], v: Sequence[float],
                   delta: Sequence[float], shape: tuple[int, int]) -> "SteerSet":
    """From locate's per-neuron records (layer, index, delta, p+ or v95)."""
    ones = np.ones(len(layers))
    return cls(values_from_indices(layers, indices, ones, shape) != 0,
               values_from_indices(layers, indices, v, shape),
               values_from_indices(layers, indices, delta, shape))

  @classmethod
  def from_group(cls, group, v: str = "p") -> "SteerSet":
    """From a located group (valuejax.locate.GroupNeurons, e.g. `neuron_set["Conservation"]`) with its
    `delta` and `p` scores; `v="v95"` for the NPTI variant."""
    shape = (group.num_layers, group.num_neurons)
    return cls.from_neurons(group.layer, group.index, group.score(v), group.score("delta"), shape)

  @classmethod
  def from_arrays(cls, neurons: MaskLike, v: np.ndarray, delta: np.ndarray,
                  shape: tuple[int, int] | None = None, group: str | None = None) -> "SteerSet":
    mask = as_mask(neurons, shape, group)
    return cls(mask, np.asarray(v, np.float32), np.asarray(delta, np.float32))


def steer_strength(v: np.ndarray, delta: np.ndarray, gamma: float) -> np.ndarray:
  """gamma * v * sigmoid(10 * (delta - 0.15)): the amount added to a target neuron."""
  gate = 1.0 / (1.0 + np.exp(-_STEER_SHARPNESS * (np.asarray(delta, np.float64) - _STEER_CENTRE)))
  return (gamma * np.asarray(v, np.float64) * gate).astype(np.float32)


# The parts of a steering edit (steering(part=)): the whole edit, its push alone, its clamp alone.
STEER_PARTS = ("full", "push", "clamp")


def steering(target: SteerSet, opposite: SteerSet | MaskLike, gamma: float, *, mode: str = "enhance",
             keep_prob: float = 0.9, seed: int = 0, name: str | None = None, part: str = "full") -> Edit:
  """ValueLocate / NPTI steering, applied to generated tokens only, as the authors' hook applies it.

  enhance: opposite neurons are clamped, a <- min(a, 0), at every generated token; target neurons are pushed,
  a <- a + gamma * v * sigmoid(10 (delta - 0.15)). reverse: the roles swap (the opposite aspect is pushed
  with its own v and delta, the target clamped), so `opposite` must then be a SteerSet. Only the push is
  random: each target neuron's push applies with probability `keep_prob`, one draw per neuron, layer and
  decode step shared by every row (seeded by `seed`; the engine folds in the decode step). The clamp always
  applies.

  A neuron in both sets is clamped, then pushed (min(a, 0) + push), as in the hook, which clamps the whole
  opposite set before it adds to the target set: the push survives. `metadata["n_overlap"]` counts them;
  `n_target` and `n_opposite` count the whole pushed and clamped sets, overlap included.

  `part` takes the edit apart: "push" keeps only the push (the same strengths, keep_prob and seed, so the same
  draws), "clamp" only the clamp, "full" both. On neurons in neither set's overlap the two parts are the full
  edit's two halves exactly; a neuron in both sets gets a + push from "push" and min(a, 0) from "clamp". The
  counts in `metadata` stay those of the full edit's sets; `metadata["part"]` names the part.
  """
  if part not in STEER_PARTS:
    raise ValueJaxError(f"unknown steering part {part!r}", fix=f"use one of {', '.join(STEER_PARTS)}")
  if mode not in ("enhance", "reverse"):
    raise ValueJaxError(f"unknown steering mode {mode!r}", fix="use 'enhance' or 'reverse'")
  if not isinstance(opposite, SteerSet):
    if mode == "reverse":
      raise ValueJaxError("reverse steering pushes the opposite aspect, so it needs that aspect's v and delta",
                          fix="pass the opposite set as a SteerSet")
    mask = as_mask(opposite, target.mask.shape)
    opposite = SteerSet(mask, np.zeros(mask.shape, np.float32), np.zeros(mask.shape, np.float32))
  if mode == "reverse":
    target, opposite = opposite, target
  shape = target.mask.shape
  if opposite.mask.shape != shape:
    raise ValueJaxError(f"target and opposite sets differ in shape: {shape} vs {opposite.mask.shape}")
  both = target.mask & opposite.mask
  push, clamp = target.mask, opposite.mask
  add = np.where(push & (part != "clamp"), steer_strength(target.v, target.delta, gamma), 0.0).astype(np.float32)
  clamp_max = np.where(clamp & (part != "push"), 0.0, np.inf).astype(np.float32)
  meta = {"kind": "steer", "mode": mode, "gamma": float(gamma), "keep_prob": float(keep_prob),
          "seed": int(seed), "n_target": int(push.sum()), "n_opposite": int(clamp.sum()),
          "n_overlap": int(both.sum()), **({} if part == "full" else {"part": part})}
  return Edit(make_neuron_edit(shape, add=add, clamp_max=clamp_max, keep_prob=keep_prob, seed=seed),
              "generated", name or f"steer-{mode}-g{gamma:g}" + ("" if part == "full" else f"-{part}"), meta)


def region_layers(region: str, split: LayerSplit) -> np.ndarray:
  """[L] bool: the layers of `region` ("semantic", "decision" or "combined")."""
  return split.mask(region)


def _split_for(split: LayerSplit | None, num_layers: int) -> LayerSplit:
  """The default split for `num_layers`, or the caller's after checking that it is for that depth."""
  if split is None:
    return layer_split(num_layers)
  if not isinstance(split, LayerSplit):
    raise ValueJaxError(f"expected a LayerSplit, got {type(split).__name__}",
                        fix="build it with valuejax.locate.layer_split(num_layers, first=, last=)")
  if split.num_layers != num_layers:
    raise ValueJaxError(f"the layer split is for {split.num_layers} layers but the neuron sets have {num_layers}",
                        fix="build the split for the model the sets were located on")
  return split


def _exploration_scale(support: np.ndarray, conflict: np.ndarray, toward: str, factor: float) -> np.ndarray:
  if toward not in ("support", "conflict"):
    raise ValueJaxError(f"unknown direction {toward!r}", fix="use toward='support' or toward='conflict'")
  # Neurons in both groups respond to the value whichever side is argued: editing them would not
  # separate the two.
  both = support & conflict
  up, down = (support, conflict) if toward == "support" else (conflict, support)
  scale = np.ones(support.shape, np.float32)
  scale[up & ~both] = factor
  scale[down & ~both] = 0.0
  return scale


def value_exploration(support: MaskLike, conflict: MaskLike, *, toward: str = "support",
                      region: str = "combined", factor: float = 5.0, split: LayerSplit | None = None,
                      shape: tuple[int, int] | None = None, name: str | None = None) -> Edit:
  """ValueExploration: unique neurons of the favoured group a <- 5a, of the other a <- 0, at all positions,
  only in the layers of `region`. Neurons in both groups are left alone."""
  s, c = as_mask(support, shape), as_mask(conflict, shape)
  if s.shape != c.shape:
    raise ValueJaxError(f"support and conflict sets differ in shape: {s.shape} vs {c.shape}")
  layers = region_layers(region, _split_for(split, s.shape[0]))
  scale = _exploration_scale(s, c, toward, factor)
  scale[~layers] = 1.0
  meta = {"kind": "value_exploration", "toward": toward, "region": region, "factor": float(factor),
          "n_scaled": int((scale == factor).sum()), "n_zeroed": int((scale == 0).sum()),
          "n_overlap": int((s & c)[layers].sum())}
  return Edit(make_neuron_edit(s.shape, scale=scale), "all", name or f"vexp-{region}-{toward}", meta)


def value_exploration_combined(semantic: tuple[MaskLike, MaskLike], decision: tuple[MaskLike, MaskLike], *,
                               toward: str = "support", factor: float = 5.0, split: LayerSplit | None = None,
                               shape: tuple[int, int] | None = None, name: str | None = None) -> Edit:
  """ValueExploration "combined": the semantic-setting (support, conflict) sets edited in the semantic layers
  and the decision-setting sets in the decision layers, in one edit."""
  sem = value_exploration(*semantic, toward=toward, region="semantic", factor=factor, split=split, shape=shape)
  dec = value_exploration(*decision, toward=toward, region="decision", factor=factor, split=split, shape=shape)
  semantic_layers = _split_for(split, sem.shape[0]).semantic_mask
  scale = np.where(semantic_layers[:, None], np.asarray(sem.neurons.scale), np.asarray(dec.neurons.scale))
  meta = {"kind": "value_exploration", "toward": toward, "region": "combined", "factor": float(factor),
          "n_scaled": int((scale == factor).sum()), "n_zeroed": int((scale == 0).sum()),
          "n_overlap": sem.metadata["n_overlap"] + dec.metadata["n_overlap"]}
  return Edit(make_neuron_edit(sem.shape, scale=scale), "all", name or f"vexp-combined-{toward}", meta)


def restrict_layers(edit: Edit, layers: np.ndarray, name: str | None = None) -> Edit:
  """The same edit with identity outside `layers` ([L] bool)."""
  layers = np.asarray(layers, bool)
  n = edit.neurons
  if layers.shape != (n.scale.shape[0],):
    raise ValueJaxError(f"layer selection has shape {layers.shape}, expected ({n.scale.shape[0]},)")
  keep = layers[:, None]
  neurons = n._replace(scale=jnp.where(keep, n.scale, 1.0), add=jnp.where(keep, n.add, 0.0),
                       clamp_max=jnp.where(keep, n.clamp_max, jnp.inf))
  return Edit(neurons, edit.scope, name or edit.name, {**edit.metadata, "layers": np.flatnonzero(layers).tolist()})
