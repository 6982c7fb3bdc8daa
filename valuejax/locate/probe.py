"""Linear probes on located neurons: does a logistic regression on their per-item mean activations
predict the value label better than on random neurons with the same per-layer counts?
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from valuejax.errors import ValueJaxError
from valuejax.locate import checks
from valuejax.locate.neuron_set import GroupNeurons


class ProbeResult(NamedTuple):
  accuracy: float  # pooled held-out accuracy
  ci_low: float  # Wilson score interval at `confidence`
  ci_high: float
  correct: int
  total: int
  num_neurons: int


class ProbeComparison(NamedTuple):
  located: ProbeResult
  random: np.ndarray  # float64 [R], held-out accuracy of each random set
  p_value: float  # (1 + #{random >= located}) / (R + 1): the chance a random set does as well


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
  """Wilson score interval for a binomial proportion (sound near 0 and 1, unlike the normal one)."""
  if total <= 0:
    raise ValueJaxError("no predictions to score", "wilson_interval", "pass at least one item")
  z = _normal_quantile(0.5 + confidence / 2)
  p = correct / total
  denom = 1 + z * z / total
  centre = (p + z * z / (2 * total)) / denom
  half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
  return max(0.0, centre - half), min(1.0, centre + half)


def _normal_quantile(q: float) -> float:
  # Inverse normal CDF by bisection on erf: exact enough for interval widths, no scipy needed.
  lo, hi = -10.0, 10.0
  for _ in range(100):
    mid = (lo + hi) / 2
    if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
      lo = mid
    else:
      hi = mid
  return (lo + hi) / 2


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
  """Fold id [N] per item: each class is shuffled and dealt round-robin, so folds keep class balance."""
  rng = np.random.default_rng(seed)
  fold = np.empty(labels.shape[0], np.int32)
  for c in (0, 1):
    idx = np.flatnonzero(labels == c)
    fold[rng.permutation(idx)] = np.arange(idx.size) % folds
  return fold


@functools.partial(jax.jit, static_argnames=("folds", "steps", "learning_rate"))
def _cv_correct(x: jax.Array, y: jax.Array, fold: jax.Array, l2: jax.Array, *, folds: int, steps: int,
                learning_rate: float) -> jax.Array:
  """x [S, N, n] feature sets, y [N], fold [N] -> [S, N] bool: held-out prediction correct."""
  opt = optax.adam(learning_rate)

  def one_fold(xs, f):
    train = (fold != f).astype(xs.dtype)
    n_train = train.sum()
    mu = (xs * train[:, None]).sum(0) / n_train
    sd = jnp.sqrt((((xs - mu) ** 2) * train[:, None]).sum(0) / n_train) + 1e-6
    z = (xs - mu) / sd
    params = (jnp.zeros(xs.shape[1], xs.dtype), jnp.zeros((), xs.dtype))

    def loss(p):
      logits = z @ p[0] + p[1]
      nll = optax.sigmoid_binary_cross_entropy(logits, y)
      return (nll * train).sum() / n_train + l2 * jnp.sum(p[0] ** 2)

    def step(carry, _):
      p, s = carry
      g = jax.grad(loss)(p)
      upd, s = opt.update(g, s, p)
      return (optax.apply_updates(p, upd), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    pred = (z @ params[0] + params[1]) > 0
    return (pred == (y > 0.5)) & (fold == f)

  def one_set(xs):
    return jax.vmap(lambda f: one_fold(xs, f))(jnp.arange(folds)).any(axis=0)

  # lax.map keeps one feature set's folds in memory at a time (sets can number in the dozens).
  return jax.lax.map(one_set, x)


def _check(features, labels, neurons: GroupNeurons, folds: int, where: str):
  features = checks.as_array(features, "features", 3, where)
  checks.finite(features, "features", where)
  labels = checks.as_array(labels, "labels", 1, where)
  if labels.shape[0] != features.shape[0]:
    raise ValueJaxError(f"{labels.shape[0]} labels for {features.shape[0]} items", where,
                        "pass one label per item (row of features)")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueJaxError("labels must be 0 or 1", where, "encode the two classes as 0 and 1")
  if not isinstance(neurons, GroupNeurons):
    raise ValueJaxError(f"`neurons` is a {type(neurons).__name__}", where, "pass one group: ns[group]")
  if features.shape[1:] != (neurons.num_layers, neurons.num_neurons):
    raise ValueJaxError(f"features cover [L, F] = {list(features.shape[1:])}, the neurons "
                        f"[{neurons.num_layers}, {neurons.num_neurons}]", where,
                        "use features of the model the neurons were located on")
  if len(neurons) == 0:
    raise ValueJaxError("the neuron group is empty", where, "probe a group with at least one neuron")
  smallest = int(min((labels == 0).sum(), (labels == 1).sum()))
  if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2 or folds > smallest:
    raise ValueJaxError(f"`folds` = {folds!r} with {smallest} items in the smaller class", where,
                        "use 2 <= folds <= the size of the smaller class")
  return features, labels.astype(np.float32)


def _score(correct: np.ndarray, num_neurons: int, confidence: float) -> ProbeResult:
  c, t = int(correct.sum()), int(correct.size)
  lo, hi = wilson_interval(c, t, confidence)
  return ProbeResult(c / t, lo, hi, c, t, num_neurons)


def compare_to_random(features, labels, neurons: GroupNeurons, *, num_random: int = 20, seed: int = 0,
                      folds: int = 5, steps: int = 300, learning_rate: float = 0.05, l2: float = 1e-3,
                      confidence: float = 0.95) -> ProbeComparison:
  """Probe accuracy of `neurons` vs `num_random` random sets with its per-layer counts.

  `features` [N_items, L, F]: per-item mean activations; `labels` [N] in {0, 1}. Folds and random
  sets are both drawn from `seed`, so a run is reproducible.

  Protocol: stratified k-fold cross-validation (every item is held out exactly once); features are
  standardised with the training folds' mean and std; the probe is L2-regularised logistic regression
  trained full-batch with optax Adam for a fixed number of steps. Accuracy is pooled over the held-out
  predictions, with a Wilson score interval. The located set is compared with `num_random` seeded random
  sets of the same per-layer counts, trained and scored the same way on the same folds.
  """
  where = "compare_to_random"
  features, y = _check(features, labels, neurons, folds, where)
  if isinstance(num_random, bool) or not isinstance(num_random, int) or num_random < 0:
    raise ValueJaxError(f"`num_random` = {num_random!r}", where, "pass a non-negative int, e.g. 20")
  rng = np.random.default_rng(seed)
  sets = [neurons] + [neurons.random_like(rng) for _ in range(num_random)]
  x = np.stack([features[:, s.layer, s.index] for s in sets]).astype(np.float32)  # [S, N, n]
  fold = stratified_folds(y, folds, seed)
  correct = np.asarray(_cv_correct(jnp.asarray(x), jnp.asarray(y), jnp.asarray(fold),
                                   jnp.float32(l2), folds=folds, steps=int(steps),
                                   learning_rate=float(learning_rate)))
  located = _score(correct[0], len(neurons), confidence)
  rand = correct[1:].mean(axis=1).astype(np.float64)
  p = (1 + int((rand >= located.accuracy).sum())) / (num_random + 1)
  return ProbeComparison(located, rand, p)


def probe_accuracy(features, labels, neurons: GroupNeurons, *, seed: int = 0, folds: int = 5,
                   steps: int = 300, learning_rate: float = 0.05, l2: float = 1e-3,
                   confidence: float = 0.95) -> ProbeResult:
  """Held-out accuracy (k-fold, Wilson interval) of a linear probe on `neurons` alone."""
  return compare_to_random(features, labels, neurons, num_random=0, seed=seed, folds=folds, steps=steps,
                           learning_rate=learning_rate, l2=l2, confidence=confidence).located
