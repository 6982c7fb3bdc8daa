"""Descriptive analysis of neuron sets: neurons per layer, overlaps between groups or between sets,
and the ValueExploration split of layers into "decision" (first and last) and "semantic" (middle).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.locate.neuron_set import GroupNeurons, NeuronSet

# ValueExploration, Llama-3-8B (32 layers, 0-based): decision layers 0..4 and 27..31, semantic 5..26.
_PAPER_LAYERS, _PAPER_EDGE = 32, 5


def counts_per_layer(ns: NeuronSet, groups: Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """`{group: int64 [L]}`, the number of neurons each group has in each layer."""
  return {g: ns.counts_per_layer(g) for g in (groups if groups is not None else ns.names)}


def jaccard(a: GroupNeurons, b: GroupNeurons) -> float:
  """|a & b| / |a | b|; NaN when both are empty (no evidence either way)."""
  inter, union = len(a & b), len(a | b)
  return inter / union if union else float("nan")


class Overlap(NamedTuple):
  rows: tuple[str, ...]
  cols: tuple[str, ...]
  jaccard: np.ndarray  # float64 [rows, cols]
  shared: np.ndarray  # int64 [rows, cols], |a & b|


def overlap(ns: NeuronSet, other: NeuronSet | None = None) -> Overlap:
  """Jaccard and shared counts between every pair of groups of `ns` (or of `ns` x `other`, e.g. the
  same values located in two languages)."""
  other = ns if other is None else other
  if (ns.num_layers, ns.num_neurons) != (other.num_layers, other.num_neurons):
    raise ValueJaxError(f"sets have shapes [{ns.num_layers}, {ns.num_neurons}] and "
                        f"[{other.num_layers}, {other.num_neurons}]", "overlap",
                        "compare neuron sets located on the same model")
  jac = np.array([[jaccard(ns[r], other[c]) for c in other.names] for r in ns.names], np.float64)
  shared = np.array([[len(ns[r] & other[c]) for c in other.names] for r in ns.names], np.int64)
  return Overlap(ns.names, other.names, jac.reshape(len(ns.names), len(other.names)),
                 shared.reshape(len(ns.names), len(other.names)))


REGIONS = ("semantic", "decision", "combined")


@dataclasses.dataclass(frozen=True, eq=False)
class LayerSplit:
  """ValueExploration's split of a model's layers, as layer ids; locating restricts neuron sets to a part by
  id, editing reads the same split as [L] masks (`mask`), so both use one definition."""
  decision: np.ndarray  # int64 layer ids, the first and last few layers
  semantic: np.ndarray  # int64 layer ids in between
  num_layers: int

  def __post_init__(self):
    n = self.num_layers
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise ValueJaxError(f"`num_layers` = {n!r} is not a positive int", "LayerSplit",
                          "pass the model's number of decoder layers")
    object.__setattr__(self, "num_layers", int(n))
    for name in ("decision", "semantic"):
      ids = np.asarray(getattr(self, name))
      if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueJaxError(f"`{name}` must be a list of layer ids, got {ids.dtype} {ids.shape}", "LayerSplit",
                            "build it with layer_split(num_layers, ...)")
      if ids.size and (ids.min() < 0 or ids.max() >= self.num_layers):
        raise ValueJaxError(f"`{name}` names layers outside [0, {self.num_layers})", "LayerSplit",
                            "build it with layer_split(num_layers, ...)")
      object.__setattr__(self, name, ids.astype(np.int64))

  def mask(self, region: str) -> np.ndarray:
    """[L] bool: the layers of `region` ("semantic", "decision" or "combined", both)."""
    if region not in REGIONS:
      raise ValueJaxError(f"unknown layer region {region!r}", fix="use 'semantic', 'decision' or 'combined'")
    out = np.zeros(self.num_layers, bool)
    for part in ("semantic", "decision"):
      if region in (part, "combined"):
        out[getattr(self, part)] = True
    return out

  @property
  def decision_mask(self) -> np.ndarray:
    return self.mask("decision")

  @property
  def semantic_mask(self) -> np.ndarray:
    return self.mask("semantic")


def layer_split(num_layers: int, first: int | None = None, last: int | None = None) -> LayerSplit:
  """ValueExploration's layer split. Llama-3-8B (32 layers): decision = layers 0..4 and 27..31
  (0-based; "<= 4 and >= 27"), semantic = 5..26.

  Other depths scale proportionally: `first = last = max(1, floor(5 * L / 32 + 0.5))` (5/32 of the
  depth at each end, rounded half up), e.g. 16 -> 3, 24 -> 4, 28 -> 4, 42 -> 7. Either end can be
  set explicitly; at least one semantic layer must remain.
  """
  where = "layer_split"
  if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 3:
    raise ValueJaxError(f"`num_layers` = {num_layers!r}; a split needs at least 3 layers", where,
                        "pass the model's number of decoder layers")
  default = max(1, int(np.floor(_PAPER_EDGE * num_layers / _PAPER_LAYERS + 0.5)))
  first = default if first is None else first
  last = default if last is None else last
  for name, v in (("first", first), ("last", last)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
      raise ValueJaxError(f"`{name}` = {v!r} is not a non-negative int", where, "pass a number of layers")
  if first + last >= num_layers:
    raise ValueJaxError(f"first={first} + last={last} leaves no semantic layer of {num_layers}", where,
                        "use fewer decision layers")
  layers = np.arange(num_layers, dtype=np.int64)
  decision = np.concatenate([layers[:first], layers[num_layers - last:]])
  return LayerSplit(decision, layers[first:num_layers - last], int(num_layers))


def split_by_layers(ns: NeuronSet, split: LayerSplit) -> dict[str, NeuronSet]:
  """`{"decision": ns restricted to decision layers, "semantic": ... to semantic layers}`."""
  return {part: NeuronSet({g: ns[g].restrict_layers(layers) for g in ns.names},
                          {**ns.provenance, "layers": part, "layer_ids": layers.tolist()})
          for part, layers in (("decision", split.decision), ("semantic", split.semantic))}
