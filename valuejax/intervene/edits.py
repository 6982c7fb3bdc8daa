"""Edits as data: a `NeuronEdit` plus the positions it acts on (scope), a name and metadata.

Neuron sets arrive as `[L, F]` bool masks, per-layer index lists or locate's NeuronSet; all become masks here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.models.edit import NeuronEdit

SCOPES = ("prompt", "generated", "all")

# Anything that names a set of neurons: a [L, F] bool mask, {layer: indices}, [indices per layer], a
# valuejax.locate.GroupNeurons, or a valuejax.locate.NeuronSet with a group name.
MaskLike = Any


def as_mask(neurons: MaskLike, shape: tuple[int, int] | None = None, group: str | None = None) -> np.ndarray:
  """Returns the neuron set as a `[L, F]` numpy bool mask."""
  if hasattr(neurons, "mask") and callable(neurons.mask):
    dims = tuple(shape) if shape is not None else (None, None)
    if hasattr(neurons, "groups"):  # a NeuronSet holds several groups
      if group is None:
        raise ValueJaxError("a NeuronSet holds several groups; say which one becomes the mask",
                            fix=f"pass group=<one of {list(neurons.groups)}>")
      return _check_shape(np.asarray(neurons.mask(group, *dims), bool), shape, f"NeuronSet[{group!r}]")
    return _check_shape(np.asarray(neurons.mask(*dims), bool), shape, "GroupNeurons.mask")
  if isinstance(neurons, (np.ndarray, jax.Array)):
    arr = np.asarray(neurons)
    if arr.dtype != bool:
      raise ValueJaxError(f"a neuron mask must be a bool array, got dtype {arr.dtype}",
                          fix="pass mask != 0, or per-layer index lists")
    if arr.ndim != 2:
      raise ValueJaxError(f"a neuron mask must be [L, F], got shape {arr.shape}")
    return _check_shape(arr, shape, "mask")
  if shape is None:
    raise ValueJaxError("per-layer neuron indices need shape=(num_layers, num_neurons)")
  items = neurons.items() if isinstance(neurons, Mapping) else enumerate(neurons)
  mask = np.zeros(shape, bool)
  for layer, idx in items:
    layer = int(layer)
    idx = np.asarray(idx, np.int64).reshape(-1)
    if not 0 <= layer < shape[0] or (idx.size and (idx.min() < 0 or idx.max() >= shape[1])):
      raise ValueJaxError(f"neuron index out of range in layer {layer} for shape {shape}",
                          fix="check that the neuron set was located on this model")
    mask[layer, idx] = True
  return mask


def mask_from_indices(layers: Sequence[int], indices: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
  """`[L, F]` mask from parallel (layer, index) lists, the way locate stores neurons."""
  return values_from_indices(layers, indices, np.ones(len(layers)), shape) != 0


def values_from_indices(layers: Sequence[int], indices: Sequence[int], values: Sequence[float],
                        shape: tuple[int, int]) -> np.ndarray:
  """`[L, F]` float array holding per-neuron `values` at (layer, index), 0 elsewhere."""
  layers, indices = np.asarray(layers, np.int64), np.asarray(indices, np.int64)
  values = np.asarray(values, np.float32)
  if not layers.shape == indices.shape == values.shape:
    raise ValueJaxError(f"layers, indices and values differ in length: {layers.shape}, {indices.shape}, "
                        f"{values.shape}")
  if layers.size and (layers.min() < 0 or layers.max() >= shape[0] or indices.min() < 0
                      or indices.max() >= shape[1]):
    raise ValueJaxError(f"neuron (layer, index) out of range for shape {shape}",
                        fix="check that the neurons were located on this model")
  out = np.zeros(shape, np.float32)
  out[layers, indices] = values
  return out


def _check_shape(mask: np.ndarray, shape: tuple[int, int] | None, what: str) -> np.ndarray:
  if shape is not None and tuple(mask.shape) != tuple(shape):
    raise ValueJaxError(f"{what} has shape {mask.shape}, expected {tuple(shape)} (num_layers, num_neurons)",
                        fix="use a neuron set located on this model")
  return mask


def edit_mask_for(scope: str, attention_mask: jax.Array | None, is_generated: jax.Array | None,
                  shape: tuple[int, int] | None = None) -> jax.Array:
  """The [B, T] positions an edit of `scope` acts on; padding is never edited.

  `is_generated` marks response tokens (in teacher forcing: the continuation). Works inside jit.
  """
  if scope not in SCOPES:
    raise ValueJaxError(f"unknown edit scope {scope!r}", fix=f"use one of {SCOPES}")
  if attention_mask is None:
    ref = is_generated if is_generated is not None else None
    if ref is None and shape is None:
      raise ValueJaxError("edit_mask_for needs an attention_mask, is_generated or a shape")
    attention_mask = jnp.ones(ref.shape if ref is not None else shape, bool)
  real = jnp.asarray(attention_mask).astype(bool)
  if scope == "all":
    return real
  if is_generated is None:
    raise ValueJaxError(f"an edit with scope {scope!r} needs to know which tokens are generated",
                        fix="pass is_generated (True on response tokens), or use scope 'all'")
  gen = jnp.asarray(is_generated).astype(bool)
  return real & gen if scope == "generated" else real & ~gen


@dataclasses.dataclass(frozen=True)
class Edit:
  """One manipulation: what happens to each neuron (`neurons`) and at which positions (`scope`)."""
  neurons: NeuronEdit
  scope: str = "all"
  name: str = "edit"
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.scope not in SCOPES:
      raise ValueJaxError(f"unknown edit scope {self.scope!r}", where=f"edit {self.name!r}",
                          fix=f"use one of {SCOPES}")

  @property
  def shape(self) -> tuple[int, int]:
    return tuple(self.neurons.scale.shape[-2:])

  def edited_mask(self) -> np.ndarray:
    """[L, F] bool: the neurons this edit can change (host-side; not for use under jit)."""
    n = self.neurons
    return ((np.asarray(n.scale) != 1) | (np.asarray(n.add) != 0)
            | np.isfinite(np.asarray(n.clamp_max)))

  @property
  def is_identity(self) -> bool:
    return not self.edited_mask().any()

  def generate_kwargs(self) -> dict[str, Any]:
    """Keyword arguments for `valuejax.engine.generate`, which takes the edit and its scope separately."""
    return {"edit": self.neurons, "edit_scope": self.scope}

  def mask_for(self, attention_mask, is_generated=None, shape=None) -> jax.Array:
    return edit_mask_for(self.scope, attention_mask, is_generated, shape)

  @staticmethod
  def stack(edits: Sequence["Edit"]) -> "EditBatch":
    """Stacks edits on a leading axis (for vmap). All non-identity edits must share one scope; identity
    edits (the baseline) act the same under any scope and adopt it."""
    edits = list(edits)
    if not edits:
      raise ValueJaxError("Edit.stack needs at least one edit")
    shapes = {e.shape for e in edits}
    if len(shapes) != 1:
      raise ValueJaxError(f"edits of different shapes cannot be stacked: {sorted(shapes)}")
    scopes = {e.scope for e in edits if not e.is_identity}
    if len(scopes) > 1:
      raise ValueJaxError(f"edits with different scopes cannot run in one batch: {sorted(scopes)}",
                          fix="run each scope as its own batch")
    scope = scopes.pop() if scopes else edits[0].scope
    # Stacked on the host, then one transfer per field: jnp.stack over thousands of device arrays compiles a
    # concatenation of that arity (a minute for 4,000 edits), np.stack takes milliseconds.
    neurons = jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])),
                           *[e.neurons for e in edits])
    return EditBatch(neurons, scope, tuple(e.name for e in edits), tuple(dict(e.metadata) for e in edits))


@dataclasses.dataclass(frozen=True)
class EditBatch:
  """Several edits stacked on a leading axis E of every `NeuronEdit` field."""
  neurons: NeuronEdit
  scope: str
  names: tuple[str, ...]
  metadata: tuple[Mapping[str, Any], ...]

  def __len__(self) -> int:
    return len(self.names)

  def __getitem__(self, i: int) -> Edit:
    return Edit(jax.tree.map(lambda x: x[i], self.neurons), self.scope, self.names[i], self.metadata[i])

  def __iter__(self) -> Iterator[Edit]:
    return (self[i] for i in range(len(self)))

  def pad_to(self, n: int) -> "EditBatch":
    """Appends identity edits up to `n` so that batches of different sizes share one compiled shape."""
    if n < len(self):
      raise ValueJaxError(f"cannot pad {len(self)} edits down to {n}")
    extra = n - len(self)
    if not extra:
      return self
    ident = identity_neurons(self.neurons.scale.shape[-2:], self.neurons.scale.dtype)
    pad = jax.tree.map(lambda x: jnp.broadcast_to(x, (extra, *x.shape)), ident)
    neurons = jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), self.neurons, pad)
    return EditBatch(neurons, self.scope, self.names + ("padding",) * extra,
                     self.metadata + ({},) * extra)


def identity_neurons(shape: tuple[int, int], dtype=jnp.float32) -> NeuronEdit:
  return NeuronEdit.identity(int(shape[0]), int(shape[1]), dtype)


def make_neuron_edit(shape: tuple[int, int], *, scale: np.ndarray | None = None, add: np.ndarray | None = None,
                     clamp_max: np.ndarray | None = None, keep_prob: float = 1.0, seed: int = 0) -> NeuronEdit:
  """A `NeuronEdit` from host arrays; fields left out are the identity. `keep_prob` is the probability that a
  neuron's `add` applies, drawn once per neuron, layer and decode step from `seed` (models/edit.py); `scale`
  and `clamp_max` always apply."""
  if not 0.0 <= keep_prob <= 1.0:
    raise ValueJaxError(f"keep_prob must be in [0, 1], got {keep_prob}")
  scale = np.ones(shape, np.float32) if scale is None else np.asarray(scale, np.float32)
  add = np.zeros(shape, np.float32) if add is None else np.asarray(add, np.float32)
  clamp = np.full(shape, np.inf, np.float32) if clamp_max is None else np.asarray(clamp_max, np.float32)
  for name, arr in (("scale", scale), ("add", add), ("clamp_max", clamp)):
    if arr.shape != tuple(shape):
      raise ValueJaxError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
  return NeuronEdit(jnp.asarray(scale), jnp.asarray(add), jnp.asarray(clamp),
                    jnp.asarray(keep_prob, jnp.float32), jax.random.key_data(jax.random.key(seed)))
