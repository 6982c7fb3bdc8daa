"""The one place for batching mechanics: which ids pad and end a sequence, which padded length a batch gets,
how token rows are laid out in a [batch, length] array with its mask, and the engine's batch layout (a
shared prefix first, the rest left-padded to a length bucket, empty rows up to a batch bucket).

Generation, recording, scoring, the memory plan and the launchers all pad; doing it here keeps their shapes
(and so their compiled executables and results) consistent. Depends only on numpy, so it loads without jax.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from valuejax.errors import ValueJaxError

# Default length buckets (scoring's): powers of two from this one up, so that short prompts share one shape.
MIN_BUCKET = 16
# The engine's prompt lengths. Padding is computed like real tokens, so buckets are fine where prompts are
# short and coarse beyond.
PROMPT_BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192)
# Batches are padded with empty rows (no tokens, no group) to one of these sizes, so that a run whose last
# batch is short, or a caller whose batch sizes vary, does not compile for every size.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
BEYOND = ("multiple", "error")
SIDES = ("right", "left")
FILLS = ("pad", "first")


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """The token ids every batch needs: `pad` fills empty slots, any of `eos` ends a response, and `bos` is put
  first on prompts without a chat template (None: nothing is)."""
  pad: int
  eos: tuple[int, ...]  # sorted
  bos: int | None


def special_ids(tokenizer: Any, cfg: Any) -> SpecialIds:
  """Pad, eos and bos ids of a model: the tokenizer's pad id, else the config's, else 0; eos is the union of
  the config's eos ids and the tokenizer's. `tokenizer` may be None (config only)."""
  tok_pad = getattr(tokenizer, "pad_token_id", None)
  pad = tok_pad if tok_pad is not None else (cfg.pad_token_id or 0)
  eos = {int(e) for e in cfg.eos_token_ids}
  tok_eos = getattr(tokenizer, "eos_token_id", None)
  if tok_eos is not None:
    eos.add(int(tok_eos))
  return SpecialIds(int(pad), tuple(sorted(eos)), prompt_bos(cfg))


def prompt_bos(cfg: Any) -> int | None:
  """The token put first on a prompt that has no chat template: the config's `prompt_bos_id` (a fact of the
  model, set from its HF config in valuejax/models/config.py: <bos> for Gemma), else none."""
  return cfg.prompt_bos_id


def bucket(n: int, buckets: Sequence[int] | None = None, *, beyond: str = "multiple") -> int:
  """The padded size for `n` (tokens or rows): the smallest of `buckets` >= n. Past the largest, "multiple"
  rounds n up to a multiple of it and "error" raises. buckets None or empty: powers of two from 16.

  Few distinct sizes mean few compiles; every caller pads through here so that the same n always gets the
  same shape."""
  if beyond not in BEYOND:
    raise ValueJaxError(f"bucket policy beyond={beyond!r} is unknown", "bucket", f"use one of {BEYOND}")
  if not buckets:
    return max(MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())
  ordered = sorted(int(b) for b in buckets)
  for b in ordered:
    if n <= b:
      return b
  if beyond == "error":
    raise ValueJaxError(f"a sequence of {n} tokens is longer than the largest bucket {ordered[-1]}",
                        fix="add a larger bucket or shorten the prompt")
  return int(-(-n // ordered[-1]) * ordered[-1])


def pack_rows(rows: Sequence[Sequence[int]], *, pad_id: int, length: int | None = None, batch: int | None = None,
              side: str = "right", fill: str = "pad") -> tuple[np.ndarray, np.ndarray]:
  """Token rows laid out as ids int32 [batch, length] and mask bool [batch, length] (True on real tokens).

  length: default the longest row. batch: default len(rows); rows past len(rows) are empty (fill="pad": all
  pad, mask False) or repeat the first row (fill="first": callers drop their outputs, and no row is all
  padding, with nothing to attend to). side: "right" puts tokens first (teacher forcing), "left"
  last (prompts to continue from).
  """
  where = "pack_rows"
  if side not in SIDES:
    raise ValueJaxError(f"padding side {side!r} is unknown", where, f"use one of {SIDES}")
  if fill not in FILLS:
    raise ValueJaxError(f"fill {fill!r} is unknown", where, f"use one of {FILLS}")
  n = len(rows)
  batch = n if batch is None else int(batch)
  if batch < n:
    raise ValueJaxError(f"{n} rows do not fit a batch of {batch}", where, "pass a batch size of at least len(rows)")
  if fill == "first" and batch > n and n == 0:
    raise ValueJaxError("fill='first' repeats the first row, but there are no rows", where, "pass at least one row")
  sizes = [len(r) for r in rows]
  length = max(sizes, default=0) if length is None else int(length)
  for i, k in enumerate(sizes):
    if k > length:
      raise ValueJaxError(f"row {i} has {k} tokens, more than the length {length}", where,
                          "shorten it or pad to a longer length")
  ids = np.full((batch, length), pad_id, np.int32)
  mask = np.zeros((batch, length), bool)
  for i in range(batch if fill == "first" else n):
    row = rows[i] if i < n else rows[0]
    k = len(row)
    if not k:
      continue
    cols = slice(0, k) if side == "right" else slice(length - k, length)
    ids[i, cols], mask[i, cols] = row, True
  return ids, mask


def batch_buckets(buckets: Sequence[int] | None) -> tuple[int, ...] | None:
  """Sorted batch buckets, or None (no padding) for None or empty."""
  if not buckets:
    return None
  out = tuple(sorted({int(b) for b in buckets}))
  if out[0] < 1:
    raise ValueJaxError(f"batch buckets must be positive sizes, got {tuple(buckets)}")
  return out


def real_rows(input_ids, attention_mask) -> list[np.ndarray]:
  """Each row's real tokens (where the mask is set), wherever the padding was."""
  input_ids, attention_mask = np.asarray(input_ids), np.asarray(attention_mask).astype(bool)
  return [row[m] for row, m in zip(input_ids, attention_mask)]


