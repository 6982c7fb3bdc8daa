"""Batched generation with a preallocated KV cache, the whole decode loop inside one jit.

Per-neuron statistics are reduced inside the compiled loop (prompt and generated tokens kept apart), so
activations never leave the device. Shapes are bucketed so that a whole run compiles a handful of times.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.engine import sharding as shd
from valuejax.engine.batching import bucket, pack_rows, special_ids
from valuejax.engine.histogram import hist_edges
from valuejax.engine.stats import DeviceStats, device_stats, make_reducer
from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig
from valuejax.models.edit import NeuronEdit
from valuejax.models.forward import (KVCache, forward, forward_cached, params_dtype, positions_from_mask,
                                     rope_tables)

log = logging.getLogger("valuejax")

# Padding is computed like real tokens, so buckets are fine where prompts are short and coarse beyond.
PROMPT_BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192)
# Batches are padded with empty rows (no tokens, no group) to one of these sizes, so that a run whose last
# batch is short, or a caller whose batch sizes vary, does not compile for every size.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
EDIT_SCOPES = ("prompt", "generated", "all")
# A prefix that every prompt of a batch shares (system prompt, chat template, instruction) is run once, as
# one row whose keys and values every row attends to; its length is rounded down to a multiple of this, so
# that a run whose prompts share a template compiles once per bucket of the rest.
PREFIX_MULTIPLE = 16
# The decode loop is cut into segments of about this many steps, each with a cache of its own steps' slots
# (see Generator): a step then reads the slots written so far rather than the whole run's.
SEGMENT_TOKENS = 64
MAX_SEGMENTS = 4


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Decoding rule. temperature 0 is greedy. repetition_penalty follows transformers (1.0 = off)."""
  temperature: float = 0.0
  top_p: float = 1.0
  repetition_penalty: float = 1.0

  def __post_init__(self):
    if self.temperature < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
      raise ValueJaxError(f"invalid sampling settings {self}",
                          fix="temperature >= 0, 0 < top_p <= 1, repetition_penalty > 0")


@dataclasses.dataclass(frozen=True)
class StatsSpec:
  """What to reduce: over `num_groups` groups, of the "act" or "hidden" hook point, with a histogram or not
  (of `hist_bins` kind, "full" or "compact": see engine/histogram.py)."""
  num_groups: int
  hist: bool = False
  target: str = "act"
  hist_bins: str = "full"

  def reducer(self, onehot, weight, mesh=None, batch_axis: str | None = "data"):
    return make_reducer(onehot, weight, hist=self.hist, target=self.target, hist_bins=self.hist_bins, mesh=mesh,
                        batch_axis=batch_axis)

  def zeros(self, cfg: ModelConfig, sharding=None) -> dict:
    """Zero sums in the layer scan's [L, G, F] order (split over neurons as `sharding` says)."""
    shape = (cfg.num_layers, self.num_groups, cfg.intermediate_size)
    out = {"count": jnp.zeros(shape, jnp.int32), "s1": jnp.zeros(shape, jnp.float32),
           "s2": jnp.zeros(shape, jnp.float32)}
    if self.hist:
      out["hist"] = jnp.zeros(shape + (hist_edges(self.hist_bins).size + 1,), jnp.int32)
    return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)


def stats_shardings(mesh, spec: StatsSpec | None, num_neurons: int):
  """(DeviceStats of shardings, the in-loop [L, G, F] sums' shardings): per-neuron arrays split over the
  `model` axis (as FSDP splits the weights), so that no device holds a whole [G, L, F] array, let alone a
  whole histogram; token counts replicated. Neurons are split only when the axis divides them."""
  if mesh is None or spec is None:
    return None, None
  from jax.sharding import NamedSharding, PartitionSpec as P
  axis = "model" if num_neurons % mesh.shape["model"] == 0 else None
  neurons = NamedSharding(mesh, P(None, None, axis))
  hist = NamedSharding(mesh, P(None, None, axis, None)) if spec.hist else None
  rep = shd.replicated(mesh)
  loop = {"count": neurons, "s1": neurons, "s2": neurons}
  if spec.hist:
    loop["hist"] = hist
  return DeviceStats(rep, rep, neurons, neurons, neurons, hist), loop


