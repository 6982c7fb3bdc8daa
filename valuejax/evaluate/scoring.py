"""Teacher-forced scoring with the forward pass: log-likelihoods of continuations and next-token
probabilities, padded to a few bucketed shapes so that a whole evaluation compiles a handful of times.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.intervene.edits import Edit, edit_mask_for

_MIN_BUCKET = 16


def bucket_length(n: int, buckets: Sequence[int] | None = None) -> int:
  """The padded length for `n` tokens: the smallest bucket >= n (default: powers of two from 16)."""
  if buckets:
    for b in sorted(buckets):
      if b >= n:
        return int(b)
    raise ValueJaxError(f"a sequence of {n} tokens is longer than the largest bucket {max(buckets)}",
                        fix="add a larger bucket or shorten the prompt")
  return max(_MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())


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


def _forward(params, cfg, ids, attn, gen, neurons, scope, logits="all"):
  from valuejax.models.forward import forward
  mask = None if neurons is None else edit_mask_for(scope, attn, gen)
  out, _ = forward(params, cfg, ids, attn, edit=neurons, edit_mask=mask, logits=logits)
  return out.astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=(1, 6))
def _continuation_batch(params, cfg, ids, attn, target, neurons, scope):
  logits = _forward(params, cfg, ids, attn, target, neurons, scope)[:, :-1]
  nxt = ids[:, 1:]
  tok = jnp.take_along_axis(logits, nxt[..., None], -1)[..., 0] - jax.nn.logsumexp(logits, -1)
  m = target[:, 1:]
  return jnp.where(m, tok, 0.0).sum(1), m.sum(1)


@functools.partial(jax.jit, static_argnums=(1, 5))
def _next_token_batch(params, cfg, ids, attn, neurons, scope, token_ids):
  final = _forward(params, cfg, ids, attn, jnp.zeros_like(attn, bool), neurons, scope, logits="last")
  return jax.nn.log_softmax(final, -1)[:, token_ids]


def _batches(lengths: Sequence[int], batch_size: int):
  """Index groups of similar length (sorted), so padding within a batch stays small."""
  order = np.argsort(np.asarray(lengths), kind="stable")
  for start in range(0, len(order), batch_size):
    yield order[start:start + batch_size]


def _pack(rows: Sequence[Sequence[int]], batch_size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded ids and attention mask [batch_size, length]; missing rows repeat the first row (their
  outputs are dropped) so every call has the same batch shape and no row is all padding."""
  ids = np.zeros((batch_size, length), np.int32)
  attn = np.zeros((batch_size, length), bool)
  for i in range(batch_size):
    row = rows[i] if i < len(rows) else rows[0]
    ids[i, :len(row)] = row
    attn[i, :len(row)] = True
  return ids, attn


def _check_length(cfg, n: int, what: str) -> None:
  if n > cfg.max_position_embeddings:
    raise ValueJaxError(f"{what} has {n} tokens, more than the model's {cfg.max_position_embeddings} positions",
                        fix="shorten the prompt")


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
  if len(prompts) != len(continuations):
    raise ValueJaxError(f"{len(prompts)} prompts but {len(continuations)} continuations")
  neurons, scope = _edit_args(edit)
  rows, targets = [], []
  for i, (p, c) in enumerate(zip(prompts, continuations)):
    p_ids, c_ids = encode(tokenizer, p, add_special_tokens), encode(tokenizer, c, False)
    if not c_ids:
      raise ValueJaxError(f"continuation {i} ({c!r}) has no tokens", fix="give every option some text")
    if not p_ids:
      raise ValueJaxError(f"prompt {i} has no tokens: nothing to condition the continuation on",
                          fix="give a prompt, or keep add_special_tokens=True for a BOS token")
    _check_length(cfg, len(p_ids) + len(c_ids), f"prompt + continuation {i}")
    rows.append(p_ids + c_ids)
    targets.append(len(p_ids))
  params = jax.tree.map(jnp.asarray, params)
  sums = np.zeros(len(rows), np.float64)
  counts = np.zeros(len(rows), np.int64)
  for idx in _batches([len(r) for r in rows], batch_size):
    batch_rows = [rows[i] for i in idx]
    length = bucket_length(max(len(r) for r in batch_rows), buckets)
    ids, attn = _pack(batch_rows, batch_size, length)
    target = attn.copy()
    for j, i in enumerate(idx):
      target[j, :targets[i]] = False
    s, n = _continuation_batch(params, cfg, ids, attn, target, neurons, scope)
    sums[idx] = np.asarray(s)[:len(idx)]
    counts[idx] = np.asarray(n)[:len(idx)]
  return ContinuationScores(sums, counts)


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
    ids, attn = _pack(batch_rows, batch_size, length)
    lp = _next_token_batch(params, cfg, ids, attn, neurons, scope, token_ids)
    out[idx] = np.asarray(lp)[:len(idx)]
  return out
