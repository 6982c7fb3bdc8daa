"""Tests for valuejax.evaluate: verdict parsing in English and Chinese, statistics on known inputs, records,
the opt-in judge against loopback stubs, and teacher-forced scoring on tiny random models.
"""

import dataclasses
import http.server
import json
import os
import socket
import threading

import numpy as np
import pytest

from valuejax import evaluate as ve
from valuejax.errors import ValueJaxError


# --- verdict parser ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, a, b, renorm", [
    ("I weigh both sides.\nOption A: 70% Option B: 30%", 70, 30, False),
    ("Option A: 62.5%\nOption B: 37.5%", 62.5, 37.5, False),
    ("A: 70%, B: 30%", 70, 30, False),
    ("**Option A**: 55% | **Option B**: 45%", 55, 45, False),
    ("option a: 20 % option b: 80 %", 20, 80, False),
    ("Option B: 10% Option A: 90%", 90, 10, False),  # either order
    ("Option A: 80% Option B: 40%", 200 / 3, 100 / 3, True),  # sums to 120: renormalised and flagged
    ("Option A: 33.3% Option B: 66.6%", 33.3, 66.6, False),  # rounding slack
    ("At first Option A: 10% Option B: 90%. On reflection, Option A: 65% Option B: 35%", 65, 35, False),
    ("选项A：70％ 选项B：30％", 70, 30, False),
    ("我的回答是：选项A: 40%，选项B: 60%。", 40, 60, False),
    ("综合考虑，选项A：25.5%；选项B：74.5%", 25.5, 74.5, False),
    ("A选项：30%，B选项：70%", 30, 70, False),
    ("选项Ａ：７０％ 选项Ｂ：３０％", 70, 30, False),  # full-width letters and digits
])
def test_parse_option_support(text, a, b, renorm):
  r = ve.parse_option_support(text)
  assert r.parsed, r
  assert r.a == pytest.approx(a) and r.b == pytest.approx(b) and r.renormalised == renorm
  assert r.aligned == pytest.approx(a)
  assert ve.parse_option_support(text, aligned="B").aligned == pytest.approx(b)


@pytest.mark.parametrize("text", [
    "", "   ", "I would choose A.", "There is a 70% chance that B is right.", "Option A: 100%",
    "选项A：70%", "Option A: 0% Option B: 0%", "Option A: seventy percent, Option B: thirty percent",
    "DATA: 70% and B: 30%",
])
def test_malformed_answers_are_unparsed_never_fifty_fifty(text):
  r = ve.parse_option_support(text)
  assert isinstance(r, ve.Unparsed) and not r.parsed and r.reason


def test_summarize_support_counts_unparsed():
  results = [ve.parse_option_support(t) for t in
             ["Option A: 80% Option B: 20%", "选项A：60% 选项B：60%", "no idea"]]
  s = ve.summarize_support(results)
  assert (s.n_parsed, s.n_unparsed, s.n_renormalised) == (2, 1, 1)
  assert s.mean_aligned == pytest.approx((80 + 50) / 2) and s.parse_rate == pytest.approx(2 / 3)
  assert ve.summarize_support([ve.Unparsed("x", "y")]).mean_aligned is None


def test_paired_support_drops_items_unparsed_on_either_side():
  base = ["Option A: 50% Option B: 50%", "选项A：40% 选项B：60%", "garbled", "Option A: 30% Option B: 70%"]
  edit = ["Option A: 80% Option B: 20%", "选项A：70% 选项B：30%", "Option A: 90% Option B: 10%", "I refuse"]
  p = ve.paired_support(base, edit)
  np.testing.assert_array_equal(p.items, [0, 1])
  np.testing.assert_allclose(p.shift, [30, 30])
  assert p.n_dropped == 2
  per_item = ve.paired_support(base[:2], edit[:2], aligned=["A", "B"])
  np.testing.assert_allclose(per_item.shift, [30, -30])
  with pytest.raises(ValueJaxError, match="same items"):
    ve.paired_support(base, edit[:2])


# --- statistics -------------------------------------------------------------------------------------------

