"""Neuron edits as data: the `[L, F]` arrays that `forward` threads through every MLP.

An edit acts on the neuron activation `a = act(gate(x))` of layer `l` at the token positions selected by
`edit_mask`, in the order of the ValueLocate/NPTI hook (docs/fidelity.md, "gating"):

    a' = where(position selected, min(a * scale[l], clamp_max[l]) + add[l] * kept[l], a)

The scale and the clamp always apply at selected positions; only the push `add` is gated. `kept[l]` is one
Bernoulli(keep_prob) draw per neuron for the whole layer call ([F], shared by every row and position), from
`fold_in(key, l)`: the authors' vLLM hook draws `torch.rand(len(values))` once per layer call of a decode
step, and a decode step holds one token per sequence. Generation folds the decode step into `key` before
each call (valuejax.engine.generate._step_edit), so each step and each layer draws anew. A pass that holds
several steps at once (teacher forcing a continuation) passes their step ids instead (`steps`): each
position then gets the draw of its own step, `fold_in(fold_in(key, step), l)`, exactly the one decoding
would make when it feeds that token. The identity edit is scale = 1, add = 0, clamp_max = +inf. Because every
field is an array, one compiled function serves every edit, and a batch of edits can be vmapped (leading
axis on every field).

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
  keep_prob: jax.Array  # [] float in [0, 1]: the probability that a neuron's push (add) applies; 1 = always
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


def keep_mask(edit: NeuronEdit, layer: jax.Array, num_neurons: int, steps: jax.Array | None = None) -> jax.Array:
  """Which neurons' pushes apply in layer `layer`: bool [F] for the whole call (`steps` None), else one [F]
  row per step id, [*steps.shape, F].

  The draw is `bernoulli(fold_in(key, layer), keep_prob, (F,))`, with the step folded into the key first
  when `steps` is given: it depends on (key, step, layer) only, never on the batch, its padding or the
  position of the token in it. With keep_prob = 1 nothing is drawn.
  """
  base = jax.random.wrap_key_data(edit.key)
  one = lambda key: jax.random.bernoulli(jax.random.fold_in(key, layer), edit.keep_prob, (num_neurons,))
  if steps is None:
    shape, draw = (num_neurons,), lambda: one(base)
  else:
    steps = jnp.asarray(steps, jnp.int32)
    shape = (*steps.shape, num_neurons)
    draw = lambda: jax.vmap(lambda s: one(jax.random.fold_in(base, s)))(steps.reshape(-1)).reshape(shape)
  return jax.lax.cond(edit.keep_prob < 1.0, draw, lambda: jnp.ones(shape, bool))


def apply_edit(a: jax.Array, layer: jax.Array, edit: NeuronEdit, where: jax.Array | None,
               layer_edit: tuple[jax.Array, jax.Array, jax.Array] | None = None,
               steps: jax.Array | None = None) -> jax.Array:
  """Edits activations `a` [B, T, F] of layer `layer` (a traced int).

  `where` is a [B, T] mask of the positions to edit (None: all). `layer_edit` may pass the layer's
  (scale, add, clamp_max) rows already sliced (inside a scan over layers), else they are indexed here.
  `steps`: the decode step of each position, [T] (the same for every row) or [B, T]; None draws one keep
  mask for the whole call (see the module docstring and `keep_mask`).
  """
  if layer_edit is None:
    layer_edit = (edit.scale[layer], edit.add[layer], edit.clamp_max[layer])
  scale, add, clamp = (x.astype(a.dtype) for x in layer_edit)
  if steps is not None and jnp.ndim(steps) not in (1, 2):
    raise ValueError(f"steps must be [T] or [B, T], got shape {jnp.shape(steps)}")
  kept = keep_mask(edit, layer, a.shape[-1], steps)
  if steps is not None and jnp.ndim(steps) == 1:
    kept = kept[None]  # [1, T, F]: the same draws in every row
  push = jnp.where(kept, add, jnp.zeros((), a.dtype))
  edited = jnp.minimum(a * scale, clamp) + push
  sel = jnp.ones(a.shape[:2], bool) if where is None else where.astype(bool)
  return jnp.where(sel[..., None], edited, a)
