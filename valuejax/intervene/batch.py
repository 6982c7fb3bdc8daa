"""Many edits, few compiled functions: edits are vmapped in fixed-size chunks, so the located set, its
reverse, any number of random controls and the baseline run through one trace per chunk size.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit, EditBatch, edit_mask_for
from valuejax.models.edit import NeuronEdit

# fn(params, cfg, batch, edit, edit_mask) -> pytree of arrays, for ONE edit; cfg is static.
EditFn = Callable[[Any, Any, Mapping[str, jax.Array], NeuronEdit, jax.Array], Any]


@functools.lru_cache(maxsize=64)
def _compiled(fn: EditFn):
  def run(params, cfg, batch, neurons, edit_mask):
    return jax.vmap(lambda e: fn(params, cfg, batch, e, edit_mask))(neurons)
  return jax.jit(run, static_argnums=1)


def run_edits(fn: EditFn, params: Any, cfg: Any, batch: Mapping[str, jax.Array],
              edits: EditBatch | Sequence[Edit], *, chunk: int = 8) -> Any:
  """Runs `fn` once per edit; returns its outputs stacked on a leading edit axis [E, ...].

  `batch` holds "input_ids" [B, T] and optionally "attention_mask" and "is_generated" [B, T]; the edit mask
  for the batch's scope is built from them and passed to `fn`. Edits are vmapped `chunk` at a time and the
  last chunk is padded with identity edits, so the shapes `fn` sees barely depend on the number of edits:
  fewer edits than `chunk` run as the next power of two (3 edits as 4, not as 8 with 5 of them wasted), so
  (fn, cfg, shapes) trace at most once per power of two up to `chunk`, whether 9 or 50 edits run. `chunk`
  bounds memory (chunk x one forward).
  """
  if not isinstance(edits, EditBatch):
    edits = Edit.stack(edits)
  if chunk < 1:
    raise ValueJaxError(f"chunk must be >= 1, got {chunk}")
  if "input_ids" not in batch:
    raise ValueJaxError("run_edits needs batch['input_ids']")
  edit_mask = edit_mask_for(edits.scope, batch.get("attention_mask"), batch.get("is_generated"),
                            shape=tuple(batch["input_ids"].shape))
  n = len(edits)
  chunk = min(chunk, 1 << (n - 1).bit_length())  # the smallest power of two >= n, at most chunk
  padded = edits.pad_to(-(-n // chunk) * chunk)
  f = _compiled(fn)
  outs = []
  for start in range(0, len(padded), chunk):
    neurons = jax.tree.map(lambda x: x[start:start + chunk], padded.neurons)
    outs.append(f(params, cfg, dict(batch), neurons, edit_mask))
  return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:n], *outs)
