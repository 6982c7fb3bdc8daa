"""The decoding rule (`Sampling`) and how it picks the next token from a step's logits, inside the jit."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from valuejax.errors import ValueJaxError


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


def _argmax(logits):
  """jnp.argmax over the last axis (first index of the maximum) as two plain reductions, which XLA's CPU
  backend runs several times faster than argmax's paired value-index reduction over a vocabulary."""
  top = logits.max(axis=-1, keepdims=True)
  iota = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  return jnp.min(jnp.where(logits == top, iota, logits.shape[-1]), axis=-1).astype(jnp.int32)


def select(logits, presence, key, sampling: Sampling):
  """Next token from [B, V] float32 logits, in transformers' order: penalty, temperature, top-p.
  presence [B, V]: the tokens each row holds already (read by the repetition penalty)."""
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
