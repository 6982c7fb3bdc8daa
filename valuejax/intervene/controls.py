"""Random controls: neuron sets of the same size and the same per-layer counts as a located set, and the
located edit moved onto them, so that an effect can be compared with what any such set would do.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit, MaskLike, as_mask


def _rng(seed: int, i: int) -> np.random.Generator:
  # One stream per control: control i is the same whatever n is, so adding controls extends a run.
  return np.random.default_rng([int(seed), int(i)])


def random_controls(mask: MaskLike, n: int, seed: int, *, exclude_located: bool = True,
                    exclude: MaskLike | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
  """`n` random `[L, F]` masks with exactly the located set's per-layer counts; returns `[n, L, F]` bool.

  With `exclude_located` the controls never contain a located neuron (a control that shares neurons with the
  set it controls for would understate the difference); `exclude` removes further neurons from the pool.
  Reproducible from `seed`; control i does not depend on `n`.
  """
  located = as_mask(mask, shape)
  forbidden = located.copy() if exclude_located else np.zeros_like(located)
  if exclude is not None:
    forbidden |= as_mask(exclude, located.shape)
  counts = located.sum(1)
  pools = [np.flatnonzero(~forbidden[layer]) for layer in range(located.shape[0])]
  for layer, (k, pool) in enumerate(zip(counts, pools)):
    if k > pool.size:
      raise ValueJaxError(f"layer {layer} has {k} located neurons but only {pool.size} neurons to draw "
                          "controls from", fix="use exclude_located=False, or a smaller neuron set")
  out = np.zeros((n, *located.shape), bool)
  for i in range(n):
    rng = _rng(seed, i)
    for layer, (k, pool) in enumerate(zip(counts, pools)):
      if k:
        out[i, layer, rng.choice(pool, size=int(k), replace=False)] = True
  return out


def transplant(edit: Edit, control: np.ndarray, seed: int = 0, name: str | None = None) -> Edit:
  """Moves each edited neuron's (scale, add, clamp_max) onto a neuron of `control` in the same layer.

  `control` must have the edit's per-layer counts (as `random_controls` of `edit.edited_mask()` does). The
  pairing within a layer is a seeded shuffle, so per-neuron strengths (steering's add) are kept as a
  distribution, not tied to neuron order. A neuron both clamped and pushed (steering's overlap) moves as one,
  so its control neuron is clamped, then pushed, too. Scope, keep_prob and key are unchanged: the control's
  pushes are kept with the same probability, one draw per neuron, layer and decode step, from the same key
  (the draws of other neuron indices than the located edit's, so not the same coin flips).
  """
  edited = edit.edited_mask()
  control = np.asarray(control, bool)
  if control.shape != edited.shape or (control.sum(1) != edited.sum(1)).any():
    raise ValueJaxError("a control must have the edit's shape and per-layer neuron counts",
                        fix="draw it with random_controls(edit.edited_mask(), ...)")
  n = edit.neurons
  fields = [np.asarray(n.scale), np.asarray(n.add), np.asarray(n.clamp_max)]
  idents = (1.0, 0.0, np.inf)
  out = [np.full(edited.shape, ident, np.float32) for ident in idents]
  rng = np.random.default_rng([int(seed), 1])
  for layer in range(edited.shape[0]):
    src = np.flatnonzero(edited[layer])
    dst = rng.permutation(np.flatnonzero(control[layer]))
    for o, f in zip(out, fields):
      o[layer, dst] = f[layer, src]
  neurons = n._replace(scale=jnp.asarray(out[0]), add=jnp.asarray(out[1]), clamp_max=jnp.asarray(out[2]))
  return Edit(neurons, edit.scope, name or f"{edit.name}-control",
              {**edit.metadata, "control_of": edit.name})


def control_edits(edit: Edit, n: int, seed: int, *, exclude_located: bool = True) -> list[Edit]:
  """`n` random controls of `edit`: the same manipulation on size- and layer-matched random neurons."""
  masks = random_controls(edit.edited_mask(), n, seed, exclude_located=exclude_located)
  return [transplant(edit, m, seed=seed * 100003 + i, name=f"{edit.name}-control{i}")
          for i, m in enumerate(masks)]