class GenerateOutput(NamedTuple):
  tokens: np.ndarray  # [B, N] int32, pad_id after the end of each row
  lengths: np.ndarray  # [B] response tokens before EOS (EOS excluded)
  finished: np.ndarray  # [B] bool: the row produced an EOS
  prompt_stats: DeviceStats | None  # [G, L, F] sums over prompt tokens
  gen_stats: DeviceStats | None  # [G, L, F] sums over generated tokens (EOS and after excluded)


def _real_rows(input_ids, attention_mask) -> list[np.ndarray]:
  """Each row's real tokens (where the mask is set), wherever the padding was."""
  input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask).astype(bool)
  return [row[m] for row, m in zip(input_ids, attention_mask)]


def left_pad(input_ids: np.ndarray, attention_mask: np.ndarray, length: int, pad_id: int):
  """Moves every row's real tokens to the right end of a [B, length] array; returns ids and a bool mask."""
  return pack_rows(_real_rows(input_ids, attention_mask), pad_id=pad_id, length=length, side="left")


def _argmax(logits):
  """jnp.argmax over the last axis (first index of the maximum) as two plain reductions, which XLA's CPU
  backend runs several times faster than argmax's paired value-index reduction over a vocabulary."""
  top = logits.max(axis=-1, keepdims=True)
  iota = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  return jnp.min(jnp.where(logits == top, iota, logits.shape[-1]), axis=-1).astype(jnp.int32)


