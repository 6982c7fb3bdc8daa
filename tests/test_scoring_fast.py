"""Many edits in one pass (continuation_logprobs_many, forced_choice_many) against the one-edit-at-a-time
path, on tiny random models: prompts of different lengths in one batch (left-padded in the cached path),
continuations of different lengths, edit stacks that pad the last vmapped chunk.
"""

import dataclasses

import numpy as np
import pytest

from valuejax import evaluate as ve
from valuejax import intervene as vi
from valuejax.errors import ValueJaxError

# Two programs (one edit at a time, many in one pass) sum each continuation's float32 log-probabilities in their
# own orders: each term (a logit minus a log-sum-exp over the vocabulary, after a few layers of float32 matmuls)
# is good to a few ulps of its size, and a sum of six of them, up to ~35 nats here, to a few ulps of the sum:
# RTOL is 8 ulps (2^-20), ATOL covers sums near 0.
ATOL = 1e-5
RTOL = 2.0 ** -20

# Word-level tokenizer: one token per word. Prompt lengths 2..9, continuation lengths 1..6.
PROMPTS = ["w1 w2 w3 w4 w5 w6 w7 w8 w9", "w10 w11", "w12 w13 w14 w15", "w3 w3 w3 w3 w3 w3 w3",
           "w20 w21 w22", "w30 w31 w32 w33 w34 w35"]
CONTS = [" w40 w41 w42", " w43", " w44 w45 w46 w47 w48 w49", " w50 w51", " w52 w53 w54 w55", " w56 w57 w58"]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request):
  from tests.tiny_models import tiny_tokenizer, valuejax_model
  _, cfg, params = valuejax_model(request.param, seed=1)
  return cfg, params, tiny_tokenizer()


def _sets(cfg, seed=0):
  shape = (cfg.num_layers, cfg.intermediate_size)
  rng = np.random.default_rng(seed)
  target = rng.random(shape) < 0.3
  opposite = ~target & (rng.random(shape) < 0.3)
  v = rng.random(shape).astype(np.float32) * 3
  delta = rng.random(shape).astype(np.float32)
  return shape, vi.SteerSet(target, v, delta), vi.SteerSet(opposite, v[::-1].copy(), delta[::-1].copy())


def _deterministic_edits(cfg):
  shape, plus, minus = _sets(cfg)
  enhance = vi.steering(plus, minus, 2.0, keep_prob=1.0, name="enhance")
  return [
      None,
      vi.baseline(shape),
      enhance,
      vi.steering(plus, minus, 0.5, mode="reverse", keep_prob=1.0, name="reverse"),
      *vi.control_edits(enhance, 2, seed=3),
      dataclasses.replace(vi.deactivate(plus.mask), scope="generated"),
      vi.deactivate(minus.mask),  # scope "all": edits the prompt too, so runs whole rows
      dataclasses.replace(enhance, scope="prompt"),
  ]


def _one_by_one(cfg, params, tok, edits, prompts=PROMPTS, conts=CONTS):
  return np.stack([ve.continuation_logprobs(params, cfg, tok, prompts, conts, e, batch_size=4).sum_logprob
                   for e in edits])


@pytest.mark.slow
def test_many_edits_equal_one_at_a_time(tiny):
  cfg, params, tok = tiny
  edits = _deterministic_edits(cfg)
  want = _one_by_one(cfg, params, tok, edits)
  # batch_size 4 over 6 rows: two batches, the second with a repeated filler row; chunk 3 pads with identities
  got = ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, edits, batch_size=4, chunk=3)
  assert len(got) == len(edits)
  np.testing.assert_allclose(np.stack([g.sum_logprob for g in got]), want, rtol=RTOL, atol=ATOL)
  for g in got:
    np.testing.assert_array_equal(g.num_tokens, [len(c.split()) for c in CONTS])
  # every edit moved something, so agreement is not the baseline matching itself
  assert (np.abs(want[2:] - want[0]).max(1) > 1e-3).all()
  # bucketed prompts and a single batch give the same numbers
  other = ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, edits, batch_size=8, chunk=8,
                                        buckets=(12, 24))
  np.testing.assert_allclose(np.stack([g.sum_logprob for g in other]), want, rtol=RTOL, atol=ATOL)
  # The decode layout (what a CPU run holds) scores the same: both the cached and the whole-row paths.
  from valuejax.models.forward import unstack_layers
  decode = ve.continuation_logprobs_many(unstack_layers(params, 2), cfg, tok, PROMPTS, CONTS, edits, batch_size=4,
                                         chunk=3)
  np.testing.assert_allclose(np.stack([g.sum_logprob for g in decode]), want, rtol=RTOL, atol=ATOL)


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_one_token_continuations_need_no_continuation_pass(tiny):
  cfg, params, tok = tiny
  edits = _deterministic_edits(cfg)
  conts = [" w60", " w61", " w62", " w63", " w64", " w65"]
  want = _one_by_one(cfg, params, tok, edits, conts=conts)
  got = ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, conts, edits, batch_size=4, chunk=4)
  np.testing.assert_allclose(np.stack([g.sum_logprob for g in got]), want, rtol=RTOL, atol=ATOL)
  # the first generated token is predicted from the unedited prompt: generated-scope edits cannot move it
  np.testing.assert_array_equal(got[2].sum_logprob, got[0].sum_logprob)


