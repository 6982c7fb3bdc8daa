"""Likert answers without generation: the probabilities of the answer letters A..F after a PVQ portrait
prompt give an expected score 1..6, and item scores give a value profile centred on the respondent's mean.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.evaluate.scoring import encode, next_token_logprobs
from valuejax.intervene.edits import Edit

LETTERS = "ABCDEF"  # A = "Not like me at all" (1) .. F = "Very much like me" (6)


def letter_token_ids(tokenizer: Any, letters: str = LETTERS) -> list[tuple[int, ...]]:
  """For each letter, the ids of every single-token spelling of it, bare ("A") and after a space (" A").

  Which spelling comes next depends on how the prompt ends ("Answer:" vs "Answer: "), and BPE tokenizers give
  "A" and " A" different ids while SentencePiece ones may give the same; summing the probability over all
  single-token spellings reads the letter whichever way the model writes it. Spellings that take two tokens
  are skipped (their first token is often a bare space shared by every letter).
  """
  out = []
  for letter in letters:
    ids = []
    for spelling in (letter, " " + letter):
      tok = encode(tokenizer, spelling, False)
      if len(tok) == 1 and tok[0] not in ids:
        ids.append(tok[0])
    if not ids:
      raise ValueJaxError(f"the tokenizer has no single token for the answer letter {letter!r}",
                          fix="use answer labels that are single tokens (e.g. digits 1..6)")
    out.append(tuple(ids))
  flat = [i for ids in out for i in ids]
  if len(set(flat)) != len(flat):
    raise ValueJaxError("two answer letters share a token id", fix="use distinct answer labels")
  return out


@dataclasses.dataclass(frozen=True)
class LikertResult:
  probs: np.ndarray  # [N, K] renormalised over the K letters
  expected: np.ndarray  # [N] expected score in 1..K
  letter_mass: np.ndarray  # [N] probability the model puts on any answer letter before renormalising


def likert_scores(params: Any, cfg: Any, tokenizer: Any, prompts: Sequence[str], edit: Edit | None = None, *,
                  letters: str = LETTERS, batch_size: int = 8,
                  buckets: Sequence[int] | None = None) -> LikertResult:
  """Expected Likert score per prompt from the next-token probabilities of the answer letters.

  Check `letter_mass`: a low value means the prompt does not make the model answer with a letter, and the
  renormalised score then says little.
  """
  groups = letter_token_ids(tokenizer, letters)
  flat = [i for g in groups for i in g]
  lp = next_token_logprobs(params, cfg, tokenizer, prompts, flat, edit, batch_size=batch_size, buckets=buckets)
  p = np.exp(lp)
  per_letter = np.zeros((len(prompts), len(groups)))
  col = 0
  for k, g in enumerate(groups):
    per_letter[:, k] = p[:, col:col + len(g)].sum(1)
    col += len(g)
  mass = per_letter.sum(1)
  probs = per_letter / np.maximum(mass, 1e-300)[:, None]
  expected = probs @ np.arange(1, len(groups) + 1)
  return LikertResult(probs, expected, mass)


def pvq_profile(scores: Sequence[float] | np.ndarray, values: Sequence[str]) -> dict[str, float | np.ndarray]:
  """Centred value profile: per value, the mean of its items minus the mean over all items.

  `scores` is [N] (one respondent) or [R, N] (e.g. baseline and edits); `values[i]` names item i's value.
  Centring removes a respondent's general tendency to agree, as the PVQ's scoring instructions prescribe.
  """
  s = np.asarray(scores, np.float64)
  if s.shape[-1] != len(values):
    raise ValueJaxError(f"{s.shape[-1]} scores per respondent but {len(values)} value labels")
  overall = s.mean(-1)
  labels = np.asarray(values)
  out: dict[str, float | np.ndarray] = {}
  for v in dict.fromkeys(values):  # first-seen order
    centred = s[..., labels == v].mean(-1) - overall
    out[v] = float(centred) if s.ndim == 1 else centred
  return out


def higher_order_profile(profile: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
  """Averages a centred profile over groups of values (e.g. Schwartz's four higher-order dimensions)."""
  out = {}
  for name, members in groups.items():
    missing = [m for m in members if m not in profile]
    if missing:
      raise ValueJaxError(f"higher-order group {name!r} names values with no items: {missing}")
    out[name] = sum(np.asarray(profile[m]) for m in members) / len(members)
    if np.ndim(out[name]) == 0:
      out[name] = float(out[name])
  return out
