"""Folding linear edits into the parameters: scaling a_j by s equals scaling row j of `down.kernel`,
so zeroing and scaling edits run through the plain forward pass at no extra cost.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit


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
    reasons.append("it adds to activations (folding only rescales rows of down)")
  if edit.edited_mask().any() and float(n.keep_prob) < 1.0:
    reasons.append(f"it is random (keep_prob {float(n.keep_prob)}): a weight edit applies to every token")
  return reasons


def is_foldable(edit: Edit) -> bool:
  return not fold_reasons(edit)


def fold_edit(params: dict, edit: Edit) -> dict:
  """Params whose plain forward equals the forward with `edit` on the activation path.

  Row j of `down.kernel` [L, F, D] is scaled by scale[l, j]; this is exact for gated MLPs (down(a * s * up))
  and non-gated ones (down(a * s)), and leaves the down bias alone, as the activation path does. Captured
  activations are of course the unedited ones. Raises ValueJaxError for edits that need the activation path.
  """
  reasons = fold_reasons(edit)
  if reasons:
    raise ValueJaxError(f"edit {edit.name!r} cannot be folded into the parameters: " + "; ".join(reasons),
                        fix="pass it to forward(edit=...) on the activation path instead")
  down = params["layers"]["down"]["kernel"]
  scale = jnp.asarray(edit.neurons.scale, jnp.float32)
  if tuple(scale.shape) != tuple(down.shape[:2]):
    raise ValueJaxError(f"edit {edit.name!r} has shape {tuple(scale.shape)} but the model's MLPs are "
                        f"{tuple(down.shape[:2])} (num_layers, num_neurons)",
                        fix="build the edit for this model")
  folded = (jnp.asarray(down, jnp.float32) * scale[..., None]).astype(down.dtype)
  layers = {**params["layers"], "down": {**params["layers"]["down"], "kernel": folded}}
  return {**params, "layers": layers}