def _select(logits, presence, key, sampling: Sampling):
  """Next token from [B, V] float32 logits, in transformers' order: penalty, temperature, top-p."""
  if sampling.repetition_penalty != 1.0:
    pen = sampling.repetition_penalty
    logits = jnp.where(presence, jnp.where(logits < 0, logits * pen, logits / pen), logits)
  if sampling.temperature == 0.0:
    return _argmax(logits)
  logits = logits / sampling.temperature
  if sampling.top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = before >= sampling.top_p  # the most likely token is always kept
    drop = jnp.zeros_like(drop_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(drop_sorted)
    logits = jnp.where(drop, -jnp.inf, logits)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def default_segments(max_new_tokens: int) -> int:
  """Decode segments (see Generator): one per SEGMENT_TOKENS new tokens, at most MAX_SEGMENTS."""
  return max(1, min(MAX_SEGMENTS, -(-max_new_tokens // SEGMENT_TOKENS)))


def _segments(n_steps: int, segments: int) -> list[tuple[int, int]]:
  """[start, stop) of each of `segments` near-equal parts of n_steps decode steps (none empty)."""
  n = max(1, min(segments, n_steps))
  bounds = [n_steps * j // n for j in range(n + 1)]
  return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _step_edit(edit: NeuronEdit | None, step) -> NeuronEdit | None:
  """The edit with decode step `step` folded into its key (the prompt's pass is step 0, the call that feeds
  generated token k is step k + 1): each layer call of a step then draws one keep mask per neuron, shared by
  every row (models/edit.py), and each step draws anew, reproducibly from the edit's key. Teacher forcing
  passes the same step ids per position (forward's `edit_steps`) and so draws the same masks."""
  if edit is None:
    return None
  key = jax.random.fold_in(jax.random.wrap_key_data(edit.key), step)
  return edit._replace(key=jax.random.key_data(key))


def _generate_core(params, input_ids, attention_mask, group_ids, prefix_ids, key, edit, *, cfg: ModelConfig,
                   max_new: int, sampling: Sampling, eos_ids: tuple[int, ...], pad_id: int,
                   stats: StatsSpec | None, edit_scope: str, segments: int, out_sharding, loop_sharding=None,
                   mesh=None):
  """input_ids [B, P + S]: the shared prefix (prefix_ids [P], possibly empty) in slots [0, P) of every real
  row, then each row's remaining prompt tokens left-padded to S (see _layout)."""
  b, p = input_ids.shape
  n_prefix = prefix_ids.shape[0]
  mask = attention_mask.astype(bool)
  row_real = mask.any(axis=1)
  # Without statistics the last generated token need not be fed back; with them it is, so that every
  # response token's activations are counted (as a teacher-forced pass over the response would).
  n_steps = max_new if stats else max_new - 1
  slots = p + n_steps
  # The decode loop runs in segments, each writing a cache of its own steps' slots and reading the earlier
  # ones, so that a step reads the slots written so far, not the whole run's. The first segment's cache
  # also holds the prompt (the prefill writes it).
  steps = _segments(n_steps, segments)
  first = steps[0][1] if steps else 0
  per_layer = isinstance(params["layers"], list)
  kv_valid = jnp.zeros((b, slots), bool).at[:, :p].set(mask)
  positions = positions_from_mask(attention_mask)
  onehot = (jax.nn.one_hot(group_ids, stats.num_groups, dtype=jnp.float32) if stats else None)

  def reducer(onehot, weight, batch_axis="data"):
    return None if stats is None else stats.reducer(onehot, weight, mesh, batch_axis)

  prompt_edit = _step_edit(edit if edit_scope in ("prompt", "all") else None, 0)
  if n_prefix:
    # The prefix once, as a batch of one: its statistics count once per real row of each group.
    one = jnp.ones((1, n_prefix), jnp.float32)
    _, prefix_sums, prefix = forward_cached(
        params, cfg, prefix_ids[None], positions_from_mask(one), KVCache.zeros(cfg, 1, n_prefix, per_layer=per_layer,
                                                                              dtype=params_dtype(params)),
        jnp.int32(0), one.astype(bool), capture=reducer(jnp.ones((1, 1), jnp.float32), one, batch_axis=None),
        edit=prompt_edit, edit_mask=one.astype(bool), logits="none", prefill=True)
    cache = KVCache.zeros(cfg, b, p - n_prefix + first, params_dtype(params), per_layer=per_layer)
    rest = slice(n_prefix, None)
    logits, sums, cache = forward_cached(
        params, cfg, input_ids[:, rest], positions[:, rest], cache, jnp.int32(n_prefix), kv_valid,
        capture=reducer(onehot, mask[:, rest].astype(jnp.float32)), edit=prompt_edit, edit_mask=mask[:, rest],
        prefill=True, prefix=prefix)
    if stats:
      rows = onehot.sum(axis=0)  # real rows per group (empty rows have no group)
      sums = {name: s + prefix_sums[name] * rows.astype(s.dtype).reshape((1, -1) + (1,) * (s.ndim - 2))
              for name, s in sums.items()}
  else:
    prefix = None
    cache = KVCache.zeros(cfg, b, p + first, params_dtype(params), per_layer=per_layer)
    logits, sums, cache = forward_cached(
        params, cfg, input_ids, positions, cache, jnp.int32(0), kv_valid,
        capture=reducer(onehot, mask.astype(jnp.float32)), edit=prompt_edit, edit_mask=mask, prefill=True)
  prompt_stats = device_stats(sums, onehot, mask.astype(jnp.float32)) if stats else None

  vocab = logits.shape[-1]
  presence = jnp.zeros((b, vocab), bool)
  if sampling.repetition_penalty != 1.0:
    presence = presence.at[jnp.arange(b)[:, None], input_ids].max(mask)
  eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)
  first = _select(logits, presence, jax.random.fold_in(key, 0), sampling)
  first = jnp.where(row_real, first, pad_id)
  out = jnp.full((b, max_new), pad_id, jnp.int32).at[:, 0].set(first)
  presence = presence.at[jnp.arange(b), first].set(True)
  decode_edit = edit if edit_scope in ("generated", "all") else None

  zero_stats = stats.zeros(cfg, loop_sharding) if stats else None
  dtype = params_dtype(params)
  next_rope = lambda pos: rope_tables(cfg, (pos + 1)[:, None], dtype)  # the tables of the next step's token
  s = dict(k=jnp.int32(0), kv_valid=kv_valid, out=out, presence=presence, finished=~row_real,
           counted=jnp.zeros((b,), jnp.int32), sums=zero_stats, pos=positions[:, -1],
           rope=next_rope(positions[:, -1]))
  past = []  # the caches of the finished segments

  def body(s, end):
    k = s["k"]
    tok = s["out"][:, k]
    finished = s["finished"] | jnp.isin(tok, eos)
    live = ~finished
    slot = p + k
    kv_valid = s["kv_valid"].at[:, slot].set(True)
    pos = s["pos"] + 1
    weight = live.astype(jnp.float32)[:, None]
    logits, sums, cache = forward_cached(
        params, cfg, tok[:, None], pos[:, None], s["cache"], slot, kv_valid[:, :end],
        capture=reducer(onehot, weight), edit=_step_edit(decode_edit, k + 1), edit_mask=live[:, None],
        prefix=prefix, past=tuple(past), rope=s["rope"])
    nxt = _select(logits, s["presence"], jax.random.fold_in(key, k + 1), sampling)
    write = jnp.minimum(k + 1, max_new - 1)
    keep_old = finished | (k + 1 >= max_new)
    out = s["out"].at[:, write].set(jnp.where(keep_old, s["out"][:, write], nxt))
    presence = s["presence"].at[jnp.arange(b), nxt].max(~keep_old)
    return dict(k=k + 1, cache=cache, kv_valid=kv_valid, out=out, presence=presence, finished=finished,
                counted=s["counted"] + live.astype(jnp.int32), pos=pos, rope=next_rope(pos),
                sums=None if stats is None else _constrain(jax.tree.map(jnp.add, s["sums"], sums), loop_sharding))

  for start, stop in steps:
    s["cache"] = cache if start == 0 else KVCache.zeros(cfg, b, stop - start, dtype, per_layer=per_layer)
    s = jax.lax.while_loop(lambda s, stop=stop: (s["k"] < stop) & ~jnp.all(s["finished"]),
                           functools.partial(body, end=p + stop), s)
    past.append(s.pop("cache"))
  out, counted = s["out"], s["counted"]
  hit_eos = jnp.isin(out, eos) & row_real[:, None]
  first_eos = jnp.where(hit_eos.any(1), jnp.argmax(hit_eos, axis=1), max_new)
  lengths = jnp.where(row_real, first_eos, 0).astype(jnp.int32)
  after = jnp.arange(max_new)[None, :] > first_eos[:, None]
  out = jnp.where(after, pad_id, out)
  gen_stats = None
  if stats:
    # One weight column holding each row's count of response tokens gives device_stats the right totals.
    gen_stats = device_stats(s["sums"], onehot, counted.astype(jnp.float32)[:, None])
  result = (out, lengths, hit_eos.any(1), prompt_stats, gen_stats)
  if out_sharding is not None:
    result = jax.lax.with_sharding_constraint(result, out_sharding)
  return result


def _constrain(x, sharding):
  return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


def _shared_prefix(rows: Sequence[np.ndarray], multiple: int) -> int:
  """Length of the prefix that every row shares, rounded down to `multiple` tokens and leaving each row at
  least one token of its own; 0 (no sharing) when a row has no tokens or there is only one row."""
  real = [r for r in rows if len(r)]
  if len(real) < 2 or len(real) < len(rows):
    return 0
  shortest = min(map(len, real))
  first = real[0][:shortest - 1]
  same = np.ones(len(first), bool)
  for r in real[1:]:
    same &= r[:len(first)] == first
  shared = int(np.argmin(same)) if not same.all() else len(first)
  return shared // multiple * multiple


def _layout(rows: Sequence[np.ndarray], buckets, pad_id: int, n_prefix: int, batch: int):
  """The engine's batch layout: the first `n_prefix` tokens (shared by every row) in slots [0, P) of each
  row, the rest of each row left-padded to its length bucket; rows past len(rows) empty. Returns ids, mask
  and the prefix [P]."""
  longest = max((len(r) for r in rows), default=0)
  length = bucket(max(longest - n_prefix, 1), buckets)
  ids, mask = pack_rows([r[n_prefix:] for r in rows], pad_id=pad_id, length=length, batch=batch, side="left")
  prefix = np.asarray(rows[0][:n_prefix] if n_prefix else [], np.int32)
  if n_prefix:
    head_ids, head_mask = pack_rows([prefix] * len(rows), pad_id=pad_id, batch=batch)
    ids, mask = np.concatenate([head_ids, ids], 1), np.concatenate([head_mask, mask], 1)
  return ids, mask, prefix


def _split_prefix(ids: np.ndarray, mask: np.ndarray, buckets, pad_id: int, multiple: int):
  """Moves the prefix that every real row shares (see _shared_prefix) to slots [0, P) and left-pads the
  rest to its bucket; returns ids, mask and the prefix [P] (the inputs as they are when P is 0)."""
  rows = _real_rows(ids, mask)
  n = _shared_prefix(rows, multiple)
  if n == 0:
    return ids, mask, np.zeros(0, np.int32)
  return _layout(rows, buckets, pad_id, n, len(rows))


def _prepare_batch(input_ids, attention_mask, group_ids, buckets, pad_id: int, mesh, stats: StatsSpec | None,
                   prefix_multiple: int = 0, batch_buckets: Sequence[int] | None = None):
  """Left-pads to the length bucket and pads the batch with empty rows to its batch bucket (none: as it is),
  rounded up to a multiple of the data axis.

  With prefix_multiple > 0, a prefix all rows share goes first (see _shared_prefix); returns ids, mask,
  groups and that prefix ([0] when there is none).
  """
  input_ids = np.asarray(input_ids)
  attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
  n = input_ids.shape[0]
  rows = _real_rows(input_ids, attention_mask)
  groups = np.zeros(n, np.int32) if group_ids is None else np.asarray(group_ids, np.int32)
  if groups.shape != (n,):
    raise ValueJaxError(f"group ids have shape {groups.shape}, expected ({n},): one group per row")
  if stats is not None and (groups.min(initial=0) < -1 or groups.max(initial=0) >= stats.num_groups):
    raise ValueJaxError(f"group ids must lie in [0, {stats.num_groups}) (or -1 for none)")
  size = bucket(n, batch_buckets) if batch_buckets and n else n
  b = -(-size // shd.data_size(mesh)) * shd.data_size(mesh)
  n_prefix = _shared_prefix(rows, prefix_multiple) if prefix_multiple else 0
  # Rows past n are empty: no tokens, no group.
  ids, mask, prefix = _layout(rows, buckets, pad_id, n_prefix, b)
  groups = np.concatenate([groups, np.full(b - n, -1, np.int32)])
  return ids, mask, groups, prefix


def _batch_buckets(buckets: Sequence[int] | None) -> tuple[int, ...] | None:
  """Sorted batch buckets, or None (no padding) for None or empty."""
  if not buckets:
    return None
  out = tuple(sorted({int(b) for b in buckets}))
  if out[0] < 1:
    raise ValueJaxError(f"batch buckets must be positive sizes, got {tuple(buckets)}")
  return out


def _edit_signature(edit: NeuronEdit | None):
  return None if edit is None else tuple((x.shape, str(x.dtype)) for x in edit)


def _compiled(cache: dict, key, core, static: dict, args: list, what: str):
  """The executable for `key`, compiled ahead of time on first use and logged with its compile time."""
  fn = cache.get(key)
  if fn is None:
    t0 = time.perf_counter()
    fn = cache[key] = jax.jit(functools.partial(core, **static)).lower(*args).compile()
    log.info("compiled %s in %.1f s", what, time.perf_counter() - t0)
  return fn


class Generator:
  """Compiles and runs generation for one model; caches one executable per (batch, prompt, new) bucket."""

  def __init__(self, params, cfg: ModelConfig, *, mesh=None, prompt_buckets: Sequence[int] = PROMPT_BUCKETS,
               pad_id: int | None = None, eos_ids: Sequence[int] | None = None,
               share_prefix: bool = True, segments: int | None = None,
               batch_buckets: Sequence[int] | None = BATCH_BUCKETS):
    """params: either layout (see `valuejax.models.forward.LAYOUTS`), used as given: the Generator holds
    no copy of the weights. The decode layout (`Model.relayout("decode")`, or `load_model(...,
    layout="decode")`) decodes faster on a CPU; the stacked one compiles one layer body.
    share_prefix: run a prefix that every prompt of a batch shares once (see PREFIX_MULTIPLE). Results
    are the same up to float rounding, edits of the prompt included: a pass draws its keep mask per layer
    call from the edit's key and step alone, so the prefix's pass and the rest's draw the same one.
    segments: the decode loop runs as this many loops in a row, each with a cache of its own steps' slots,
    so that a step's attention reads the slots written so far, not those of the whole run (default
    `default_segments(max_new_tokens)`). More segments read less and compile longer (each is compiled);
    results are the same up to float rounding.
    batch_buckets: a batch of n rows runs as the smallest bucket >= n (beyond the largest: a multiple of
    it), the rest empty rows; None runs every batch as it is (one compile per batch size)."""
    self.params = params
    self.share_prefix = share_prefix
    if segments is not None and segments < 1:
      raise ValueJaxError(f"segments must be at least 1, got {segments}")
    self.segments = segments
    self.cfg, self.mesh = cfg, mesh
    self.prompt_buckets = tuple(prompt_buckets)
    self.batch_buckets = _batch_buckets(batch_buckets)
    special = special_ids(None, cfg)  # defaults from the config alone (no tokenizer here)
    self.pad_id = int(pad_id if pad_id is not None else special.pad)
    self.eos_ids = tuple(int(e) for e in (eos_ids if eos_ids is not None else special.eos))
    self._compiled: dict = {}

  def __call__(self, input_ids, attention_mask=None, max_new_tokens: int = 32, *, sampling: Sampling = Sampling(),
               seed: int = 0, group_ids=None, stats: StatsSpec | None = None, edit: NeuronEdit | None = None,
               edit_scope: str = "generated") -> GenerateOutput:
    if max_new_tokens < 1:
      raise ValueJaxError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if edit_scope not in EDIT_SCOPES:
      raise ValueJaxError(f"edit scope {edit_scope!r} is unknown", fix=f"use one of {EDIT_SCOPES}")
    n = np.shape(input_ids)[0]
    share = PREFIX_MULTIPLE if self.share_prefix else 0
    ids, mask, groups, prefix = _prepare_batch(input_ids, attention_mask, group_ids, self.prompt_buckets,
                                               self.pad_id, self.mesh, stats, prefix_multiple=share,
                                               batch_buckets=self.batch_buckets)
    b, p = ids.shape
    args = [self.params, ids, mask, groups, prefix, jax.random.key(seed), edit]
    if self.mesh is not None:
      args[1:4] = shd.shard_batch(self.mesh, ids, mask, groups)
    segments = self.segments or default_segments(max_new_tokens)
    stats_out, loop = stats_shardings(self.mesh, stats, self.cfg.intermediate_size)
    rep = None if self.mesh is None else shd.replicated(self.mesh)
    static = dict(cfg=self.cfg, max_new=int(max_new_tokens), sampling=sampling, eos_ids=self.eos_ids,
                  pad_id=self.pad_id, stats=stats, edit_scope=edit_scope, segments=segments,
                  out_sharding=None if self.mesh is None else (rep, rep, rep, stats_out, stats_out),
                  loop_sharding=loop, mesh=self.mesh)
    cache_key = (b, p, len(prefix), int(max_new_tokens), sampling, stats, edit_scope, _edit_signature(edit),
                 segments)
    what = (f"generate for batch {b}, prompt {p}" + (f" ({len(prefix)} shared)" if len(prefix) else "")
            + f", {max_new_tokens} new tokens" + (f" in {segments} segments" if segments > 1 else "")
            + ("" if stats is None else f", statistics over {stats.num_groups} groups"))
    compiled = _compiled(self._compiled, cache_key, _generate_core, static, args, what)
    out, lengths, finished, pstats, gstats = compiled(*args)
    take = lambda x: np.asarray(x)[:n]
    return GenerateOutput(take(out), take(lengths), take(finished), pstats, gstats)


def generate(params, cfg: ModelConfig, input_ids, attention_mask=None, max_new_tokens: int = 32, **kwargs):
  """One-shot generation (compiles on first use of each shape bucket; keep a `Generator` to reuse it).

  kwargs: sampling (Sampling), seed, group_ids [B] with stats (StatsSpec), edit (NeuronEdit),
  edit_scope ("prompt" | "generated" | "all"), and Generator's mesh / pad_id / eos_ids / prompt_buckets /
  batch_buckets / share_prefix / segments.
  """
  ctor = {k: kwargs.pop(k) for k in ("mesh", "pad_id", "eos_ids", "prompt_buckets", "batch_buckets", "share_prefix",
                                     "segments") if k in kwargs}
  return _generator(params, cfg, **ctor)(input_ids, attention_mask, max_new_tokens, **kwargs)


_LAST: list = []  # the most recent (params, cfg, ctor, Generator): one model's executables, never a pile


def _generator(params, cfg, **ctor) -> Generator:
  key = (cfg, tuple(sorted((k, repr(v)) for k, v in ctor.items())))
  if not _LAST or _LAST[0][0] is not params or _LAST[0][1] != key:
    _LAST[:] = [(params, key, Generator(params, cfg, **ctor))]
  return _LAST[0][2]


def _teacher_forced_core(params, input_ids, attention_mask, group_ids, edit, *, cfg: ModelConfig, stats: StatsSpec,
                         out_sharding, mesh=None):
  onehot = jax.nn.one_hot(group_ids, stats.num_groups, dtype=jnp.float32)
  weight = attention_mask.astype(jnp.float32)
  # The inputs are prompts: their pass draws a keep mask (if any) as generation's prompt pass does, step 0.
  _, sums = forward(params, cfg, input_ids, attention_mask, capture=stats.reducer(onehot, weight, mesh),
                    edit=_step_edit(edit, 0), logits="none")
  result = device_stats(sums, onehot, weight)
  if out_sharding is not None:
    result = jax.lax.with_sharding_constraint(result, out_sharding)
  return result


class TeacherForcer:
  """Statistics over every input token (LAPE), no generation; one executable per (batch, length) bucket.
  batch_buckets: as Generator's."""

  def __init__(self, params, cfg: ModelConfig, *, mesh=None, buckets: Sequence[int] = PROMPT_BUCKETS,
               pad_id: int | None = None, batch_buckets: Sequence[int] | None = BATCH_BUCKETS):
    self.params, self.cfg, self.mesh, self.buckets = params, cfg, mesh, tuple(buckets)
    self.batch_buckets = _batch_buckets(batch_buckets)
    self.pad_id = int(pad_id if pad_id is not None else special_ids(None, cfg).pad)
    self._compiled: dict = {}

  def __call__(self, input_ids, attention_mask, group_ids, stats: StatsSpec,
               edit: NeuronEdit | None = None) -> DeviceStats:
    ids, mask, groups, _ = _prepare_batch(input_ids, attention_mask, group_ids, self.buckets, self.pad_id,
                                          self.mesh, stats, batch_buckets=self.batch_buckets)
    args = [self.params, ids, mask, groups, edit]
    if self.mesh is not None:
      args[1:4] = shd.shard_batch(self.mesh, ids, mask, groups)
    static = dict(cfg=self.cfg, stats=stats, out_sharding=stats_shardings(self.mesh, stats, self.cfg.intermediate_size)[0],
                  mesh=self.mesh)
    key = (*ids.shape, stats, _edit_signature(edit))
    what = f"teacher-forced statistics for batch {ids.shape[0]}, length {ids.shape[1]}"
    compiled = _compiled(self._compiled, key, _teacher_forced_core, static, args, what)
    return compiled(*args)