def test_paired_differences_and_shape_check():
  np.testing.assert_allclose(ve.paired_differences([3, 2, 1], [1, 1, 1]), [2, 1, 0])
  with pytest.raises(ValueJaxError, match="same items"):
    ve.paired_differences([1, 2], [1, 2, 3])


def test_bootstrap_ci_known_inputs():
  assert ve.bootstrap_ci([2.0] * 10) == (2.0, 2.0)
  x = np.random.default_rng(0).normal(1.0, 1.0, 400)
  lo, hi = ve.bootstrap_ci(x, seed=3)
  assert (lo, hi) == ve.bootstrap_ci(x, seed=3)  # seeded
  se = x.std() / np.sqrt(x.size)
  assert lo < x.mean() < hi
  assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)  # matches the normal approximation
  lo90, hi90 = ve.bootstrap_ci(x, level=0.9, seed=3)
  assert lo < lo90 < hi90 < hi


def test_permutation_p_known_inputs():
  controls = [1, 2, 3, 4, 5, 6]
  assert ve.permutation_p(5, controls, "greater") == pytest.approx(3 / 7)
  assert ve.permutation_p(5, controls, "less") == pytest.approx(6 / 7)
  assert ve.permutation_p(5, controls, "two-sided") == pytest.approx(6 / 7)
  assert ve.permutation_p(10, controls, "greater") == pytest.approx(1 / 7)  # the floor 1 / (1 + R)
  assert ve.permutation_p(10, controls, "two-sided") == pytest.approx(2 / 7)
  assert ve.permutation_p(0, controls, "less") == pytest.approx(1 / 7)
  assert ve.permutation_p(-100, controls, "greater") == 1.0
  with pytest.raises(ValueJaxError, match="control"):
    ve.permutation_p(1.0, [])


def test_summary_reports_significance_honestly():
  rng = np.random.default_rng(1)
  base = rng.normal(0, 1, 50)
  strong = base + 1.0 + rng.normal(0, 0.1, 50)
  controls = base[None] + rng.normal(0, 0.1, (99, 50))
  s = ve.summarize_effect(strong, base, controls=controls, name="located")
  assert s.significant and s.p_value == pytest.approx(0.02) and s.n == 50 and s.n_controls == 99
  assert "significant at alpha 0.05" in s.describe() and "no significant" not in s.describe()
  # an edit no bigger than the random ones: the CI may exclude 0, yet it is not special
  like_controls = base + rng.normal(0, 0.1, 50)
  s = ve.summarize_effect(like_controls, base, controls=controls, name="located")
  assert not s.significant and "no significant effect" in s.describe()
  # without controls the CI decides
  s = ve.summarize_effect(base + rng.normal(0, 1, 50) * 0.01, base)
  assert s.p_value is None and s.significant == s.ci_excludes_zero
  flat = ve.summarize_effect(base + rng.normal(0, 1, 50), base, seed=0)
  assert flat.ci_low < 0 < flat.ci_high and "no significant effect" in flat.describe()
  few = ve.summarize_effect(strong, base, controls=controls[:5])
  assert not few.significant and "cannot go below" in few.describe()
  assert few.to_dict()["significant"] is False


# --- records and judge ------------------------------------------------------------------------------------

def test_records_roundtrip_and_bad_lines(tmp_path):
  recs = [ve.GenerationRecord("q1", "你会怎么做？", "我会帮助他。", "steer-enhance", 0, {"gamma": 1.0}),
          ve.GenerationRecord("q2", "What now?", "Help.", metadata={"judge": 4.5})]
  path = tmp_path / "out" / "answers.jsonl"
  ve.write_records(path, recs)
  assert ve.read_records(path) == recs
  assert "我会帮助他" in path.read_text(encoding="utf-8")  # readable, not escaped
  path.write_text('{"item_id": "q", "prompt": "p"}\n', encoding="utf-8")
  with pytest.raises(ValueJaxError, match=r"answers.jsonl:1"):
    ve.read_records(path)
  path.write_text('{"item_id": "q", "prompt": "p", "text": "t"}\nnot json\n', encoding="utf-8")
  with pytest.raises(ValueJaxError, match=r"answers.jsonl:2"):
    ve.read_records(path)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_judge_is_off_by_default_and_unreachable_is_a_clear_error():
  assert ve.make_judge(None) is None
  cfg = ve.make_judge(f"http://127.0.0.1:{_free_port()}/v1", timeout_s=5)
  assert cfg.endpoint.endswith("/v1/chat/completions")
  with pytest.raises(ValueJaxError, match="unreachable") as err:
    ve.judge_alignment(cfg, "q", "r", "benevolence")
  assert "without a judge" in str(err.value)


