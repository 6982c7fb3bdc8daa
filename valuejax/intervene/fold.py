"""Folding linear edits into the parameters: scaling a_j by s equals scaling row j of `down.kernel`,
so zeroing and scaling edits run through the plain forward pass at no extra cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit
from valuejax.models.layout import layout_of


def fold_reasons(edit: Edit) -> list[str]:
  """Why `edit` cannot be folded into the parameters (empty when it can)."""
  n = edit.neurons
  if np.ndim(n.scale) != 2:
    return ["it is a batch of edits; fold one edit at a time"]
  reasons = []
  if edit.scope != "all":
    reasons.append(f"its scope is {edit.scope!r}: folded weights act on every position")
  if np.isfinite(np.asarray(n.clamp_max)).any():
    reasons.append("it clamps activations (min(a, c) is not linear in a)")
  if (np.asarray(n.add) != 0).any():
    random = f", at random (keep_prob {float(n.keep_prob)})" if float(n.keep_prob) < 1.0 else ""
    reasons.append(f"it adds to activations{random} (folding only rescales rows of down)")
  # keep_prob gates only the push (models/edit.py): scaling and clamping apply at every selected token, so a
  # scale-only edit is deterministic whatever keep_prob says.
  return reasons


def is_foldable(edit: Edit) -> bool:
  return not fold_reasons(edit)


def fold_edit(params: dict, edit: Edit) -> dict:
  """Params whose plain forward equals the forward with `edit` on the activation path.

  Row j of `down.kernel` [L, F, D] (column j of each layer's `kernel_t` in the decode layout) is scaled by
  scale[l, j]; this is exact for gated MLPs (down(a * s * up))
  and non-gated ones (down(a * s)), and leaves the down bias alone, as the activation path does. Captured
  activations are of course the unedited ones. Raises ValueJaxError for edits that need the activation path.
  """
  reasons = fold_reasons(edit)
  if reasons:
    raise ValueJaxError(f"edit {edit.name!r} cannot be folded into the parameters: " + "; ".join(reasons),
                        fix="pass it to forward(edit=...) on the activation path instead")
  scale = jnp.asarray(edit.neurons.scale, jnp.float32)
  layers = params["layers"]
  stacked = layout_of(params) == "stacked"
  shape = (tuple(layers["down"]["kernel"].shape[:2]) if stacked else
           (len(layers), jax.tree.leaves(layers[0]["down"]["kernel_t"])[0].shape[1]))
  if tuple(scale.shape) != shape:
    raise ValueJaxError(f"edit {edit.name!r} has shape {tuple(scale.shape)} but the model's MLPs are "
                        f"{shape} (num_layers, num_neurons)", fix="build the edit for this model")
  rescale = lambda w, s: (jnp.asarray(w, jnp.float32) * s).astype(w.dtype)
  if stacked:  # down.kernel [L, F, D]: row j of layer l times scale[l, j]
    down = layers["down"]
    return {**params, "layers": {**layers, "down": {**down, "kernel": rescale(down["kernel"], scale[..., None])}}}
  # The decode layout: down.kernel_t [D, F] per layer (maybe in row blocks over D): column j times scale[l, j].
  return {**params, "layers": [
      {**layer, "down": {**layer["down"], "kernel_t": jax.tree.map(lambda w, s=scale[i]: rescale(w, s),
                                                                   layer["down"]["kernel_t"])}}
      for i, layer in enumerate(layers)]}
