"""The pure-functional decoder: one forward pass for every supported architecture, switched by ModelConfig.

Params come in either layout of `valuejax.models.layout`: stacked layers run with `lax.scan`, the decode
layout's list of layers unrolled. The MLP neuron activations (the papers' hook point) come back per layer,
or are reduced per layer by a caller-supplied function inside the scan.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.models.config import ModelConfig, RoPE, rope_inv_freq
from valuejax.models.edit import NeuronEdit, apply_edit
# The layouts and their conversion live in valuejax.models.layout; these names stay importable from here.
from valuejax.models.layout import (LAYOUTS, default_layout, default_parts, layout_of, params_dtype,  # noqa: F401
                                    relayout, stack_layers, unstack_layers)

# capture: None, "act" (a = act(gate(x))), "hidden" (a * up(x), the input of `down`), or a function
# fn(layer, a, h) -> pytree called inside the scan for each layer; its outputs are stacked on axis 0.
Capture = None | str | Callable[[jax.Array, jax.Array, jax.Array], Any]

_MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)


class KVCache(NamedTuple):
  """Keys [L, KV, B, hd, S] and values [L, KV, B, S, hd] of every layer; slot s of row b holds that row's
  s-th token.

  Heads come before slots so that attention reads each head's cache as one contiguous block; keys keep the
  slots innermost, so that one query's scores over all slots are a contiguous multiply-accumulate (a
  decode step reads the whole cache, and this layout reads it about 30% faster on CPU than [S, hd]).
  KV heads come first, as the batch axis of the attention products: a prefix that every row shares is
  then a plain [KV, B*G*T, hd] x [KV, hd, S] product, with no transposes of queries or probabilities.
  """
  k: jax.Array
  v: jax.Array

  @classmethod
  def zeros(cls, cfg: ModelConfig, batch: int, slots: int, dtype=jnp.float32, per_layer: bool = False) -> "KVCache":
    """per_layer: k and v are tuples of L arrays [KV, B, hd, S] and [KV, B, S, hd] (for params unstacked by
    `unstack_layers`)."""
    k_shape = (cfg.num_kv_heads, batch, cfg.head_dim, slots)
    v_shape = (cfg.num_kv_heads, batch, slots, cfg.head_dim)
    if per_layer:
      return cls(tuple(jnp.zeros(k_shape, dtype) for _ in range(cfg.num_layers)),
                 tuple(jnp.zeros(v_shape, dtype) for _ in range(cfg.num_layers)))
    return cls(jnp.zeros((cfg.num_layers,) + k_shape, dtype), jnp.zeros((cfg.num_layers,) + v_shape, dtype))

  @property
  def slots(self) -> int:
    return self.v[0].shape[-2]


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
  """Position ids that skip padding: left- or right-padded rows get the same ids as unpadded ones."""
  return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def forward(params: dict, cfg: ModelConfig, input_ids: jax.Array, attention_mask: jax.Array | None = None,
            *, capture: Capture = None, edit: NeuronEdit | None = None, edit_mask: jax.Array | None = None,
            edit_steps: jax.Array | None = None, logits: str = "all") -> tuple[jax.Array | None, Any]:
  """Runs the decoder on a [B, T] batch; returns (logits, activations).

  logits: "all" -> [B, T, V] float32, "last" -> [B, V] at each row's last real token, "none" -> None
  (skips the unembedding, e.g. when only statistics are wanted), "hidden" -> the last layer's output
  [B, T, D] before the final norm, for `target_logprobs`. Activations: see `Capture`; "act" and
  "hidden" give [L, B, T, F]. `edit` edits neurons at the positions where `edit_mask` [B, T] is true
  (default: every real token); captured activations are the edited ones. `edit_steps` [T] or [B, T]: the
  decode step of each position, whose draw of the edit's keep mask it gets (see models/edit.py); None: one
  draw for the whole call.
  """
  b, t = input_ids.shape
  if attention_mask is None:
    attention_mask = jnp.ones((b, t), jnp.int32)
  positions = positions_from_mask(attention_mask)
  if edit_mask is None:
    edit_mask = attention_mask
  slots = jnp.arange(t, dtype=jnp.int32)
  out, acts, _ = _decode(params, cfg, input_ids, positions, q_slots=slots, kv_valid=attention_mask.astype(bool),
                         cache=None, cache_index=None, capture=capture, edit=edit, edit_mask=edit_mask,
                         edit_steps=edit_steps)
  if logits == "none":
    return None, acts
  if logits == "hidden":
    return out, acts
  if logits == "last":
    last = jnp.maximum(_last_index(attention_mask), 0)
    out = jnp.take_along_axis(out, last[:, None, None], axis=1)[:, 0]
  elif logits != "all":
    raise ValueError(f"logits must be 'all', 'last', 'hidden' or 'none', got {logits!r}")
  return unembed(params, cfg, out), acts


def forward_cached(params: dict, cfg: ModelConfig, input_ids: jax.Array, positions: jax.Array,
                   cache: KVCache, cache_index: jax.Array, kv_valid: jax.Array, *, capture: Capture = None,
                   edit: NeuronEdit | None = None, edit_mask: jax.Array | None = None,
                   edit_steps: jax.Array | None = None, logits: str = "last", prefill: bool = False,
                   prefix: KVCache | None = None, past: Sequence[KVCache] = (),
                   rope: Any = None) -> tuple[jax.Array | None, Any, KVCache]:
  """One incremental step: writes the T new tokens into cache slots [cache_index, cache_index + T).

  `kv_valid` [B, S] marks the cache slots that hold real tokens (including the new ones); a query in
  slot s attends to valid slots <= s (and within the sliding window on sliding layers).
  `prefill=True` promises that the cache holds nothing before these tokens (besides `prefix`): attention
  then reads the new keys directly
  instead of reading them back from the cache, which spares a copy of the cache per layer.

  `prefix`: a one-row cache (KVCache.zeros(cfg, 1, P)) of tokens that every row shares in slots [0, P);
  `cache` then holds slots P onwards (its slot 0 is slot P; cache_index and kv_valid count from slot 0).
  Every row attends to the prefix, read once for the whole batch as one matmul, rather than to B copies.
  `past`: caches of the batch's rows that hold the slots between the prefix and `cache`, in order, read but
  not written. A decode loop cut into segments gives each segment a cache of its own slots only, so that a
  step reads the slots written so far rather than the whole run's (see Generator's `segments`).
  logits: "last" -> [B, V] for the final new token of every row (rows are left-padded), "all", "none".
  `rope`: `rope_tables(cfg, positions, dtype)` computed beforehand, e.g. carried by a decode loop (see
  rope_tables); None computes them here. `edit_steps`: as forward's.
  """
  b, t = input_ids.shape
  if edit_mask is None:
    edit_mask = jnp.ones((b, t), bool)
  q_slots = cache_index + jnp.arange(t, dtype=jnp.int32)
  out, acts, cache = _decode(params, cfg, input_ids, positions, q_slots=q_slots, kv_valid=kv_valid,
                             cache=cache, cache_index=cache_index, capture=capture, edit=edit,
                             edit_mask=edit_mask, edit_steps=edit_steps, attend_cache=not prefill, prefix=prefix,
                             past=tuple(past), rope=rope)
  if logits == "none":
    return None, acts, cache
  if logits == "hidden":
    return out, acts, cache
  if logits == "last":
    out = out[:, -1]
  return unembed(params, cfg, out), acts, cache


# Positions unembedded at once by target_logprobs: [rows, V] float32 logits live at a time (64 MiB for a
# 262k vocabulary), whatever the batch, its length or the number of edits vmapped around it.
TARGET_ROWS = 64


def target_logprobs(params: dict, cfg: ModelConfig, hidden: jax.Array, targets: jax.Array,
                    rows: int = TARGET_ROWS) -> jax.Array:
  """log p(targets) [B, T] from the last layer's output `hidden` [B, T, D] (forward(..., logits="hidden")).

  The full [B, T, V] logits are never held: a scan unembeds about `rows` positions per step, so scoring a
  long batch of a large-vocabulary model under many edits costs [rows, V] memory instead of [E, B, T, V].
  """
  b, t, d = hidden.shape
  block = max(1, min(t, rows // max(b, 1)))
  n = -(-t // block)
  pad = n * block - t
  h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, n, block, d).swapaxes(0, 1)
  y = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, n, block).swapaxes(0, 1)

  def one(args):
    hb, yb = args
    logits = unembed(params, cfg, hb)
    return jnp.take_along_axis(logits, yb[..., None], -1)[..., 0] - jax.nn.logsumexp(logits, -1)

  out = jax.lax.map(one, (h, y))  # [n, B, block]
  return out.swapaxes(0, 1).reshape(b, n * block)[:, :t]


def unembed(params: dict, cfg: ModelConfig, x: jax.Array) -> jax.Array:
  x = _norm(x, params["final_norm"], cfg)
  if "unembed_t" in params or cfg.tie_embeddings:  # unembed_t and an embedding in blocks: see unstack_layers
    out = _matmul_t(x, params["unembed_t"] if "unembed_t" in params else params["embed"])
  else:
    out = x @ params["lm_head"]
  out = out.astype(jnp.float32)
  if cfg.final_softcap:
    out = jnp.tanh(out / cfg.final_softcap) * cfg.final_softcap
  return out


def _last_index(mask: jax.Array) -> jax.Array:
  t = mask.shape[-1]
  idx = jnp.where(mask.astype(bool), jnp.arange(t), -1)
  return idx.max(axis=-1)


def embed(params: dict, cfg: ModelConfig, input_ids: jax.Array, positions: jax.Array) -> jax.Array:
  x = _lookup(params["embed"], input_ids)
  if cfg.embed_scale:
    x = x * jnp.asarray(cfg.hidden_size ** 0.5, dtype=x.dtype)
  if cfg.learned_positions:
    x = x + params["pos_embed"][positions]
  return x


def _lookup(table, ids: jax.Array) -> jax.Array:
  """table[ids] for a [V, d] table, or one kept as row blocks (each block gathers the ids it holds)."""
  if not isinstance(table, (tuple, list)):
    return table[ids]
  out, start = None, 0
  for block in table:
    n = block.shape[0]
    local = ids - start
    rows = jnp.where(((local >= 0) & (local < n))[..., None], block[jnp.clip(local, 0, n - 1)], 0)
    out = rows if out is None else out + rows
    start += n
  return out


def _decode(params, cfg: ModelConfig, input_ids, positions, *, q_slots, kv_valid, cache, cache_index,
            capture, edit, edit_mask, edit_steps=None, attend_cache: bool = True, prefix: KVCache | None = None,
            past: tuple = (), rope=None):
  x = embed(params, cfg, input_ids, positions)
  dtype = x.dtype
  tables = rope_tables(cfg, positions, dtype) if rope is None else rope
  sliding = jnp.asarray(cfg.sliding_layers or (False,) * cfg.num_layers)
  layer_ids = jnp.arange(cfg.num_layers, dtype=jnp.int32)
  edit_rows = None if edit is None else (edit.scale, edit.add, edit.clamp_max)

  def layer_fn(x, cache, cache_layer, lp, layer, is_sliding, rows, shared, before):
    h = _norm(x, lp["attn_norm"], cfg)
    h, cache = _attention(h, lp, cfg, cache_layer, is_sliding, tables, positions, q_slots, kv_valid,
                          cache, cache_index, attend_cache, shared, before)
    if cfg.sandwich_norm:
      h = _norm(h, lp["post_attn_norm"], cfg)
    x = x + h
    h = _norm(x, lp["mlp_norm"], cfg)
    h, captured = _mlp(h, lp, cfg, layer, capture, edit, rows, edit_mask, edit_steps)
    if cfg.sandwich_norm:
      h = _norm(h, lp["post_mlp_norm"], cfg)
    return x + h, cache, captured

  if layout_of(params) == "decode":  # unrolled: see unstack_layers
    caps, ks, vs = [], [], []
    for i, lp in enumerate(params["layers"]):
      # This layer's own [KV, B, ...] cache arrays (cache_layer None): attention updates and reads them in place.
      layer_cache = None if cache is None else KVCache(cache.k[i], cache.v[i])
      rows = None if edit is None else tuple(r[i] for r in edit_rows)
      shared = None if prefix is None else KVCache(prefix.k[i], prefix.v[i])
      before = tuple(KVCache(c.k[i], c.v[i]) for c in past)
      x, layer_cache, captured = layer_fn(x, layer_cache, None, lp, jnp.int32(i), sliding[i], rows, shared,
                                          before)
      caps.append(captured)
      if cache is not None:
        ks.append(layer_cache.k)
        vs.append(layer_cache.v)
    acts = None if capture is None else jax.tree.map(lambda *a: jnp.stack(a), *caps)
    return x, acts, None if cache is None else KVCache(tuple(ks), tuple(vs))

  def body(carry, xs):
    x, cache = carry
    lp, layer, is_sliding, rows, shared, before = xs
    x, cache, captured = layer_fn(x, cache, layer, lp, layer, is_sliding, rows, shared, before)
    return (x, cache), captured

  (x, cache), acts = jax.lax.scan(body, (x, cache), (params["layers"], layer_ids, sliding, edit_rows, prefix,
                                                     past))
  return x, acts, cache


def _mlp(x, lp, cfg: ModelConfig, layer, capture, edit, rows, edit_mask, edit_steps=None):
  if "gate_up" in lp:
    gu = _dense(x, lp["gate_up"])
    g, u = gu[..., :cfg.intermediate_size], gu[..., cfg.intermediate_size:]
  else:
    g = _dense(x, lp["gate"])
    u = _dense(x, lp["up"]) if cfg.gated_mlp else None
  a = _act(g, cfg.act)
  if edit is not None:
    a = apply_edit(a, layer, edit, edit_mask, layer_edit=rows, steps=edit_steps)
  h = a * u if cfg.gated_mlp else a
  if capture is None:
    captured = None
  elif capture == "act":
    captured = a
  elif capture == "hidden":
    captured = h
  elif callable(capture):
    captured = capture(layer, a, h)
  else:
    raise ValueError(f"capture must be None, 'act', 'hidden' or a function, got {capture!r}")
  return _dense(h, lp["down"]), captured


def _dense(x, p):
  y = x @ p["kernel"] if "kernel" in p else _matmul_t(x, p["kernel_t"])
  return y + p["bias"] if "bias" in p else y


def _matmul_t(x, w_t):
  """x [..., in] times w_t [out, in] transposed; w_t may be a tuple of row blocks (see unstack_layers)."""
  if isinstance(w_t, (tuple, list)):
    return jnp.concatenate([jnp.einsum("...i,oi->...o", x, w) for w in w_t], axis=-1)
  return jnp.einsum("...i,oi->...o", x, w_t)


def _act(x, kind: str):
  if kind == "silu":
    return jax.nn.silu(x)
  if kind == "gelu_tanh":
    return jax.nn.gelu(x, approximate=True)
  if kind == "gelu":
    return jax.nn.gelu(x, approximate=False)
  if kind == "relu":
    return jax.nn.relu(x)
  raise ValueError(kind)


def _norm(x, p, cfg: ModelConfig):
  eps = cfg.norm_eps
  x32 = x.astype(jnp.float32)
  if cfg.norm_kind == "layer":
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (y * p["scale"].astype(jnp.float32) + p["bias"].astype(jnp.float32)).astype(x.dtype)
  y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + eps)
  if cfg.norm_offset:  # Gemma keeps the product in float32 and stores the weight as an offset from 1
    return (y * (1.0 + p["scale"].astype(jnp.float32))).astype(x.dtype)
  return p["scale"] * y.astype(x.dtype)


@functools.lru_cache(maxsize=None)
def _inv_freq(rope: RoPE, head_dim: int) -> np.ndarray:
  return rope_inv_freq(rope, head_dim).astype(np.float32)


def rope_tables(cfg: ModelConfig, positions, dtype=jnp.float32):
  """(cos, sin) pairs [B, T, hd] for global and local attention, or None for learned positions.

  With unrolled layers XLA fuses cos and sin into each layer's consumers and recomputes them per element
  (an optimization barrier does not survive to fusion on CPU); a decode loop therefore computes the next
  step's tables at the end of each step and carries them, so that every step reads them from memory.
  """
  if cfg.learned_positions or cfg.rope_global is None:
    return None

  def table(rope: RoPE):
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(_inv_freq(rope, cfg.head_dim))
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)

  glob = table(cfg.rope_global)
  local = table(cfg.rope_local) if cfg.rope_local is not None else glob
  return glob, local


def _apply_rope(x, cos, sin):
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


def _attention(x, lp, cfg: ModelConfig, layer, is_sliding, rope_tables, positions, q_slots, kv_valid, cache,
               cache_index, attend_cache: bool = True, shared: KVCache | None = None, before: tuple = ()):
  """Self-attention of one layer; `layer` indexes the stacked cache, or is None for one layer's own arrays.
  `shared`: this layer's one-row prefix cache (see forward_cached), or None; `before`: this layer's part
  of forward_cached's `past`.

  Slicing one layer out of a stacked cache copies it before the matmul reads it; per-layer arrays (the
  unrolled decode) are read in place.
  """
  b, t, _ = x.shape
  nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  if "qkv" in lp:
    qkv = _dense(x, lp["qkv"])
    q = qkv[..., :nh * hd].reshape(b, t, nh, hd)
    k = qkv[..., nh * hd:(nh + nkv) * hd].reshape(b, t, nkv, hd)
    v = qkv[..., (nh + nkv) * hd:].reshape(b, t, nkv, hd)
  else:
    q = _dense(x, lp["q"]).reshape(b, t, nh, hd)
    k = _dense(x, lp["k"]).reshape(b, t, nkv, hd)
    v = _dense(x, lp["v"]).reshape(b, t, nkv, hd)
  if cfg.qk_norm:
    q, k = _norm(q, lp["q_norm"], cfg), _norm(k, lp["k_norm"], cfg)  # over head_dim, before RoPE
  if rope_tables is not None:
    (gc, gs), (lc, ls) = rope_tables
    cos, sin = jnp.where(is_sliding, lc, gc), jnp.where(is_sliding, ls, gs)
    q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)

  qg = q.reshape(b, t, nkv, nh // nkv, hd).transpose(2, 0, 3, 1, 4)  # [KV, B, G, T, hd]
  keys_t, values = k.transpose(2, 0, 3, 1), v.transpose(2, 0, 1, 3)  # [KV, B, hd, T], [KV, B, T, hd]
  k_pos = _key_positions(cfg, kv_valid)
  offset = 0  # the slots before the next part
  parts = []  # (keys_t, values, their slots, valid [B, S], positions [B, S] or None, one row for all)

  def part(keys_t, values, slots=None, is_shared=False):
    """A part whose slots follow the `offset` slots before it (or are `slots`)."""
    end = offset + values.shape[-2]
    slots = jnp.arange(offset, end, dtype=jnp.int32) if slots is None else slots
    return (keys_t, values, slots, kv_valid[:, offset:end], None if k_pos is None else k_pos[:, offset:end],
            is_shared)

  for earlier, is_shared in ([] if shared is None else [(shared, True)]) + [(c, False) for c in before]:
    parts.append(part(earlier.k, earlier.v, is_shared=is_shared))
    offset += earlier.v.shape[-2]
  if cache is None:
    parts.append((keys_t, values, q_slots, kv_valid, k_pos, False))
  else:
    zero = jnp.zeros((), jnp.int32)
    index = cache_index.astype(jnp.int32) - offset
    new_k, new_v, k_at, v_at = keys_t, values, (zero, zero, zero, index), (zero, zero, index, zero)
    if layer is not None:
      new_k, new_v, k_at, v_at = new_k[None], new_v[None], (layer,) + k_at, (layer,) + v_at
    ck = jax.lax.dynamic_update_slice(cache.k, new_k.astype(cache.k.dtype), k_at)
    cv = jax.lax.dynamic_update_slice(cache.v, new_v.astype(cache.v.dtype), v_at)
    cache = KVCache(ck, cv)
    if attend_cache:
      ck, cv = (ck, cv) if layer is None else (ck[layer], cv[layer])
      parts.append(part(ck, cv))
    else:  # prefill: the cache held nothing before these tokens
      parts.append(part(keys_t, values, q_slots))
  out = _attend(qg, parts, q_slots, positions, cfg, is_sliding)
  return _dense(out.astype(x.dtype), lp["o"]), cache


def _key_positions(cfg: ModelConfig, kv_valid):
  """Position ids of the keys [B, S] (sliding windows count positions, not slots: a batch may hold padding
  between a shared prefix and the rest of a prompt); None where no layer slides."""
  return positions_from_mask(kv_valid) if cfg.sliding_window else None


def _attend(qg, parts, q_slots, q_pos, cfg: ModelConfig, is_sliding):
  """Softmax attention of queries qg [KV, B, G, T, hd] over the keys of all `parts` together; returns
  [B, T, heads * hd]. A part is (keys_t [KV, B, hd, S], values [KV, B, S, hd], slots [S], valid [B, S],
  positions [B, S] or None, shared); a shared part has one row ([KV, 1, ...]) that every row attends to."""
  nkv, b, groups, t, hd = qg.shape
  scores, sizes = [], []
  for keys_t, values, k_slots, valid, k_pos, shared in parts:
    # Which keys each query may see: real tokens, causal by slot, and inside the window on sliding layers.
    allowed = (k_slots[None, :] <= q_slots[:, None])[None] & valid[:, None, :].astype(bool)
    if cfg.sliding_window:
      in_window = (q_pos[:, :, None] - k_pos[:, None, :]) < cfg.sliding_window
      allowed = allowed & (in_window | ~is_sliding)
    spec = "kbgtd,kds->kbgts" if shared else "kbgtd,kbds->kbgts"
    keys_t = keys_t[:, 0] if shared else keys_t
    s = jnp.einsum(spec, qg, keys_t.astype(qg.dtype)).astype(jnp.float32) * cfg.scale
    if cfg.attn_softcap:
      s = jnp.tanh(s / cfg.attn_softcap) * cfg.attn_softcap
    scores.append(jnp.where(allowed[None, :, None], s, _MASK_VALUE))
    sizes.append(s.shape[-1])
  probs = jax.nn.softmax(jnp.concatenate(scores, axis=-1), axis=-1).astype(qg.dtype)
  out, start = 0, 0
  for (_, values, _, _, _, shared), size in zip(parts, sizes):
    p = probs[..., start:start + size]
    start += size
    out = out + (jnp.einsum("kbgts,ksd->kbgtd", p, values[:, 0].astype(qg.dtype)) if shared else
                 jnp.einsum("kbgts,kbsd->kbgtd", p, values.astype(qg.dtype)))
  return out.transpose(1, 3, 0, 2, 4).reshape(b, t, nkv * groups * hd)