class _Stub(http.server.BaseHTTPRequestHandler):
  replies = ["4", "Score: 5", "I cannot rate this", "3"]
  seen: list = []

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    _Stub.seen.append((self.path, self.headers.get("Authorization"), body))
    if body["model"] == "missing":
      self.send_response(404)
      self.end_headers()
      self.wfile.write(b'{"error": "no such model"}')
      return
    out = {"choices": [{"index": i, "message": {"role": "assistant", "content": c}}
                       for i, c in enumerate(_Stub.replies[:body["n"]])]}
    data = json.dumps(out).encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


def test_judge_against_a_loopback_stub():
  server = http.server.HTTPServer(("127.0.0.1", 0), _Stub)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    cfg = ve.make_judge(url, model="judge-model", api_key="k", samples=4)
    score = ve.judge_alignment(cfg, "Should I help?", "Yes, always.", "benevolence", "caring for others")
    assert score.scores == (4, 5, 3) and score.n_unparsed == 1 and score.mean == pytest.approx(4.0)
    path, auth, body = _Stub.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["n"] == 4
    prompt = body["messages"][0]["content"]
    assert "benevolence" in prompt and "caring for others" in prompt and "Yes, always." in prompt
    many = ve.judge_many(dataclasses.replace(cfg, samples=1), ["a", "b"], ["x", "y"], "v")
    assert [m.mean for m in many] == [4.0, 4.0]
    with pytest.raises(ValueJaxError, match="HTTP 404"):
      ve.judge_alignment(dataclasses.replace(cfg, model="missing"), "q", "r", "v")
  finally:
    server.shutdown()
    server.server_close()


def test_parse_judge_score():
  assert ve.judge.parse_score("5") == 5
  assert ve.judge.parse_score("Score: 2/5") == 2
  assert ve.judge.parse_score("10") is None and ve.judge.parse_score("") is None


# --- PVQ profile ------------------------------------------------------------------------------------------

def test_pvq_profile_centres_on_the_respondents_mean():
  scores = [6, 5, 2, 1, 3, 4]  # overall mean 3.5
  values = ["benevolence", "benevolence", "power", "power", "security", "security"]
  prof = ve.pvq_profile(scores, values)
  assert prof == pytest.approx({"benevolence": 2.0, "power": -2.0, "security": 0.0}, abs=1e-6)
  two = ve.pvq_profile(np.array([scores, [s + 1 for s in scores]]), values)
  np.testing.assert_allclose(two["benevolence"], [2.0, 2.0])  # a uniform shift does not move the profile
  higher = ve.higher_order_profile(prof, {"self-transcendence": ["benevolence"],
                                          "other": ["power", "security"]})
  assert higher["self-transcendence"] == pytest.approx(2.0) and higher["other"] == pytest.approx(-1.0)
  with pytest.raises(ValueJaxError, match="labels"):
    ve.pvq_profile([1, 2], ["a"])


# --- teacher-forced scoring on a tiny random model --------------------------------------------------------

class CharTokenizer:
  """One token per printable ASCII character (ids 1..94, newline 95); BOS is id 1 when special tokens are added."""

  def encode(self, text, add_special_tokens=True):
    ids = [95 if ch == "\n" else ord(ch) - 31 for ch in text]
    assert all(1 <= i <= 95 for i in ids) and "~" not in text, text
    return ([1] if add_special_tokens else []) + ids


@pytest.fixture(scope="module")
def llama():
  from tests.tiny_models import valuejax_model
  _, cfg, params = valuejax_model("llama", seed=0)
  return cfg, params