@pytest.mark.parametrize("scope", ["generated", "all"])
@pytest.mark.slow
def test_stochastic_edits(tiny, scope):
  """keep_prob < 1: every position draws the keep mask of the decode step that would feed its token (prompt
  step 0, continuation token j step j + 1), whatever the pass, batch or stack: the draws are reproducible,
  independent of the rest of the stack, and the same as the one-edit whole-row path's."""
  cfg, params, tok = tiny
  shape, plus, minus = _sets(cfg)
  sto = dataclasses.replace(vi.steering(plus, minus, 2.0, keep_prob=0.9, seed=5, name="stochastic"), scope=scope)
  sure = dataclasses.replace(vi.steering(plus, minus, 2.0, keep_prob=1.0, seed=5, name="sure"), scope=scope)
  run = lambda edits, chunk: ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, edits,
                                                           batch_size=4, chunk=chunk)
  a = run([sto], 1)[0].sum_logprob
  b = run([None, sure, *vi.control_edits(sure, 3, seed=1), sto], 2)[-1].sum_logprob
  np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)  # same draws wherever the edit sits in the stack
  np.testing.assert_array_equal(run([sto], 1)[0].sum_logprob, a)
  # the whole-row path (prompt and continuation in one pass, rows right-padded) draws the same masks
  np.testing.assert_allclose(_one_by_one(cfg, params, tok, [sto])[0], a, rtol=RTOL, atol=ATOL)
  assert np.abs(a - run([sure], 1)[0].sum_logprob).max() > 1e-4  # the draws do drop neurons
  reseeded = dataclasses.replace(sto, neurons=sto.neurons._replace(key=sure.neurons.key * 0 + 7))
  assert np.abs(a - run([reseeded], 1)[0].sum_logprob).max() > 1e-5


@pytest.mark.slow
def test_forced_choice_many_equals_forced_choice(tiny):
  cfg, params, tok = tiny
  items = [ve.ForcedChoiceItem("w1 w2 w3 w4 w5", "w6 w7 w8", "w9", "a"),
           ve.ForcedChoiceItem("w10 w11", "w12", "w13 w14 w15 w16", "b"),
           ve.ForcedChoiceItem("w17 w18 w19 w20 w21 w22 w23", "w24 w25", "w26 w27", "c")]
  edits = _deterministic_edits(cfg)[:4] + _deterministic_edits(cfg)[-2:]
  kw = dict(direct_template="{question} w90", lettered_template="{question} w91 {a} w92 {b} w93",
            letters=(" w94", " w95"), batch_size=4)
  got = ve.forced_choice_many(params, cfg, tok, items, edits, chunk=4, **kw)
  for e, g in zip(edits, got):
    want = ve.forced_choice(params, cfg, tok, items, e, **kw)
    for field in ("logp_aligned", "logp_opposing"):
      np.testing.assert_allclose(getattr(g, field), getattr(want, field), rtol=RTOL, atol=ATOL)
    for field in ("p_aligned", "p_aligned_norm", "p_aligned_lettered", "p_first_lettered"):
      np.testing.assert_allclose(getattr(g, field), getattr(want, field), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(g.n_aligned, want.n_aligned)
  plain = ve.forced_choice_many(params, cfg, tok, items, [None], lettered=False, **kw)
  assert plain[0].p_aligned_lettered is None
  np.testing.assert_allclose(plain[0].p_aligned_norm, got[0].p_aligned_norm, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_one_trace_for_any_number_of_edits(tiny):
  from valuejax.evaluate import scoring
  from valuejax.intervene.batch import _compiled
  cfg, params, tok = tiny
  edits = _deterministic_edits(cfg)[:6]  # all leave the prompt alone
  ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, edits[:3], batch_size=8, chunk=4)
  f = _compiled(scoring._continuation_under_edit)
  traced = f._cache_size()
  ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, edits, batch_size=8, chunk=4)
  assert f._cache_size() == traced


def test_errors(tiny):
  cfg, params, tok = tiny
  with pytest.raises(ValueJaxError, match="at least one edit"):
    ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, [])
  with pytest.raises(ValueJaxError, match="Edit"):
    ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, [vi.baseline((2, 3)).neurons])
  with pytest.raises(ValueJaxError, match="no tokens"):
    ve.continuation_logprobs_many(params, cfg, tok, ["w1"], [""], [None])
  with pytest.raises(ValueJaxError, match="different shapes"):
    ve.continuation_logprobs_many(params, cfg, tok, PROMPTS, CONTS, [None, vi.baseline((2, 3))])


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_one_prompt_for_many_rows(tiny):
  """Rows that share a prompt (a forced choice's two options, a language's texts after one prefix) run the
  prompt once per edit, also when its rows fill more than one batch."""
  cfg, params, tok = tiny
  edits = _deterministic_edits(cfg)
  prompts = ["w1 w2 w3"] * 5 + ["w10 w11", "w10 w11"]
  conts = CONTS[:5] + [" w70 w71", " w72"]
  want = _one_by_one(cfg, params, tok, edits, prompts=prompts, conts=conts)
  got = ve.continuation_logprobs_many(params, cfg, tok, prompts, conts, edits, batch_size=4, chunk=4)
  np.testing.assert_allclose(np.stack([g.sum_logprob for g in got]), want, rtol=RTOL, atol=ATOL)
