"""Batched generation with a preallocated KV cache, the whole decode loop inside one jit.

Per-neuron statistics are reduced inside the compiled loop (prompt and generated tokens kept apart), so
activations never leave the device. Batches are laid out and bucketed by `valuejax.engine.batching`, so that
a whole run compiles a handful of times; the decoding rule is `valuejax.engine.sampling`'s and what the
statistics reduce is `valuejax.engine.stats`'s (`Sampling` and `StatsSpec` stay importable from here).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.engine import sharding as shd
# Buckets are batching's; PROMPT_BUCKETS and BATCH_BUCKETS stay importable from here.
from valuejax.engine.batching import (BATCH_BUCKETS, PROMPT_BUCKETS, batch_buckets as _batch_buckets,  # noqa: F401
                                      prepare_batch, special_ids)
from valuejax.engine.sampling import Sampling, select
from valuejax.engine.stats import DeviceStats, StatsSpec, device_stats, stats_shardings  # noqa: F401
from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig
from valuejax.models.edit import NeuronEdit
from valuejax.models.forward import KVCache, forward, forward_cached, positions_from_mask, rope_tables
from valuejax.models.layout import check_current, layout_of, params_dtype

log = logging.getLogger("valuejax")

EDIT_SCOPES = ("prompt", "generated", "all")
# A prefix that every prompt of a batch shares (system prompt, chat template, instruction) is run once, as
# one row whose keys and values every row attends to; its length is rounded down to a multiple of this, so
# that a run whose prompts share a template compiles once per bucket of the rest.
PREFIX_MULTIPLE = 16
# The decode loop is cut into segments of about this many steps, each with a cache of its own steps' slots
# (see Generator): a step then reads the slots written so far rather than the whole run's.
SEGMENT_TOKENS = 64
MAX_SEGMENTS = 4


class GenerateOutput(NamedTuple):
  tokens: np.ndarray  # [B, N] int32, pad_id after the end of each row
  lengths: np.ndarray  # [B] response tokens before EOS (EOS excluded)
  finished: np.ndarray  # [B] bool: the row produced an EOS
  prompt_stats: DeviceStats | None  # [G, L, F] sums over prompt tokens
  gen_stats: DeviceStats | None  # [G, L, F] sums over generated tokens (EOS and after excluded)
  budget_stats: DeviceStats | None = None  # gen_stats over each row's first StatsSpec.budget tokens alone


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


class _LoopState(NamedTuple):
  """What the decode loop carries from one step to the next (the `lax.while_loop` state of one segment)."""
  k: jax.Array  # int32 []: steps taken; this step feeds the token in out[:, k]
  cache: KVCache | None  # this segment's own slots (see Generator's `segments`); None between segments
  kv_valid: jax.Array  # bool [B, slots]: the slots that hold real tokens, up to and including this step's
  out: jax.Array  # int32 [B, max_new]: the tokens chosen so far, pad_id after them
  presence: jax.Array  # bool [B, V]: the tokens each row holds (prompt and chosen), for the repetition penalty
  finished: jax.Array  # bool [B]: the row fed an EOS (or is an empty row)
  counted: jax.Array  # int32 [B]: the response tokens fed while live, whose activations the sums count
  pos: jax.Array  # int32 [B]: the position id of the last token fed
  rope: Any  # the rope tables of the next step's token (see rope_tables), or None for learned positions
  sums: dict | None  # the per-layer [L, G, F] sums over generated tokens so far; None without statistics


def _generate_core(params, input_ids, attention_mask, group_ids, prefix_ids, key, edit, *, cfg: ModelConfig,
                   max_new: int, sampling: Sampling, eos_ids: tuple[int, ...], pad_id: int,
                   stats: StatsSpec | None, edit_scope: str, segments: int, out_sharding, loop_sharding=None,
                   mesh=None):
  """input_ids [B, P + S]: the shared prefix (prefix_ids [P], possibly empty) in slots [0, P) of every real
  row, then each row's remaining prompt tokens left-padded to S (see batching.prompt_layout)."""
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
  per_layer = layout_of(params) == "decode"
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
  first = select(logits, presence, jax.random.fold_in(key, 0), sampling)
  first = jnp.where(row_real, first, pad_id)
  out = jnp.full((b, max_new), pad_id, jnp.int32).at[:, 0].set(first)
  presence = presence.at[jnp.arange(b), first].set(True)
  decode_edit = edit if edit_scope in ("generated", "all") else None

  zero_stats = stats.zeros(cfg, loop_sharding) if stats else None
  dtype = params_dtype(params)
  next_rope = lambda pos: rope_tables(cfg, (pos + 1)[:, None], dtype)  # the tables of the next step's token
  s = _LoopState(k=jnp.int32(0), cache=None, kv_valid=kv_valid, out=out, presence=presence, finished=~row_real,
                 counted=jnp.zeros((b,), jnp.int32), pos=positions[:, -1], rope=next_rope(positions[:, -1]),
                 sums=zero_stats)
  past = []  # the caches of the finished segments

  def body(s: _LoopState, end) -> _LoopState:
    k = s.k
    tok = s.out[:, k]
    finished = s.finished | jnp.isin(tok, eos)
    live = ~finished
    slot = p + k
    kv_valid = s.kv_valid.at[:, slot].set(True)
    pos = s.pos + 1
    weight = live.astype(jnp.float32)[:, None]
    capture = reducer(onehot, weight)
    if stats and stats.budget:
      # The budget's sums: the same reduction with the weight of steps past the budget zeroed, as groups
      # G..2G-1 beside the full sums' 0..G-1 (one [L, 2G, F] carry, split after the loop).
      short = reducer(onehot, weight * (k < stats.budget).astype(jnp.float32))
      capture = lambda layer, a, h, full=capture, short=short: jax.tree.map(
          lambda x, y: jnp.concatenate([x, y], axis=0), full(layer, a, h), short(layer, a, h))
    logits, sums, cache = forward_cached(
        params, cfg, tok[:, None], pos[:, None], s.cache, slot, kv_valid[:, :end],
        capture=capture, edit=_step_edit(decode_edit, k + 1), edit_mask=live[:, None],
        prefix=prefix, past=tuple(past), rope=s.rope)
    nxt = select(logits, s.presence, jax.random.fold_in(key, k + 1), sampling)
    write = jnp.minimum(k + 1, max_new - 1)
    keep_old = finished | (k + 1 >= max_new)
    out = s.out.at[:, write].set(jnp.where(keep_old, s.out[:, write], nxt))
    presence = s.presence.at[jnp.arange(b), nxt].max(~keep_old)
    return _LoopState(k=k + 1, cache=cache, kv_valid=kv_valid, out=out, presence=presence, finished=finished,
                      counted=s.counted + live.astype(jnp.int32), pos=pos, rope=next_rope(pos),
                      sums=None if stats is None else _constrain(jax.tree.map(jnp.add, s.sums, sums), loop_sharding))

  for start, stop in steps:
    s = s._replace(cache=cache if start == 0 else KVCache.zeros(cfg, b, stop - start, dtype, per_layer=per_layer))
    s = jax.lax.while_loop(lambda s, stop=stop: (s.k < stop) & ~jnp.all(s.finished),
                           functools.partial(body, end=p + stop), s)
    past.append(s.cache)
    s = s._replace(cache=None)
  out, counted = s.out, s.counted
  hit_eos = jnp.isin(out, eos) & row_real[:, None]
  first_eos = jnp.where(hit_eos.any(1), jnp.argmax(hit_eos, axis=1), max_new)
  lengths = jnp.where(row_real, first_eos, 0).astype(jnp.int32)
  after = jnp.arange(max_new)[None, :] > first_eos[:, None]
  out = jnp.where(after, pad_id, out)
  gen_stats = budget_stats = None
  if stats:
    # One weight column holding each row's count of response tokens gives device_stats the right totals.
    g = stats.num_groups
    gen_stats = device_stats({n: x[:, :g] for n, x in s.sums.items()}, onehot, counted.astype(jnp.float32)[:, None])
    if stats.budget:
      # A row is live on a prefix of the steps (finished never clears), so its tokens within the budget are
      # min(counted, budget).
      budget_stats = device_stats({n: x[:, g:] for n, x in s.sums.items()}, onehot,
                                  jnp.minimum(counted, stats.budget).astype(jnp.float32)[:, None])
  result = (out, lengths, hit_eos.any(1), prompt_stats, gen_stats, budget_stats)
  if out_sharding is not None:
    result = jax.lax.with_sharding_constraint(result, out_sharding)
  return result


