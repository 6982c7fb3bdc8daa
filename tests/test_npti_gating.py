"""The ValueLocate/NPTI steering protocol at the level of activations, as the authors' hook applies it:
the clamp always applies at selected tokens, only the push is random; the push's keep mask is one draw per
neuron for a whole layer call (every row and position of a decode step), drawn anew per step and per
layer; a neuron in both sets is clamped, then pushed; teacher-forced scoring draws, for each continuation
token, the mask generation draws when it feeds that token.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import tiny_models
from valuejax import evaluate as ve
from valuejax import intervene as vi
from valuejax.engine.generate import Generator, _step_edit
from valuejax.evaluate.scoring import generated_steps
from valuejax.models.edit import keep_mask
from valuejax.models.forward import KVCache, forward, forward_cached


@pytest.fixture(scope="module")
def tiny():
  _, cfg, params = tiny_models.valuejax_model("llama", seed=3)
  return cfg, params


@functools.partial(jax.jit, static_argnums=1)
def _acts(params, cfg, ids, mask, neurons, where, steps):
  """Edited activations a' [L, B, T, F] and the logits [B, T, V]."""
  logits, acts = forward(params, cfg, ids, mask, capture="act", edit=neurons, edit_mask=where, edit_steps=steps)
  return acts, logits


# keep_mask as the engine calls it, inside a compiled program: called eagerly, its lax.cond would compile anew
# at every call (60 compiles in the keep-mask test below).
_keep_mask = jax.jit(keep_mask, static_argnums=2)


def _clean(params, cfg, ids):
  mask = jnp.ones(ids.shape, bool)
  return np.asarray(_acts(params, cfg, ids, mask, None, None, None)[0])


def _ids(b=3, t=10, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(3, 96, size=(b, t)), jnp.int32)


def _sets(shape, seed=0):
  """Disjoint scale / clamp / push sets and an overlap that is both clamped and pushed."""
  rng = np.random.default_rng(seed)
  pick = rng.random(shape)
  scaled, clamped, pushed = pick < 0.15, (pick >= 0.15) & (pick < 0.35), (pick >= 0.35) & (pick < 0.55)
  both = (pick >= 0.55) & (pick < 0.65)
  return scaled, clamped | both, pushed | both, both


@pytest.mark.parametrize("keep_prob", [0.0, 1e-6])
def test_clamp_and_scale_apply_at_every_selected_token_whatever_keep_prob(tiny, keep_prob):
  """keep_prob 0 (or tiny) turns every push off, never the clamp or the scale."""
  cfg, params = tiny
  shape = (cfg.num_layers, cfg.intermediate_size)
  scaled, clamped, pushed, both = _sets(shape)
  edit = vi.make_neuron_edit(shape, scale=np.where(scaled, 2.0, 1.0), add=np.where(pushed, 3.0, 0.0),
                             clamp_max=np.where(clamped, 0.0, np.inf), keep_prob=keep_prob, seed=1)
  ids = _ids()
  mask = jnp.ones(ids.shape, bool)
  where = jnp.arange(ids.shape[1])[None, :].repeat(ids.shape[0], 0) >= 4  # the "generated" positions
  a0 = _clean(params, cfg, ids)
  a1 = np.asarray(_acts(params, cfg, ids, mask, edit, where, None)[0])
  sel, w = np.asarray(where), np.asarray(where)[..., None]
  # Layer 0's inputs are those of the clean run, so its activations before the edit are a0[0].
  want = np.where(scaled[0], 2.0 * a0[0], a0[0])
  want = np.where(clamped[0], np.minimum(want, 0.0), want)
  # Every push dropped; the overlap keeps its clamp. One rounding at most on either side (a * 2 is exact).
  np.testing.assert_allclose(a1[0], np.where(w, want, a0[0]), rtol=1e-6, atol=0)
  assert (a1[0][..., clamped[0]][sel] <= 0).all() and (a0[0][..., clamped[0]][sel] > 0).any()
  # In every layer, every selected token has its clamped neurons at or below 0.
  for layer in range(cfg.num_layers):
    assert (a1[layer][..., clamped[layer]][sel] <= 0).all(), layer
  assert both.any() and (a1[0][..., both[0]][sel] <= 0).all()