def _direct_logprob(params, cfg, prompt_ids, cont_ids, edit=None, scope="all"):
  """Unpadded single-row reference: sum of log p over the continuation tokens."""
  import jax
  import jax.numpy as jnp
  from valuejax.models.forward import forward
  ids = jnp.asarray([prompt_ids + cont_ids], jnp.int32)
  gen = jnp.arange(ids.shape[1])[None] >= len(prompt_ids)
  mask = None if edit is None else edit.mask_for(jnp.ones(ids.shape, bool), gen)
  logits, _ = forward(params, cfg, ids, edit=None if edit is None else edit.neurons, edit_mask=mask)
  lp = jax.nn.log_softmax(logits[0, :-1], -1)
  tgt = np.asarray(ids[0, 1:])
  per = np.asarray(lp)[np.arange(len(tgt)), tgt]
  return per[len(prompt_ids) - 1:].sum()


PROMPTS = ["Should I help?", "A friend asks for money. What now", "Hi"]
CONTS = [" yes", " lend it, then ask nothing back", " no"]


@pytest.mark.slow
def test_continuation_logprobs_match_an_unpadded_reference(llama):
  cfg, params = llama
  tok = CharTokenizer()
  got = ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS, batch_size=2)
  want = [_direct_logprob(params, cfg, tok.encode(p), tok.encode(c, False)) for p, c in zip(PROMPTS, CONTS)]
  np.testing.assert_allclose(got.sum_logprob, want, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(got.num_tokens, [len(c) for c in CONTS])
  np.testing.assert_allclose(got.mean_logprob, got.sum_logprob / got.num_tokens)
  other = ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS, batch_size=3, buckets=(72, 100))
  np.testing.assert_allclose(other.sum_logprob, got.sum_logprob, rtol=1e-5, atol=1e-4)
  assert ve.bucket_length(5) == 16 and ve.bucket_length(17) == 32 and ve.bucket_length(40, (32, 64)) == 64
  with pytest.raises(ValueJaxError, match="largest bucket"):
    ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS, buckets=(8,))
  with pytest.raises(ValueJaxError, match="no tokens"):
    ve.continuation_logprobs(params, cfg, tok, ["x"], [""])


@pytest.mark.slow
def test_continuation_logprobs_under_edits(llama):
  from valuejax import intervene as vi
  cfg, params = llama
  tok = CharTokenizer()
  shape = (cfg.num_layers, cfg.intermediate_size)
  rng = np.random.default_rng(0)
  s = rng.random(shape) < 0.3
  plain = ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS).sum_logprob
  off = vi.deactivate(s)
  got = ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS, off).sum_logprob
  want = [_direct_logprob(params, cfg, tok.encode(p), tok.encode(c, False), off) for p, c in zip(PROMPTS, CONTS)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  assert np.abs(got - plain).min() > 1e-3
  base = ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS, vi.baseline(shape)).sum_logprob
  np.testing.assert_array_equal(base, plain)
  # scope "generated" edits the continuation's positions: like decoding, the first continuation token is
  # predicted from the unedited prompt, so a one-token continuation cannot move, a longer one does
  steer = vi.steering(vi.SteerSet(s, np.ones(shape, np.float32), np.ones(shape, np.float32)), ~s, 2.0,
                      keep_prob=1.0)
  gen = ve.continuation_logprobs(params, cfg, tok, PROMPTS, CONTS, steer).sum_logprob
  want = [_direct_logprob(params, cfg, tok.encode(p), tok.encode(c, False), steer) for p, c in zip(PROMPTS, CONTS)]
  np.testing.assert_allclose(gen, want, rtol=1e-5, atol=1e-4)
  single = ["y", "n", "?"]  # one token each
  one = ve.continuation_logprobs(params, cfg, tok, PROMPTS, single, steer).sum_logprob
  np.testing.assert_array_equal(one, ve.continuation_logprobs(params, cfg, tok, PROMPTS, single).sum_logprob)
  assert abs(gen[1] - plain[1]) > 1e-3


