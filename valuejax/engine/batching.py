"""The one place for batching mechanics: which ids pad and end a sequence, which padded length a batch gets,
and how token rows are laid out in a [batch, length] array with its mask.

Generation, recording, scoring and the launchers all pad; doing it here keeps their shapes (and so their
compiled executables and results) consistent. Depends only on numpy, so it loads without jax.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from valuejax.errors import ValueJaxError

# Default length buckets (scoring's): powers of two from this one up, so that short prompts share one shape.
MIN_BUCKET = 16
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
  """The token put first on a prompt that has no chat template: <bos> for Gemma (which produces garbage
  without it), else none."""
  return cfg.bos_token_id if cfg.model_type.startswith("gemma") else None


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