def test_keep_mask_is_one_draw_per_layer_call_shared_by_rows_and_positions(tiny):
  """keep_prob 0.5, one push of +3 on every neuron of one layer at a time (the layers below are untouched, so
  their clean activations are the edited layer's inputs): in the call of decode step s, the pushed set is the
  same in every row and at every position, and it changes with the step and with the layer."""
  cfg, params = tiny
  L, F = cfg.num_layers, cfg.intermediate_size
  ids = _ids(b=4, t=6, seed=1)
  mask = jnp.ones(ids.shape, bool)
  a0 = _clean(params, cfg, ids)
  steps = range(1, 21)
  kept = np.zeros((L, len(steps), F), bool)
  for layer in range(L):
    add = np.zeros((L, F), np.float32)
    add[layer] = 3.0
    edit = vi.make_neuron_edit((L, F), add=add, keep_prob=0.5, seed=7)
    for i, s in enumerate(steps):
      # The neurons generation's layer call of step s pushes (_step_edit folds the step into the key).
      a1 = np.asarray(_acts(params, cfg, ids, mask, _step_edit(edit, s), mask, None)[0])[layer]
      pushed = a1 != a0[layer]  # +3 on an activation of order 1 always shows
      np.testing.assert_array_equal(pushed, np.broadcast_to(pushed[0, 0], pushed.shape))
      kept[layer, i] = pushed[0, 0]
      # Per-position step ids (teacher forcing's way) draw the same mask for that step.
      by_id = np.asarray(_acts(params, cfg, ids, mask, edit, mask, jnp.full(ids.shape[1], s, jnp.int32))[0])
      np.testing.assert_array_equal(by_id[layer], a1)
      np.testing.assert_array_equal(kept[layer, i], np.asarray(_keep_mask(edit, jnp.int32(layer), F, jnp.int32(s))))
  # 80 neurons of probability 0.5: two independent masks coincide with probability 2^-80.
  for layer in range(L):
    assert len({m.tobytes() for m in kept[layer]}) == len(steps), f"layer {layer} repeats a step's mask"
  for i in range(len(steps)):
    assert len({m.tobytes() for m in kept[:, i]}) == L, f"step {steps[i]} repeats a layer's mask"
  # 3 x 20 x 80 = 4800 Bernoulli(0.5) draws: sd of the fraction sqrt(0.25 / 4800) = 0.0072; 5 sd = 0.036
  # (a correct sampler fails this with probability 6e-7; the fixed seed makes it deterministic).
  assert abs(kept.mean() - 0.5) < 0.036, kept.mean()


def test_overlap_neuron_is_clamped_then_pushed(tiny):
  """steering(): a neuron in both sets ends at min(a, 0) + push (the push survives the clamp)."""
  cfg, params = tiny
  shape = (cfg.num_layers, cfg.intermediate_size)
  _, clamped, pushed, both = _sets(shape, seed=2)
  v = np.full(shape, 0.8, np.float32)
  delta = np.full(shape, 0.3, np.float32)
  edit = vi.steering(vi.SteerSet(pushed, v, delta), clamped, 2.0, keep_prob=1.0)
  assert edit.metadata["n_overlap"] == int(both.sum()) > 0
  ids = _ids(seed=4)
  mask = jnp.ones(ids.shape, bool)
  a0 = _clean(params, cfg, ids)
  a1 = np.asarray(_acts(params, cfg, ids, mask, edit.neurons, mask, None)[0])
  push = vi.steer_strength(0.8, 0.3, 2.0)
  # Layer 0 again: min(a0, 0) + push, one float32 rounding on each side.
  np.testing.assert_allclose(a1[0][..., both[0]], np.minimum(a0[0][..., both[0]], 0) + push, rtol=1e-6, atol=1e-7)
  only_clamped = clamped[0] & ~both[0]
  np.testing.assert_allclose(a1[0][..., only_clamped], np.minimum(a0[0][..., only_clamped], 0), rtol=1e-6, atol=0)
  # Where a >= 0 the clamp leaves 0 and the push alone remains (0 + push is exact): the push survives.
  positive = a0[0][..., both[0]] >= 0
  assert positive.any() and (a1[0][..., both[0]][positive] == push).all()