def test_forced_choice_is_consistent_and_swaps_cleanly(llama):
  cfg, params = llama
  tok = CharTokenizer()
  items = [ve.ForcedChoiceItem("Your friend is sad.", "comfort them", "ignore them", "i1"),
           ve.ForcedChoiceItem("You found a wallet.", "return it", "keep the cash", "i2")]
  r = ve.forced_choice(params, cfg, tok, items, batch_size=4)
  np.testing.assert_allclose(r.p_aligned, 1 / (1 + np.exp(r.logp_opposing - r.logp_aligned)), rtol=1e-9)
  np.testing.assert_allclose(r.p_aligned_norm, 1 / (1 + np.exp(r.logp_opposing / r.n_opposing
                                                              - r.logp_aligned / r.n_aligned)), rtol=1e-9)
  assert ((0 < r.p_aligned_lettered) & (r.p_aligned_lettered < 1)).all()
  swapped = [ve.ForcedChoiceItem(it.question, it.opposing, it.aligned) for it in items]
  s = ve.forced_choice(params, cfg, tok, swapped, batch_size=4)
  np.testing.assert_allclose(s.p_aligned, 1 - r.p_aligned, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s.p_aligned_lettered, 1 - r.p_aligned_lettered, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(s.p_first_lettered, r.p_first_lettered, rtol=1e-5, atol=1e-6)
  assert json.dumps(r.to_dict())
  plain = ve.forced_choice(params, cfg, tok, items, lettered=False)
  assert plain.p_aligned_lettered is None


class LetterTokenizer:
  """A vocabulary where "A" and " A" are different single tokens, and "F" has no spaced form."""
  vocab = {"A": 10, " A": 11, "B": 12, " B": 13, "C": 14, " C": 15, "D": 16, " D": 17, "E": 18, " E": 19,
           "F": 20, " ": 3}

  def encode(self, text, add_special_tokens=True):
    if text in self.vocab:
      return [self.vocab[text]]
    return [self.vocab[" "], self.vocab.get(text[1:], 99)] if text.startswith(" ") else [99, 98]


def test_letter_token_ids_take_every_single_token_spelling():
  ids = ve.letter_token_ids(LetterTokenizer())
  assert ids == [(10, 11), (12, 13), (14, 15), (16, 17), (18, 19), (20,)]
  assert ve.letter_token_ids(CharTokenizer()) == [(ord(c) - 31,) for c in "ABCDEF"]
  with pytest.raises(ValueJaxError, match="single token"):
    ve.letter_token_ids(LetterTokenizer(), letters="ABG")


@pytest.mark.slow
def test_likert_scores_and_next_token_logprobs(llama):
  import jax
  import jax.numpy as jnp
  from valuejax import intervene as vi
  from valuejax.models.forward import forward
  cfg, params = llama
  tok = CharTokenizer()
  prompts = ["He values caring for others. Like you? Answer:", "Power. Answer:"]
  ids = [ord(c) - 31 for c in "ABCDEF"]
  lp = ve.next_token_logprobs(params, cfg, tok, prompts, ids)
  for i, p in enumerate(prompts):
    logits, _ = forward(params, cfg, jnp.asarray([tok.encode(p)], jnp.int32))
    np.testing.assert_allclose(lp[i], np.asarray(jax.nn.log_softmax(logits[0, -1]))[ids], rtol=1e-5, atol=1e-5)
  r = ve.likert_scores(params, cfg, tok, prompts)
  p = np.exp(lp)
  np.testing.assert_allclose(r.letter_mass, p.sum(1), rtol=1e-6)
  np.testing.assert_allclose(r.probs.sum(1), 1.0)
  np.testing.assert_allclose(r.expected, (p / p.sum(1, keepdims=True)) @ np.arange(1, 7), rtol=1e-6)
  shape = (cfg.num_layers, cfg.intermediate_size)
  edited = ve.likert_scores(params, cfg, tok, prompts, vi.deactivate(np.random.default_rng(0).random(shape) < 0.3))
  assert np.abs(edited.expected - r.expected).max() > 1e-4
  steer = vi.steering(vi.SteerSet(np.ones(shape, bool), np.ones(shape, np.float32), np.ones(shape, np.float32)),
                      np.zeros(shape, bool), 1.0)
  with pytest.raises(ValueJaxError, match="generated tokens only"):
    ve.likert_scores(params, cfg, tok, prompts, steer)


@pytest.mark.real_model
def test_real_model_deactivation_moves_forced_choice_and_baseline_is_exact():
  import valuejax
  from valuejax import intervene as vi
  model = valuejax.load_model("smollm2-135m-instruct")
  cfg, params, tok = model.config, model.params, model.tokenizer
  items = [ve.ForcedChoiceItem("Your neighbour is ill and cannot buy food.", "bring them groceries",
                               "stay home and watch TV"),
           ve.ForcedChoiceItem("A cashier gives you too much change.", "give the extra money back",
                               "keep the extra money")]
  plain = ve.forced_choice(params, cfg, tok, items, batch_size=4)
  shape = (cfg.num_layers, cfg.intermediate_size)
  base = ve.forced_choice(params, cfg, tok, items, vi.baseline(shape), batch_size=4)
  for field in ("logp_aligned", "logp_opposing", "p_aligned", "p_aligned_lettered"):
    np.testing.assert_array_equal(getattr(base, field), getattr(plain, field), err_msg=field)
  # 1% of the neurons of every layer: small, yet zeroing them at every position must show
  small = vi.random_controls(np.arange(shape[1])[None].repeat(shape[0], 0) < shape[1] // 100, 1, seed=0)[0]
  off = ve.forced_choice(params, cfg, tok, items, vi.deactivate(small), batch_size=4)
  assert np.abs(off.logp_aligned - plain.logp_aligned).max() > 1e-3
  assert np.abs(off.p_aligned_lettered - plain.p_aligned_lettered).max() > 1e-4


def test_holm_adjustment_by_hand():
  from valuejax.evaluate import holm
  # Sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06, kept monotone), 0.5 (x1 = 0.5).
  np.testing.assert_allclose(holm([0.03, 0.01, 0.5, 0.02]), [0.06, 0.04, 0.5, 0.06])
  np.testing.assert_allclose(holm([0.05]), [0.05])
  assert holm([0.4, 0.5]).max() == 0.8


def test_pooled_test_folds_directions_and_shares_item_draws_within_a_stratum():
  from valuejax.evaluate import PooledEdit, permutation_p, pooled_test
  rng = np.random.default_rng(0)
  base = {"a": rng.normal(size=12), "b": rng.normal(size=9)}
  up, down = 0.3, -0.2
  edits = [PooledEdit(base["a"], base["a"] + up + 0.01 * rng.normal(size=12), rng.normal(0, 0.05, (19, 12)) + base["a"],
                      1.0, "a"),
           PooledEdit(base["b"], base["b"] + down, rng.normal(0, 0.05, (25, 9)) + base["b"], -1.0, "b")]
  t = pooled_test(edits, n_boot=2000, seed=3)
  want = np.mean([np.mean(edits[0].edited - base["a"]), -np.mean(edits[1].edited - base["b"])])
  assert t.mean == pytest.approx(want) and t.n_edits == 2
  # Replicate r is control r of every edit: as many replicates as the fewest controls.
  assert t.n_controls == 19
  ctrl = [np.mean([np.mean(edits[0].controls[r] - base["a"]), -np.mean(edits[1].controls[r] - base["b"])])
          for r in range(19)]
  np.testing.assert_allclose(t.control_effects, ctrl)
  assert t.p_value == permutation_p(t.mean, ctrl, "greater") == 0.05
  assert t.ci_low < t.mean < t.ci_high and t.significant
  assert pooled_test(edits, n_boot=2000, seed=3) == t
  # Against the prediction: same size, p at its largest, not significant.
  flipped = [dataclasses.replace(e, sign=-e.sign) for e in edits]
  f = pooled_test(flipped, n_boot=2000, seed=3)
  assert f.mean == pytest.approx(-t.mean) and f.p_value == 1.0 and not f.significant
  # Unscored items (NaN) leave the means, not the test.
  holed = dataclasses.replace(edits[0], edited=np.where(np.arange(12) == 4, np.nan, edits[0].edited))
  assert np.isfinite(pooled_test([holed, edits[1]], n_boot=500).mean)


def _intervene_config(**intervene):
  """The shared sections every run has (configs/common.py), with these intervene entries."""
  from configs import common
  config = common.base_config("valuelocate")
  config.intervene.update(intervene)
  return config


def test_primary_family_is_the_declared_edits_and_holm_runs_over_it_alone():
  from valuejax.methods import primary
  from valuejax.evaluate import holm

  from valuejax.workdir import EffectRecord, UnitResult

  def effect(edit, gamma, p, mean, controls=True):
    return EffectRecord("x", edit, "greater", {"gamma": gamma}, p_value=p, mean=mean, ci_low=mean - 0.1,
                        ci_high=mean + 0.1, scores=[0.6, 0.7], control_scores=[[0.5, 0.5]] * 3,
                        control_effects=[0.0] * 3 if controls else [])

  results = [UnitResult("x", baseline=[0.5, 0.5],
                        effects=[effect("e1", 2.0, 0.01, 0.2), effect("e2", 2.0, 0.02, 0.1),
                                 effect("e3", 0.5, 0.001, 0.3), effect("e4", 2.0, 0.001, 0.3, controls=False)])]
  config = _intervene_config(primary_test="each", primary_gamma=2.0, alpha=0.05, n_boot=200, n_controls=3)
  out = primary(config, results)
  assert out.edits == ("x, e1", "x, e2")  # not the other gamma, not the edit without controls
  np.testing.assert_allclose([r.adjusted_p for r in out.each], holm([0.01, 0.02]))
  assert [r.significant for r in out.each] == [True, True]
  assert [r.toward for r in out.each] == [True, True]
  assert "Holm" in out.declared and "exploratory" in out.declared
  config.intervene.primary_test = "pooled"
  pooled = primary(config, results).pooled
  assert pooled.n_edits == 2 and pooled.n_controls == 3 and pooled.mean == pytest.approx(0.15)
  config.intervene.primary_test = ""
  assert primary(config, results) is None


def test_primary_pairs_narrow_the_declared_family_and_its_controls():
  """intervene.primary_pairs, fixed before any score: only those units' edits form the primary family and get
  the primary controls; the other units' edits are exploratory, with intervene.n_controls each."""
  from valuejax.intervene import deactivate
  from valuejax.methods import declared_primary, primary
  from valuejax.methods.base import Experiment
  from valuejax.methods.design import with_controls

  from valuejax.workdir import EffectRecord, UnitResult

  def effect(pair, p, mean):
    return EffectRecord(pair, "e", "greater", p_value=p, mean=mean, ci_low=mean - 0.1, ci_high=mean + 0.1,
                        scores=[0.6, 0.7], control_scores=[[0.5, 0.5]] * 3, control_effects=[0.0] * 3)

  results = [UnitResult(name, baseline=[0.5, 0.5], effects=[effect(name, p, m)])
             for name, p, m in (("harmony", 0.01, 0.2), ("justice", 0.02, 0.1), ("freedom", 0.5, -0.3))]
  # Independent, layer-matched controls: this test is about how many each edit gets, not how they are drawn.
  config = _intervene_config(primary_test="each", alpha=0.05, n_boot=200, n_controls=2, primary_controls=5,
                             primary_pairs=("harmony", "justice"), control_seed=0, controls_at="all",
                             controls="independent", control_match="layer")
  out = primary(config, results)
  assert out.edits == ("harmony, e", "justice, e")
  assert "of harmony, justice" in declared_primary(config)
  mask = np.zeros((2, 8), bool)
  mask[0, :2] = True
  exps = [Experiment(name, deactivate(mask), "less", {}, []) for name in ("harmony", "freedom")]
  with_controls(config, exps)
  assert [len(e.controls) for e in exps] == [5, 2]


def test_primary_pairs_must_name_units_of_the_run_before_anything_loads():
  import importlib.util
  from valuejax import methods, metrics
  spec = importlib.util.spec_from_file_location("ve", os.path.join(os.path.dirname(__file__), "..", "configs",
                                                                   "valueexploration.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.intervene.primary_pairs = ("harmony", "nonsense")
  method, metric = methods.METHODS.get(config.method), metrics.METRICS.get(config.intervene.metric)()
  with pytest.raises(ValueJaxError, match="primary_pairs names nonsense"):
    method.preflight(config, metric)
  config.intervene.primary_pairs = ("harmony",)
  method.preflight(config, metric)
