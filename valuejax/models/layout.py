"""The weights' two layouts, the one description of their shapes, and the conversion between them.

"stacked" is the canonical tree that `valuejax.models.convert` builds from a checkpoint: every `layers` leaf
has a leading [L] axis and dense kernels are [in, out]. "decode" is the layout of fast decoding (see
`unstack_layers`): a list of per-layer dicts with q/k/v and gate/up fused and kernels transposed.

`param_shapes(cfg, layout)` is the only place that says which weights an architecture has and their shapes:
the converter checks a checkpoint against it, the memory plan sizes a run from it, and the sharding tests
place it. Its decode tree is the stacked one put through `unstack_layers` itself, so the two cannot drift.
`layout_of(params)` is the only way to ask which layout a tree is in.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig

LAYOUTS = ("stacked", "decode")
# The fused dense layers of the decode layout, each the listed stacked ones side by side (in this order).
FUSED = {"qkv": ("q", "k", "v"), "gate_up": ("gate", "up")}


def layout_of(params: dict) -> str:
  """"decode" for params made by `unstack_layers` (a list of layers), else "stacked"."""
  return "decode" if isinstance(params["layers"], (list, tuple)) else "stacked"


def check_layout(layout: str, where: str = "layout") -> str:
  """`layout` itself when it is one of LAYOUTS; a ValueJaxError otherwise."""
  if layout not in LAYOUTS:
    raise ValueJaxError(f"layout {layout!r} is unknown", where, f"use one of {', '.join(LAYOUTS)}")
  return layout


def param_shapes(cfg: ModelConfig, layout: str = "stacked", parts: int = 1, dtype: Any = np.float32) -> dict:
  """Every weight of `cfg`'s params in `layout`, as `jax.ShapeDtypeStruct`s of `dtype` (no arrays).

  stacked: embed [V, D]; pos_embed [P, D] (learned positions); final_norm {scale, bias (LayerNorm)};
  lm_head [D, V] (untied only); layers: attn_norm, mlp_norm (and post_attn_norm / post_mlp_norm for
  sandwich norms, q_norm / k_norm [L, hd] for qk norms), q [L, D, H*hd], k, v [L, D, KV*hd], o [L, H*hd, D],
  gate [L, D, F] (a non-gated MLP's input projection), up [L, D, F] (gated only), down [L, F, D]; dense
  layers are {kernel, bias?} with the biases the config names. Norm scales keep Hugging Face's meaning.
  decode: that tree after `unstack_layers(params, parts)` (parts > 1: kernels and the head in row blocks).
  """
  check_layout(layout)
  leaf = lambda *shape: jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype)
  L, D, F, V = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim

  def dense(n_in, n_out, bias):
    return {"kernel": leaf(L, n_in, n_out), **({"bias": leaf(L, n_out)} if bias else {})}

  def norm(size, stacked=True):
    shape = (L, size) if stacked else (size,)
    return {"scale": leaf(*shape), **({"bias": leaf(*shape)} if cfg.norm_kind == "layer" else {})}

  layers = {"attn_norm": norm(D), "mlp_norm": norm(D),
            "q": dense(D, q, cfg.qkv_bias), "k": dense(D, kv, cfg.qkv_bias), "v": dense(D, kv, cfg.qkv_bias),
            "o": dense(q, D, cfg.o_bias), "gate": dense(D, F, cfg.mlp_bias), "down": dense(F, D, cfg.mlp_bias)}
  if cfg.gated_mlp:
    layers["up"] = dense(D, F, cfg.mlp_bias)
  if cfg.sandwich_norm:
    layers.update(post_attn_norm=norm(D), post_mlp_norm=norm(D))
  if cfg.qk_norm:
    layers.update(q_norm=norm(cfg.head_dim), k_norm=norm(cfg.head_dim))
  params = {"embed": leaf(V, D), "final_norm": norm(D, stacked=False), "layers": layers}
  if cfg.learned_positions:
    params["pos_embed"] = leaf(cfg.max_position_embeddings, D)
  if not cfg.tie_embeddings:
    params["lm_head"] = leaf(D, V)
  if layout == "stacked":
    return params
  return jax.eval_shape(functools.partial(unstack_layers, parts=int(parts)), params)


def _fused_sizes(cfg: ModelConfig) -> dict[str, tuple[tuple[str, int], ...]]:
  """Per fused layer, its stacked parts and their output widths, read from `param_shapes`."""
  layers = param_shapes(cfg)["layers"]
  return {fused: tuple((name, layers[name]["kernel"].shape[-1]) for name in names)
          for fused, names in FUSED.items() if all(name in layers for name in names)}


def default_parts() -> int:
  """How many blocks `unstack_layers` cuts each weight matrix into: one per CPU core (at most 4) on the CPU
  backend, one elsewhere. XLA's CPU runtime spreads one matmul over the cores itself, but for the few rows of
  a decode step one matmul per block is faster (SmolLM2, 2 cores: 65 -> 56 ms per batch-8 step)."""
  if jax.default_backend() != "cpu":
    return 1
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return max(1, min(cores, 4))  # the cores this process may run on, as XLA's thread pool counts them


def default_layout() -> str:
  """The layout to generate from: "decode" on the CPU backend, where unrolled layers decode faster (see
  `unstack_layers`); "stacked" on accelerators, where one compiled layer body keeps compiles short. (Scoring
  many vmapped edits is faster over stacked layers even on a CPU: see launch/runtime.py's stage_layout.)"""
  return "decode" if jax.default_backend() == "cpu" else "stacked"


def _row_blocks(w: jax.Array, parts: int):
  """w [out, in] as a tuple of `parts` row blocks (fewer when out is small), or w itself for one part."""
  n = min(parts, w.shape[0])
  if n <= 1:
    return w
  bounds = [w.shape[0] * j // n for j in range(n + 1)]
  return tuple(w[a:b] for a, b in zip(bounds[:-1], bounds[1:]))


def rows(w) -> jax.Array:
  """A matrix kept as row blocks (see `_row_blocks`), whole."""
  return jnp.concatenate(list(w), axis=0) if isinstance(w, (tuple, list)) else w


def _fuse(layer: dict, names: tuple[str, ...], fused: str) -> None:
  """Replaces the dense layers `names` of one layer by one whose outputs are theirs side by side (biases
  zero where a part has none); leaves the layer as it is unless all of them are present."""
  if not all(isinstance(layer.get(n), dict) and "kernel" in layer[n] for n in names):
    return
  parts = [layer.pop(n) for n in names]
  out = {"kernel": jnp.concatenate([p["kernel"] for p in parts], axis=1)}
  if any("bias" in p for p in parts):
    out["bias"] = jnp.concatenate([p["bias"] if "bias" in p else jnp.zeros(p["kernel"].shape[1], p["kernel"].dtype)
                                   for p in parts])
  layer[fused] = out


def unstack_layers(params: dict, parts: int | None = None, *, donate: bool = False) -> dict:
  """Params in the layout of fast decoding: `layers` is a list of per-layer dicts (`forward` then unrolls
  the layers), the q, k and v projections are one matrix (`qkv`), as are gate and up (`gate_up`), and dense
  kernels are stored transposed and cut into row blocks.

  Inside `lax.scan`, each layer's weights are dynamic slices of the stacked arrays, which XLA copies before
  the matmul reads them: for decoding (one token per row) that copy costs as much as the matmul. Unrolled
  layers read their weights in place, at the price of a longer compile. Their dense kernels are stored
  transposed, [out, in] as `kernel_t`: a few rows times such a matrix streams each output's weights
  contiguously, which XLA's CPU matmul runs 10-20% faster at 8-32 rows (and no slower at thousands).
  With parts > 1 (default: `default_parts()`), `kernel_t` is a tuple of row blocks, each its own matmul,
  and the unembedding matrix likewise (`unembed_t`, [V, d] in blocks replacing `lm_head`; a tied embedding
  is itself cut into blocks, which the lookup and the unembedding both read): on a CPU the blocks run on
  different cores. Fusing q/k/v and gate/up halves the
  number of matmuls per layer and balances the blocks (the small k and v products otherwise ran one after
  another on one core): SmolLM2 decoding 132 -> 147 tok/s at batch 8, 271 -> 292 tok/s at batch 32.

  The result is a second copy of the weights. With `donate=True` each stacked array is deleted as soon as
  its layers are copied out, so the conversion never holds much more than one copy, and `params` must not
  be used afterwards (see `Model.relayout`, which replaces the model's params this way). Leaves the layout
  keeps as they are (norms; the embedding with parts = 1) are shared, not deleted.
  """
  if layout_of(params) == "decode":
    return params
  parts = default_parts() if parts is None else int(parts)
  flat, tree = jax.tree.flatten(params["layers"])
  n = flat[0].shape[0]
  per_layer = [[] for _ in range(n)]  # per layer, its leaves in `flat` order
  for j, a in enumerate(flat):
    for i in range(n):
      per_layer[i].append(a[i])
    if donate:
      flat[j] = None
      a.delete()
  del flat

  def one(leaves):
    layer = jax.tree.unflatten(tree, leaves)
    for fused, names in FUSED.items():
      _fuse(layer, names, fused)
    return {name: ({**{k: v for k, v in p.items() if k != "kernel"}, "kernel_t": _row_blocks(p["kernel"].T, parts)}
                   if isinstance(p, dict) and "kernel" in p else p) for name, p in layer.items()}

  out_layers = []
  for i in range(n):
    out_layers.append(one(per_layer[i]))
    per_layer[i] = None
  out = {**params, "layers": out_layers}
  if parts > 1:
    # Untied: the head as `unembed_t` blocks, replacing lm_head. Tied: the embedding itself is cut into
    # row blocks, which both the lookup and the unembedding read (never a second copy of a [V, d] matrix).
    key = "lm_head" if "lm_head" in params else "embed"
    head = out.pop(key)
    out["unembed_t" if key == "lm_head" else "embed"] = _row_blocks(head.T if key == "lm_head" else head, parts)
    if donate:
      head.delete()
  return out


def kernel(p: dict) -> jax.Array:
  """A dense layer's [in, out] kernel, from either layout."""
  if "kernel" in p:
    return p["kernel"]
  return rows(p["kernel_t"]).T


def stack_layers(params: dict, cfg: ModelConfig, *, donate: bool = False) -> dict:
  """The inverse of `unstack_layers`: the canonical stacked layout (see `param_shapes`).
  `donate`: as in `unstack_layers`."""
  if layout_of(params) == "stacked":
    return params
  layers = params["layers"]
  splits = _fused_sizes(cfg)

  def one(layer):
    out = {}
    for name, p in layer.items():
      if not (isinstance(p, dict) and ("kernel_t" in p or "kernel" in p)):
        out[name] = p
        continue
      k = kernel(p)
      if name not in splits:
        out[name] = {**{key: v for key, v in p.items() if key not in ("kernel", "kernel_t")}, "kernel": k}
        continue
      start = 0
      for part, size in splits[name]:
        piece = {"kernel": k[:, start:start + size]}
        if "bias" in p:
          piece["bias"] = p["bias"][start:start + size]
        out[part] = piece
        start += size
    return out

  unrolled, passed = [], []  # per layer; the arrays it passes through as they are (norms)
  for i in range(len(layers)):
    unrolled.append(one(layers[i]))
    if donate:
      kept = {id(a) for a in jax.tree.leaves(unrolled[-1])}
      for a in jax.tree.leaves(layers[i]):
        (passed.append(a) if id(a) in kept else a.delete())
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *unrolled)
  del unrolled
  for a in passed:
    a.delete()
  out = {k: v for k, v in params.items() if k not in ("layers", "unembed_t")}
  out["layers"] = stacked
  replaced = []
  if "unembed_t" in params:  # the untied head, [V, d] (in blocks): lm_head [d, V] again
    out["lm_head"] = kernel({"kernel_t": params["unembed_t"]})
    replaced.append(params["unembed_t"])
  if isinstance(params["embed"], (tuple, list)):  # a tied embedding in blocks: whole again
    out["embed"] = rows(params["embed"])
    replaced.append(params["embed"])
  if donate:
    for a in jax.tree.leaves(replaced):
      a.delete()
  return out


def relayout(params: dict, cfg: ModelConfig, layout: str, parts: int | None = None, *,
             donate: bool = False) -> dict:
  """`params` in `layout` ("stacked" or "decode", see LAYOUTS); unchanged when already in it."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  if layout == layout_of(params):
    return params
  if layout == "decode":
    return unstack_layers(params, parts, donate=donate)
  return stack_layers(params, cfg, donate=donate)


def params_dtype(params: dict):
  """The dtype of the weights (of the embedding, in either layout)."""
  return jax.tree.leaves(params["embed"])[0].dtype


def replaced(params: dict) -> bool:
  """Whether any array of `params` was deleted: `Model.relayout` deletes the old layout's arrays as it
  copies them out, so a tree taken from a model before its relayout has some."""
  return any(isinstance(a, jax.Array) and a.is_deleted() for a in jax.tree.leaves(params))


def check_current(params: dict, engine: str) -> None:
  """A clear error, instead of a read of freed buffers, when an engine's params were replaced by a relayout."""
  if replaced(params):
    raise ValueJaxError(f"this {engine} was built on params that Model.relayout replaced; build it again",
                        fix=f"build the {engine} from the model's current params (model.params) after "
                            "Model.relayout")
