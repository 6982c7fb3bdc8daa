"""Teacher-forced scoring with the forward pass: log-likelihoods of continuations and next-token
probabilities, padded to a few bucketed shapes so that a whole evaluation compiles a handful of times.
`continuation_logprobs_many` scores a stack of edits at once, sharing the prompts' pass between the edits
that leave the prompt alone.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.engine.batching import BATCH_BUCKETS, bucket, pack_rows
from valuejax.errors import ValueJaxError
from valuejax.intervene.batch import run_edits
from valuejax.intervene.edits import Edit, edit_mask_for, identity_neurons

# Continuations are short (a few words), so in the cached path they pad to a multiple of this instead of
# to the prompt buckets: their length is what every extra edit costs.
_CONT_MULTIPLE = 8


def bucket_length(n: int, buckets: Sequence[int] | None = None) -> int:
  """The padded length for `n` tokens: the smallest bucket >= n (default: powers of two from 16); past the
  largest an error, since a scored row cannot be cut. `valuejax.engine.bucket` with beyond="error"."""
  return bucket(n, buckets, beyond="error")


def encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
  return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


@dataclasses.dataclass(frozen=True)
class ContinuationScores:
  """Per item: sum of log p over the continuation tokens, and their count."""
  sum_logprob: np.ndarray  # [N]
  num_tokens: np.ndarray  # [N]

  @property
  def mean_logprob(self) -> np.ndarray:
    """Length-normalised log-likelihood (per token), so longer options are not penalised for length."""
    return self.sum_logprob / self.num_tokens


def _edit_args(edit: Edit | None) -> tuple[Any, str]:
  if edit is None:
    return None, "all"
  if not isinstance(edit, Edit):
    raise ValueJaxError(f"expected a valuejax.intervene.Edit, got {type(edit).__name__}",
                        fix="wrap a NeuronEdit as Edit(neurons, scope)")
  return edit.neurons, edit.scope


def generated_steps(is_generated: jax.Array) -> jax.Array:
  """[B, T] the decode step at which generation feeds each token: 0 for the prompt (the prefill's step), k + 1
  for the k-th generated token (counted from 0), so a teacher-forced pass draws each position's keep mask as
  decoding that token would (models/edit.py). Needs the generated tokens of a row to follow its prompt
  contiguously, as every layout here has them."""
  gen = jnp.asarray(is_generated).astype(jnp.int32)
  return jnp.cumsum(gen, axis=-1) * gen


def _forward(params, cfg, ids, attn, gen, neurons, scope, logits="all"):
  from valuejax.models.forward import forward
  mask = steps = None
  if neurons is not None:
    mask, steps = edit_mask_for(scope, attn, gen), generated_steps(gen)
  out, _ = forward(params, cfg, ids, attn, edit=neurons, edit_mask=mask, edit_steps=steps, logits=logits)
  return out if logits == "hidden" else out.astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=(1, 6))
def _continuation_batch(params, cfg, ids, attn, target, neurons, scope):
  hidden = _forward(params, cfg, ids, attn, target, neurons, scope, logits="hidden")
  m = target[:, 1:]
  return _sum_target_logprobs(params, cfg, hidden[:, :-1], ids[:, 1:], m), m.sum(1)


@functools.partial(jax.jit, static_argnums=(1, 5))
def _next_token_batch(params, cfg, ids, attn, neurons, scope, token_ids):
  final = _forward(params, cfg, ids, attn, jnp.zeros_like(attn, bool), neurons, scope, logits="last")
  return jax.nn.log_softmax(final, -1)[:, token_ids]


def _batches(lengths: Sequence[int], batch_size: int):
  """Index groups of similar length (sorted), so padding within a batch stays small."""
  order = np.argsort(np.asarray(lengths), kind="stable")
  for start in range(0, len(order), batch_size):
    yield order[start:start + batch_size]


def _check_length(cfg, n: int, what: str) -> None:
  if n > cfg.max_position_embeddings:
    raise ValueJaxError(f"{what} has {n} tokens, more than the model's {cfg.max_position_embeddings} positions",
                        fix="shorten the prompt")


def _encode_pairs(cfg, tokenizer, prompts, continuations, add_special_tokens):
  if len(prompts) != len(continuations):
    raise ValueJaxError(f"{len(prompts)} prompts but {len(continuations)} continuations")
  p_rows, c_rows = [], []
  for i, (p, c) in enumerate(zip(prompts, continuations)):
    p_ids, c_ids = encode(tokenizer, p, add_special_tokens), encode(tokenizer, c, False)
    if not c_ids:
      raise ValueJaxError(f"continuation {i} ({c!r}) has no tokens", fix="give every option some text")
    if not p_ids:
      raise ValueJaxError(f"prompt {i} has no tokens: nothing to condition the continuation on",
                          fix="give a prompt, or keep add_special_tokens=True for a BOS token")
    _check_length(cfg, len(p_ids) + len(c_ids), f"prompt + continuation {i}")
    p_rows.append(p_ids)
    c_rows.append(c_ids)
  return p_rows, c_rows


def continuation_logprobs(params: Any, cfg: Any, tokenizer: Any, prompts: Sequence[str],
                          continuations: Sequence[str], edit: Edit | None = None, *, batch_size: int = 8,
                          buckets: Sequence[int] | None = None,
                          add_special_tokens: bool = True) -> ContinuationScores:
  """log p(continuation | prompt) by teacher forcing, summed over the continuation's tokens only.

  Prompt and continuation are tokenised separately and concatenated, so both options of an item are scored
  after exactly the same prompt tokens (start the continuation with a space where the text needs one). Under
  an edit of scope "generated" the continuation tokens count as generated: as in decoding, the first
  continuation token is predicted from the unedited prompt, the later ones after edited positions.
  """
  neurons, scope = _edit_args(edit)
  p_rows, c_rows = _encode_pairs(cfg, tokenizer, prompts, continuations, add_special_tokens)
  rows = [p + c for p, c in zip(p_rows, c_rows)]
  targets = [len(p) for p in p_rows]
  params = jax.tree.map(jnp.asarray, params)
  sums = np.zeros(len(rows), np.float64)
  counts = np.zeros(len(rows), np.int64)
  for idx in _batches([len(r) for r in rows], batch_size):
    batch_rows = [rows[i] for i in idx]
    length = bucket_length(max(len(r) for r in batch_rows), buckets)
    # Missing rows repeat the first (outputs dropped): one batch shape, and no row is all padding.
    ids, attn = pack_rows(batch_rows, pad_id=0, length=length, batch=batch_size, fill="first")
    target = attn.copy()
    for j, i in enumerate(idx):
      target[j, :targets[i]] = False
    s, n = _continuation_batch(params, cfg, ids, attn, target, neurons, scope)
    sums[idx] = np.asarray(s)[:len(idx)]
    counts[idx] = np.asarray(n)[:len(idx)]
  return ContinuationScores(sums, counts)


# -- many edits in one pass -------------------------------------------------------------------------------

def _sum_target_logprobs(params, cfg, hidden, targets, mask):
  """Sum over the masked positions of log p(target), from hidden states (no [B, T, V] logits held)."""
  from valuejax.models.forward import target_logprobs
  tok = target_logprobs(params, cfg, hidden, targets)
  return jnp.where(mask, tok, 0.0).sum(1)


def _prompt_cache(params, cfg, ids, attn, neurons=None, edit_mask=None):
  """Left-padded prompts [P, t] into a float32 cache of exactly their t slots (float32 holds any compute
  dtype exactly, so cached keys equal recomputed ones), and the logits after each prompt's last token [P, V].
  An edit's keep mask is drawn as generation's prompt pass draws it (step 0)."""
  from valuejax.models.forward import KVCache, forward_cached, positions_from_mask
  from valuejax.models.layout import layout_of
  b, t = ids.shape
  cache = KVCache.zeros(cfg, b, t, jnp.float32, per_layer=layout_of(params) == "decode")
  last, _, cache = forward_cached(params, cfg, ids, positions_from_mask(attn), cache, jnp.zeros((), jnp.int32),
                                  attn, edit=neurons, edit_mask=edit_mask, edit_steps=jnp.zeros((t,), jnp.int32),
                                  logits="last", prefill=True)
  return cache, last.astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=1)
def _prefill_prompts(params, cfg, ids, attn, first):
  """The prompts' cache, shared by every edit that leaves the prompt alone, and log p(first continuation
  token): it is read off the last prompt position, which no such edit reaches."""
  cache, last = _prompt_cache(params, cfg, ids, attn)
  return cache, jnp.take_along_axis(last, first[:, None], -1)[:, 0] - jax.nn.logsumexp(last, -1)


def _continuations(params, cfg, prompts, batch, neurons, edit_mask):
  """Continuation rows on top of their prompts' cache `prompts` (one cache row per continuation row),
  which is only read: the new keys go into a cache of the continuation's own slots, so no edit copies the
  prompts' cache. Returns the summed log p of each row's targets [R].

  Continuation rows are right-padded (see _continuation_block), so column j holds every row's token j, which
  generation feeds at decode step j (key folded with j + 1): column j draws that step's keep mask, one for
  all rows, as the decode step does."""
  from valuejax.models.forward import KVCache, forward_cached
  from valuejax.models.layout import layout_of
  ids = batch["input_ids"]
  r, c = ids.shape
  own = KVCache.zeros(cfg, r, c, jnp.float32, per_layer=layout_of(params) == "decode")
  hidden, _, _ = forward_cached(params, cfg, ids, batch["positions"], own, jnp.asarray(prompts.slots, jnp.int32),
                                batch["kv_valid"], edit=neurons, edit_mask=edit_mask,
                                edit_steps=1 + jnp.arange(c, dtype=jnp.int32), logits="hidden", prefill=True,
                                past=(prompts,))
  return _sum_target_logprobs(params, cfg, hidden, batch["targets"], batch["attention_mask"])


def _continuation_under_edit(params, cfg, batch, neurons, edit_mask):
  """One edit over the continuation tokens only, on top of the prompts' unedited cache (run_edits'
  per-edit function)."""
  from valuejax.models.forward import KVCache
  return _continuations(params, cfg, KVCache(batch["cache_k"], batch["cache_v"]), batch, neurons, edit_mask)


def _rows_under_edit(params, cfg, batch, neurons, edit_mask):
  """One edit over its own pass of the prompts and then the continuations on top of it (run_edits' per-edit
  function, for edits that reach the prompt): each distinct prompt runs once per edit, however many
  continuations follow it. Returns log p of each continuation row [R]."""
  rp, first = batch["row_prompt"], batch["first"]
  cache, last = _prompt_cache(params, cfg, batch["prompt_ids"], batch["prompt_mask"], neurons,
                              batch["prompt_edit_mask"])
  total = last[rp, first] - jax.nn.logsumexp(last, -1)[rp]
  if batch["input_ids"].shape[1]:  # else every continuation is one token, scored from the prompt
    rows = jax.tree.map(lambda x: jnp.take(x, rp, axis=-3), cache)  # [.., KV, B, ..]: B is axis -3
    total = total + _continuations(params, cfg, rows, batch, neurons, edit_mask)
  return total


def _leaves_prompt_alone(edit: Edit) -> bool:
  return edit.scope == "generated" or edit.is_identity


def continuation_logprobs_many(params: Any, cfg: Any, tokenizer: Any, prompts: Sequence[str],
                               continuations: Sequence[str], edits: Sequence[Edit | None], *,
                               batch_size: int = 8, buckets: Sequence[int] | None = None,
                               add_special_tokens: bool = True, chunk: int = 8,
                               max_tokens: int | None = None) -> list[ContinuationScores]:
  """`continuation_logprobs` under each of `edits` (None: unedited), in one pass; one result per edit.

  `max_tokens`: score only the first `max_tokens` tokens of each continuation (cut after tokenising, so
  the scored tokens are exactly those of the whole text's encoding).

  Edits that leave the prompt alone (scope "generated", and identity edits such as the baseline) share the
  prompts: those run once into a key/value cache, and each edit runs only the continuation tokens on top
  of it, so an extra edit costs its continuation, not the prompt again. Edits of scope "all" or "prompt"
  run each distinct prompt once per edit (the two options of a forced choice share it) and the
  continuations on top of that edit's cache. Either way the output layer runs on the scored tokens only.
  Both paths vmap the edits `chunk` at a time (valuejax.intervene.run_edits), so a few compiled functions
  (one per power of two up to `chunk`) serve any number of edits. `buckets` pad the prompts; continuations pad
  to a multiple of 8 tokens.

  Every edit gives continuation_logprobs' numbers up to float rounding, edits with keep_prob < 1 included:
  in both, a position draws the keep mask of the decode step at which generation would feed its token (the
  prompt step 0, continuation token j step j + 1; see generated_steps), one [F] draw per layer and step from
  the edit's key, whatever the batch, its padding or the edit's place in the stack. Scoring a continuation
  that generation produced under the edit therefore sees the very activations generation saw.
  """
  edits = list(edits)
  if not edits:
    raise ValueJaxError("continuation_logprobs_many needs at least one edit (None for the unedited model)")
  shape = (cfg.num_layers, cfg.intermediate_size)
  resolved = []
  for e in edits:
    if e is None:
      e = Edit(identity_neurons(shape), "generated", "unedited")
    _edit_args(e)  # type check with the usual message
    resolved.append(e)
  p_rows, c_rows = _encode_pairs(cfg, tokenizer, prompts, continuations, add_special_tokens)
  if max_tokens is not None:
    if max_tokens < 1:
      raise ValueJaxError(f"max_tokens = {max_tokens} scores nothing", fix="pass None or a positive number")
    c_rows = [c[:max_tokens] for c in c_rows]
  params = jax.tree.map(jnp.asarray, params)
  sums = np.zeros((len(resolved), len(p_rows)), np.float64)
  groups: dict[str, list[int]] = {}
  for k, e in enumerate(resolved):
    groups.setdefault("cached" if _leaves_prompt_alone(e) else e.scope, []).append(k)
  for key, members in groups.items():
    stacked = Edit.stack([resolved[k] for k in members])
    run = _score_cached if key == "cached" else _score_edited_prompts
    sums[members] = run(params, cfg, p_rows, c_rows, stacked, batch_size, buckets, chunk)
  counts = np.asarray([len(c) for c in c_rows], np.int64)
  return [ContinuationScores(row, counts.copy()) for row in sums]


def _continuation_block(p_rows, c_rows, rows, n_prompt_slots, prompt_mask):
  """The continuation rows `rows` laid out after their prompts' `n_prompt_slots` slots: inputs (each
  continuation but its last token), targets (all but its first), positions that go on from each row's own
  prompt length, and the valid slots of prompt + continuation. `prompt_mask` [len(rows), slots]."""
  c_len = -(-(max(len(c_rows[i]) for i in rows) - 1) // _CONT_MULTIPLE) * _CONT_MULTIPLE
  cont, cmask = pack_rows([c_rows[i][:-1] for i in rows], pad_id=0, length=c_len)
  targets, _ = pack_rows([c_rows[i][1:] for i in rows], pad_id=0, length=c_len)
  n_prompt = np.asarray([len(p_rows[i]) for i in rows], np.int32)
  return {"input_ids": cont, "attention_mask": cmask, "is_generated": cmask, "targets": targets,
          "positions": n_prompt[:, None] + np.arange(c_len, dtype=np.int32)[None],
          "kv_valid": np.concatenate([prompt_mask, cmask], 1)}


def _score_cached(params, cfg, p_rows, c_rows, edits, batch_size, buckets, chunk) -> np.ndarray:
  out = np.zeros((len(edits), len(p_rows)), np.float64)
  # Grouped by continuation length: that is the part every edit pays for.
  for idx in _batches([len(c) for c in c_rows], batch_size):
    p_len = bucket_length(max(len(p_rows[i]) for i in idx), buckets)
    # Prompts are left-padded so that every row's continuation starts in slot p_len. A short batch runs as
    # the next batch bucket; its missing rows repeat the first (their outputs are dropped).
    rows = list(idx) + [idx[0]] * (bucket(len(idx), BATCH_BUCKETS) - len(idx))
    ids, attn = pack_rows([p_rows[i] for i in rows], pad_id=0, length=p_len, side="left")
    first = np.asarray([c_rows[i][0] for i in rows], np.int32)
    cache, lp_first = _prefill_prompts(params, cfg, ids, attn, first)
    total = lp_first[None]
    batch = _continuation_block(p_rows, c_rows, rows, p_len, attn)
    if batch["input_ids"].shape[1]:  # else every continuation is one token, fully scored from the prompt
      batch.update(cache_k=cache.k, cache_v=cache.v)
      total = total + run_edits(_continuation_under_edit, params, cfg, batch, edits, chunk=chunk)
    out[:, idx] = np.broadcast_to(np.asarray(total, np.float64), (len(edits), len(rows)))[:, :len(idx)]
  return out


def _score_edited_prompts(params, cfg, p_rows, c_rows, edits, batch_size, buckets, chunk) -> np.ndarray:
  out = np.zeros((len(edits), len(p_rows)), np.float64)
  keys = [tuple(p) for p in p_rows]
  # Rows in order of prompt length, rows of one prompt together, then by continuation length; batches of
  # at most batch_size continuation rows, each with the distinct prompts its rows follow.
  order = sorted(range(len(p_rows)), key=lambda i: (len(p_rows[i]), keys[i], len(c_rows[i])))
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    distinct = list(dict.fromkeys(keys[i] for i in idx))
    slot = {k: j for j, k in enumerate(distinct)}
    p_len = bucket_length(max(len(k) for k in distinct), buckets)
    # Short batches run as the next batch bucket: every row costs a forward per edit here. Missing prompts
    # and rows repeat the first (their outputs are dropped).
    ids, attn = pack_rows(distinct, pad_id=0, length=p_len, batch=bucket(len(distinct), BATCH_BUCKETS),
                          side="left", fill="first")
    rows = list(idx) + [idx[0]] * (bucket(len(idx), BATCH_BUCKETS) - len(idx))
    rp = np.asarray([slot[keys[i]] for i in rows], np.int32)
    batch = _continuation_block(p_rows, c_rows, rows, p_len, attn[rp])
    batch.update(prompt_ids=ids, prompt_mask=attn, row_prompt=rp,
                 prompt_edit_mask=edit_mask_for(edits.scope, attn, np.zeros_like(attn)),
                 first=np.asarray([c_rows[i][0] for i in rows], np.int32))
    s = run_edits(_rows_under_edit, params, cfg, batch, edits, chunk=chunk)
    out[:, idx] = np.asarray(s)[:, :len(idx)]
  return out


def next_token_logprobs(params: Any, cfg: Any, tokenizer: Any, prompts: Sequence[str],
                        token_ids: Sequence[int], edit: Edit | None = None, *, batch_size: int = 8,
                        buckets: Sequence[int] | None = None, add_special_tokens: bool = True) -> np.ndarray:
  """log p(next token = t | prompt) for each t in `token_ids`: [N, K] (full-vocabulary softmax)."""
  neurons, scope = _edit_args(edit)
  if edit is not None and scope == "generated":
    raise ValueJaxError(f"edit {edit.name!r} acts on generated tokens only, so it cannot change the "
                        "next-token distribution after a prompt",
                        fix="score it with scope 'all' (dataclasses.replace(edit, scope='all')), or generate")
  rows = [encode(tokenizer, p, add_special_tokens) for p in prompts]
  for i, r in enumerate(rows):
    if not r:
      raise ValueJaxError(f"prompt {i} has no tokens")
    _check_length(cfg, len(r), f"prompt {i}")
  params = jax.tree.map(jnp.asarray, params)
  token_ids = jnp.asarray(token_ids, jnp.int32)
  out = np.zeros((len(rows), token_ids.shape[0]), np.float64)
  for idx in _batches([len(r) for r in rows], batch_size):
    batch_rows = [rows[i] for i in idx]
    length = bucket_length(max(len(r) for r in batch_rows), buckets)
    # Missing rows repeat the first (outputs dropped): one batch shape, and no row is all padding.
    ids, attn = pack_rows(batch_rows, pad_id=0, length=length, batch=batch_size, fill="first")
    lp = _next_token_batch(params, cfg, ids, attn, neurons, scope, token_ids)
    out[idx] = np.asarray(lp)[:len(idx)]
  return out
