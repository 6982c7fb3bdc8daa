"""Neuron edits as data: the `[L, F]` arrays that `forward` threads through every MLP.

An edit acts on the neuron activation `a = act(gate(x))` of layer `l` at the token positions selected by
`edit_mask`:

    edited = min(a * scale[l] + add[l], clamp_max[l])
    a'     = where(position selected and neuron kept, edited, a)

"Neuron kept" draws a Bernoulli(keep_prob) per (token, neuron) from `key` when `keep_prob < 1` (the
ValueLocate/NPTI protocol applies each neuron with probability 0.9 per decode step). The identity edit is
scale = 1, add = 0, clamp_max = +inf. Because every field is an array, one compiled function serves every
edit, and a batch of edits can be vmapped (leading axis on every field).

Builders for the papers' manipulations live in `valuejax.intervene`; this module is the contract the
forward pass understands.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class NeuronEdit(NamedTuple):
  scale: jax.Array  # [L, F] float
  add: jax.Array  # [L, F] float
  clamp_max: jax.Array  # [L, F] float, +inf where unclamped
  keep_prob: jax.Array  # [] float in [0, 1]; 1 = deterministic
  key: jax.Array  # [2] uint32 PRNG key data (jax.random.key_data), used only when keep_prob < 1

  @classmethod
  def identity(cls, num_layers: int, num_neurons: int, dtype=jnp.float32) -> "NeuronEdit":
    return cls(
        scale=jnp.ones((num_layers, num_neurons), dtype),
        add=jnp.zeros((num_layers, num_neurons), dtype),
        clamp_max=jnp.full((num_layers, num_neurons), jnp.inf, dtype),
        keep_prob=jnp.ones((), jnp.float32),
        key=jax.random.key_data(jax.random.key(0)),
    )


def apply_edit(a: jax.Array, layer: jax.Array, edit: NeuronEdit, where: jax.Array | None,
               layer_edit: tuple[jax.Array, jax.Array, jax.Array] | None = None) -> jax.Array:
  """Edits activations `a` [B, T, F] of layer `layer` (a traced int).

  `where` is a [B, T] mask of the positions to edit (None: all). `layer_edit` may pass the layer's
  (scale, add, clamp_max) rows already sliced (inside a scan over layers), else they are indexed here.
  """
  if layer_edit is None:
    layer_edit = (edit.scale[layer], edit.add[layer], edit.clamp_max[layer])
  scale, add, clamp = (x.astype(a.dtype) for x in layer_edit)
  edited = jnp.minimum(a * scale + add, clamp)
  sel = jnp.ones(a.shape[:2], bool) if where is None else where.astype(bool)
  sel = sel[..., None]

  def draw():
    key = jax.random.fold_in(jax.random.wrap_key_data(edit.key), layer)
    return jax.random.bernoulli(key, edit.keep_prob, a.shape)

  kept = jax.lax.cond(edit.keep_prob < 1.0, draw, lambda: jnp.ones(a.shape, bool))
  return jnp.where(sel & kept, edited, a)