def shared_prefix(rows: Sequence[np.ndarray], multiple: int) -> int:
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


def prompt_layout(rows: Sequence[np.ndarray], buckets: Sequence[int] | None, pad_id: int, n_prefix: int,
                  batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def prepare_batch(input_ids, attention_mask, group_ids, buckets: Sequence[int] | None, pad_id: int, *,
                  data: int = 1, num_groups: int | None = None, prefix_multiple: int = 0,
                  batch_buckets: Sequence[int] | None = None):
  """A batch as the engine runs it: each row's real tokens (`attention_mask`, default all) left-padded to
  the length bucket, and empty rows (no tokens, group -1) up to the batch bucket (none: as it is), rounded
  up to a multiple of `data` (the mesh's data axis).

  With prefix_multiple > 0, a prefix all rows share goes first (see `shared_prefix`). Group ids (default
  0) must lie in [0, num_groups) or be -1 when `num_groups` is given. Returns ids int32 [B, T], mask bool
  [B, T], groups int32 [B] and that prefix (int32 [0] when there is none).
  """
  input_ids = np.asarray(input_ids)
  attention_mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
  n = input_ids.shape[0]
  rows = real_rows(input_ids, attention_mask)
  groups = np.zeros(n, np.int32) if group_ids is None else np.asarray(group_ids, np.int32)
  if groups.shape != (n,):
    raise ValueJaxError(f"group ids have shape {groups.shape}, expected ({n},): one group per row")
  if num_groups is not None and (groups.min(initial=0) < -1 or groups.max(initial=0) >= num_groups):
    raise ValueJaxError(f"group ids must lie in [0, {num_groups}) (or -1 for none)")
  size = bucket(n, batch_buckets) if batch_buckets and n else n
  b = -(-size // data) * data
  n_prefix = shared_prefix(rows, prefix_multiple) if prefix_multiple else 0
  # Rows past n are empty: no tokens, no group.
  ids, mask, prefix = prompt_layout(rows, buckets, pad_id, n_prefix, b)
  groups = np.concatenate([groups, np.full(b - n, -1, np.int32)])
  return ids, mask, groups, prefix