# --- generation and teacher forcing draw the same masks ----------------------------------------------------

class IdTokenizer:
  """Text is token ids written out ("1 17 40"): what generation produced can be scored exactly."""

  def encode(self, text, add_special_tokens=True):
    return [int(w) for w in text.split()]


def _steer_edit(cfg, keep_prob, seed=11):
  shape = (cfg.num_layers, cfg.intermediate_size)
  rng = np.random.default_rng(5)
  target = rng.random(shape) < 0.3
  opposite = rng.random(shape) < 0.2  # overlaps the target on about 6% of the neurons
  sets = vi.SteerSet(target, rng.random(shape).astype(np.float32) + 0.5, rng.random(shape).astype(np.float32))
  return vi.steering(sets, opposite, 3.0, keep_prob=keep_prob, seed=seed)


@functools.partial(jax.jit, static_argnums=(1, 8))
def _decode_call(params, cfg, tok, pos, cache, slot, kv_valid, edit, prefill):
  logits, acts, cache = forward_cached(params, cfg, tok, pos, cache, slot, kv_valid, capture="act", edit=edit,
                                       prefill=prefill)
  return jax.nn.log_softmax(logits.astype(jnp.float32), -1), acts, cache


def _decode_one_row(params, cfg, prompt, n, edit):
  """Greedy decoding of one prompt call by call, as the engine's loop makes them: the prompt's pass
  unedited (scope "generated"), then the call that feeds generated token k with decode step k + 1 folded
  into the edit's key. Returns the tokens [n], their log-probs [n] and the activations at the positions fed
  with tokens 0..n-2, [L, n - 1, F]."""
  p = len(prompt)
  cache = KVCache.zeros(cfg, 1, p + n, jnp.float32)
  kv_valid = jnp.zeros((1, p + n), bool).at[:, :p].set(True)
  lp, _, cache = _decode_call(params, cfg, jnp.asarray([prompt], jnp.int32), jnp.arange(p)[None], cache,
                              jnp.int32(0), kv_valid, None, True)
  tokens, lps, acts = [], [], []
  for k in range(n):
    tokens.append(int(jnp.argmax(lp[0])))
    lps.append(float(lp[0, tokens[-1]]))
    if k == n - 1:
      break
    kv_valid = kv_valid.at[:, p + k].set(True)
    lp, a, cache = _decode_call(params, cfg, jnp.asarray([[tokens[-1]]], jnp.int32), jnp.asarray([[p + k]]), cache,
                                jnp.int32(p + k), kv_valid, _step_edit(edit, k + 1), False)
    acts.append(np.asarray(a)[:, 0, 0])
  return np.asarray(tokens), np.asarray(lps), np.stack(acts, 1)


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_generation_draws_do_not_depend_on_the_batch(tiny):
  """One mask per layer and step, shared by the rows: each prompt's greedy answer in a batch is its answer
  alone (per-row draws would change with the row's place and the batch's size)."""
  cfg, params = tiny
  ids, mask = tiny_models.padded_batch(lengths=(5, 9, 7), total=9, left=(True, True, True), seed=8)
  edit = _steer_edit(cfg, 0.5)
  gen = Generator(params, cfg, pad_id=0, eos_ids=())
  together = gen(ids, mask, 10, **edit.generate_kwargs()).tokens
  for i in range(len(ids)):
    alone = gen(ids[i:i + 1], mask[i:i + 1], 10, **edit.generate_kwargs()).tokens
    np.testing.assert_array_equal(alone[0], together[i], err_msg=f"row {i}")
  always = gen(ids, mask, 10, **_steer_edit(cfg, 1.0).generate_kwargs()).tokens
  assert (always != together).any()  # the dropped pushes change the answers: the draws are being tested


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_teacher_forced_continuation_sees_what_generation_saw(tiny):
  """Greedy generation under a random steering edit, then its tokens scored teacher-forced under the same
  edit: the same edited activations and log-probs at every continuation token, in the whole-row path and in
  the cached many-edit path."""
  cfg, params = tiny
  n = 9
  ids, mask = tiny_models.padded_batch(lengths=(6, 11, 8), total=11, left=(True, True, True), seed=9)
  prompts = [list(row[m.astype(bool)]) for row, m in zip(ids, mask)]
  edit = _steer_edit(cfg, 0.5)
  out = Generator(params, cfg, pad_id=0, eos_ids=())(ids, mask, n, **edit.generate_kwargs())
  ref = [_decode_one_row(params, cfg, p, n, edit.neurons) for p in prompts]
  for i, (tokens, _, _) in enumerate(ref):  # the call-by-call loop is the engine's protocol
    np.testing.assert_array_equal(tokens, out.tokens[i], err_msg=f"row {i}")

  # Whole rows, right-padded, prompts of different lengths: each position draws its own decode step's mask.
  rows = [p + list(t) for p, (t, _, _) in zip(prompts, ref)]
  length = max(map(len, rows))
  full = np.zeros((len(rows), length), np.int32)
  real, gen_mask = np.zeros_like(full, bool), np.zeros_like(full, bool)
  for i, r in enumerate(rows):
    full[i, :len(r)], real[i, :len(r)] = r, True
    gen_mask[i, len(prompts[i]):len(r)] = True
  where = edit.mask_for(jnp.asarray(real), jnp.asarray(gen_mask))
  acts, logits = _acts(params, cfg, jnp.asarray(full), jnp.asarray(real), edit.neurons, where,
                       generated_steps(jnp.asarray(gen_mask)))
  acts, lp = np.asarray(acts), np.asarray(jax.nn.log_softmax(logits, -1))
  # Float32 reordering between a one-token cached call and a whole-row pass (the project's bound): the
  # decoder's longest additions, then the vocabulary's logsumexp.
  terms = tiny_models.forward_terms(cfg) + cfg.vocab_size
  for i, (tokens, lps, gen_acts) in enumerate(ref):
    p = len(prompts[i])
    forced = lp[i, np.arange(p - 1, p + n - 1), tokens]
    np.testing.assert_allclose(forced, lps, rtol=0, atol=tiny_models.reorder_atol(lps, terms), err_msg=f"row {i}")
    np.testing.assert_allclose(acts[:, i, p:p + n - 1], gen_acts, rtol=0,
                               atol=tiny_models.reorder_atol(gen_acts, terms), err_msg=f"row {i}")
    assert (np.argmax(lp[i, p - 1:p + n - 1], -1) == tokens).all()

  # The scoring functions, on text: sums over the continuation, cached path with its [T] step ids.
  tok = IdTokenizer()
  texts = [" ".join(map(str, p)) for p in prompts]
  conts = [" ".join(map(str, t)) for t, _, _ in ref]
  want = np.asarray([lps.sum() for _, lps, _ in ref])
  atol = tiny_models.reorder_atol(want, terms + n)
  many = ve.continuation_logprobs_many(params, cfg, tok, texts, conts, [edit, None], batch_size=4,
                                       add_special_tokens=False)
  np.testing.assert_allclose(many[0].sum_logprob, want, rtol=0, atol=atol)
  one = ve.continuation_logprobs(params, cfg, tok, texts, conts, edit, batch_size=4, add_special_tokens=False)
  np.testing.assert_allclose(one.sum_logprob, want, rtol=0, atol=atol)
  # The check can fail: other draws (another key), or every push kept, give other log-probs.
  reseeded = _steer_edit(cfg, 0.5, seed=12)
  always = _steer_edit(cfg, 1.0)
  for other in (reseeded, always):
    got = ve.continuation_logprobs_many(params, cfg, tok, texts, conts, [other], batch_size=4,
                                        add_special_tokens=False)[0].sum_logprob
    assert np.abs(got - want).max() > 100 * atol, other.name