def _constrain(x, sharding):
  return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


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
    """params: either layout (see `valuejax.models.layout`), used as given: the Generator holds no copy of
    the weights, so a `Model.relayout` after it is built replaces them under it, and it then refuses to run
    (build it again on the model's new params). The decode layout (`Model.relayout("decode")`, or
    `load_model(..., layout="decode")`) decodes faster on a CPU; the stacked one compiles one layer body.
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
    check_current(self.params, "Generator")
    ids, mask, groups, prefix = prepare_batch(input_ids, attention_mask, group_ids, self.prompt_buckets, self.pad_id,
                                              data=shd.data_size(self.mesh),
                                              num_groups=None if stats is None else stats.num_groups,
                                              prefix_multiple=share, batch_buckets=self.batch_buckets)
    b, p = ids.shape
    args = [self.params, ids, mask, groups, prefix, jax.random.key(seed), edit]
    if self.mesh is not None:
      args[1:4] = shd.shard_batch(self.mesh, ids, mask, groups)
    segments = self.segments or default_segments(max_new_tokens)
    stats_out, loop = stats_shardings(self.mesh, stats, self.cfg.intermediate_size)
    rep = None if self.mesh is None else shd.replicated(self.mesh)
    static = dict(cfg=self.cfg, max_new=int(max_new_tokens), sampling=sampling, eos_ids=self.eos_ids,
                  pad_id=self.pad_id, stats=stats, edit_scope=edit_scope, segments=segments,
                  out_sharding=None if self.mesh is None else (rep, rep, rep, stats_out, stats_out,
                                                               stats_out if stats and stats.budget else None),
                  loop_sharding=loop, mesh=self.mesh)
    cache_key = (b, p, len(prefix), int(max_new_tokens), sampling, stats, edit_scope, _edit_signature(edit),
                 segments)
    what = (f"generate for batch {b}, prompt {p}" + (f" ({len(prefix)} shared)" if len(prefix) else "")
            + f", {max_new_tokens} new tokens" + (f" in {segments} segments" if segments > 1 else "")
            + ("" if stats is None else f", statistics over {stats.num_groups} groups"))
    compiled = _compiled(self._compiled, cache_key, _generate_core, static, args, what)
    out, lengths, finished, pstats, gstats, bstats = compiled(*args)
    take = lambda x: np.asarray(x)[:n]
    return GenerateOutput(take(out), take(lengths), take(finished), pstats, gstats, bstats)


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
    check_current(self.params, "TeacherForcer")
    ids, mask, groups, _ = prepare_batch(input_ids, attention_mask, group_ids, self.buckets, self.pad_id,
                                         data=shd.data_size(self.mesh), num_groups=stats.num_groups,
                                         batch_buckets=self.batch_buckets)
    args = [self.params, ids, mask, groups, edit]
    if self.mesh is not None:
      args[1:4] = shd.shard_batch(self.mesh, ids, mask, groups)
    out_sharding = stats_shardings(self.mesh, stats, self.cfg.intermediate_size)[0]
    static = dict(cfg=self.cfg, stats=stats, out_sharding=out_sharding, mesh=self.mesh)
    key = (*ids.shape, stats, _edit_signature(edit))
    what = f"teacher-forced statistics for batch {ids.shape[0]}, length {ids.shape[1]}"
    compiled = _compiled(self._compiled, key, _teacher_forced_core, static, args, what)
    return compiled(*args)
