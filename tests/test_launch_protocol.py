"""intervene.metric = "choice_protocol": generated verdicts parsed to support for the aligned option, effects
over items parsed under both the baseline and the edit, and unparsed answers never scored.
"""

from __future__ import annotations

import json
import os
import types

import ml_collections as mlc
import numpy as np
import pytest

from valuejax import workdir
from valuejax.methods import Experiment, METHODS, UnitPlan
from valuejax.metrics.choice_protocol import ChoiceProtocol, ProtocolItem
from valuejax.metrics.effects import evaluate
from tests.helpers import launch as _launch, ok as _ok, smoke_args as _smoke_args


class _Tok:
  """Encodes a prompt to one token (its item index); decodes a generated token to a canned answer."""
  chat_template = None
  pad_token_id, eos_token_id = 0, None

  def __init__(self, items, answers):
    self.index = {x.question: i + 1 for i, x in enumerate(items)}
    self.answers = answers  # [(edit name, item index)] -> text

  def __call__(self, text, add_special_tokens=False):
    return {"input_ids": [self.index[text]]}

  def decode(self, ids, skip_special_tokens=True):
    return self.answers[tuple(ids)]


class _Gen:
  """Generator stand-in: the answer to item i under edit e is token (e, i); records the calls."""

  def __init__(self):
    self.calls = []

  def __call__(self, ids, mask, max_new, *, sampling, seed, edit=None, edit_scope="generated"):
    self.calls.append((edit, edit_scope, max_new, sampling.repetition_penalty, sampling.temperature))
    tokens = np.array([[edit or "baseline", int(r[0])] for r in ids], dtype=object)
    return types.SimpleNamespace(tokens=tokens, lengths=np.full(len(ids), 2))


class _Edit:
  def __init__(self, name):
    self.name = name

  def generate_kwargs(self):
    return {"edit": self.name, "edit_scope": "all"}

  def edited_mask(self):
    return np.ones((2, 3), bool)


def _config():
  """The shipped defaults of every run (configs/common.py), with the protocol metric on a small batch and budget."""
  from configs import common
  c = common.base_config("valuelocate")
  c.data = mlc.ConfigDict({"chat": False})  # a method's config file fills in the data section
  c.intervene.update({"metric": "choice_protocol", "batch_size": 2, "max_new_tokens": 7, "n_boot": 200,
                      "length_buckets": ()})
  return c


def _verdict(a, b):
  return f"I would think about it.\nOption A: {a}% Option B: {b}%"


def _run(answers_by_edit, aligned, controls=()):
  """_evaluate over one pair; answers_by_edit maps edit name -> one text per item."""
  items = [ProtocolItem(f"d{i}", f"q{i}", a) for i, a in enumerate(aligned)]
  answers = {(e, i + 1): t for e, texts in answers_by_edit.items() for i, t in enumerate(texts)}
  cfg_ids = types.SimpleNamespace(pad_token_id=0, eos_token_ids=(), model_type="llama", bos_token_id=None,
                                  prompt_bos_id=None)
  model = types.SimpleNamespace(tokenizer=_Tok(items, answers), config=cfg_ids, params=None)
  cfg = _config()
  gen = _Gen()
  exp = Experiment("v", _Edit("edit"), "greater", {"toward": "support"}, [_Edit(n) for n in controls])
  plan = [UnitPlan("v", items, [exp])]
  generated = []
  return evaluate(cfg, model, plan, ChoiceProtocol(generator=gen), generated)[0], generated, gen


def test_scores_are_aligned_support_and_effects_pair_parsed_items():
  # Items 0, 1, 3 parse under both; item 2 is unparsed under the edit, item 4 under the baseline.
  base = [_verdict(70, 30), _verdict(20, 80), _verdict(50, 50), _verdict(10, 90), "I cannot say."]
  edit = [_verdict(90, 10), _verdict(10, 90), "Option A: 60%", _verdict(40, 60), _verdict(30, 70)]
  ctrl = [_verdict(70, 30), _verdict(20, 80), _verdict(50, 50), "no verdict", _verdict(0, 100)]
  aligned = ["A", "B", "A", "A", "B"]
  r, generated, gen = _run({"baseline": base, "edit": edit, "c0": ctrl}, aligned, controls=["c0"])
  # Support for the aligned option, by hand: A of items 0, 2, 3 and B of items 1, 4.
  assert r.baseline == (0.7, 0.8, 0.5, 0.1, None)
  assert r.baseline_parsed == 4 and r.baseline_mean == pytest.approx((0.7 + 0.8 + 0.5 + 0.1) / 4)
  (e,) = r.effects
  assert e.scores == (0.9, 0.9, None, 0.4, 0.7)
  assert e.n == 3 and e.n_dropped == 2 and e.computable is True
  # Paired changes on items 0, 1, 3: +0.2, +0.1, +0.3.
  assert e.mean == pytest.approx(0.2)
  # The control parses items 0, 1, 2 with the baseline (3 and 4 dropped): no change at all.
  assert e.control_n_dropped == (2,) and e.control_effects == (pytest.approx(0.0),)
  assert e.p_value == pytest.approx(0.5) and e.n_controls == 1
  assert r.not_computable == ()
  # One call per edit and batch of 2 items: greedy, with the config's penalty, token budget and edit scope.
  assert len(gen.calls) == 3 * 3
  assert {c[1:] for c in gen.calls if c[0]} == {("all", 7, 1.1, 0.0)}
  assert {c[0] for c in gen.calls} == {None, "edit", "c0"}
  # Answers of the baseline and the located edit are kept for the examples file; the control's are not.
  assert [(g.edit, g.text) for g in generated] == [("baseline", t) for t in base] + [("edit", t) for t in edit]
  assert generated[4].metadata["support_aligned"] is None and generated[5].metadata["support_aligned"] == 0.9


def test_too_few_paired_items_is_not_computable_not_a_number():
  base = [_verdict(70, 30), "??", _verdict(40, 60)]
  edit = ["??", _verdict(60, 40), _verdict(45, 55)]  # only item 2 parses under both
  r, _, _ = _run({"baseline": base, "edit": edit, "c0": base}, ["A", "A", "A"], controls=["c0"])
  assert r.effects == ()
  (e,) = r.not_computable
  assert e.computable is False and e.n == 1 and e.n_dropped == 2
  assert e.mean is None and "not computable" in e.describe
  csv = workdir.outputs.effects_csv([r]).splitlines()
  row = dict(zip(csv[0].split(","), csv[1].split(",")))
  assert row["computable"] == "False" and row["mean"] == "" and row["n_dropped"] == "2"
  long = workdir.outputs.long_csv([r]).splitlines()
  assert long[2].endswith(",d1,")  # the unparsed baseline answer is an empty cell, not "None" or 0.5


def test_protocol_items_name_the_aligned_letter():
  from configs import valueexploration
  config = valueexploration.get_config("smoke=True")
  config.intervene.metric = "choice_protocol"
  method = METHODS.get(config.method)
  dataset = method.load_dataset(config)
  pair = method.pairs(config, dataset)[0]
  fc = method.choice_items(config, dataset, pair)
  items = ChoiceProtocol().items(config, dataset, method, pair)
  assert [x.item_id for x in items] == [x.item_id for x in fc]
  assert {x.aligned for x in items} == {"A", "B"}, "the smoke items should list options in both orders"
  for x, f in zip(items, fc):
    # The aligned action is listed under the letter the item says, the violating one under the other.
    other = "B" if x.aligned == "A" else "A"
    assert f"Option {x.aligned}: {f.aligned}" in x.question and f"Option {other}: {f.opposing}" in x.question


@pytest.mark.slow
def test_tiny_random_model_answers_are_unparsed_and_reported_as_such(tiny_model, tmp_path):
  wd = str(tmp_path / "w")
  _ok(_launch("launch.run", *_smoke_args(tiny_model, wd, "configs/valueexploration.py:smoke"),
              "--config.intervene.metric=choice_protocol", "--config.intervene.max_new_tokens=6"))
  metrics = json.load(open(os.path.join(wd, "intervene", "metrics.json")))
  assert metrics["metric"] == "choice_protocol"
  (p,) = metrics["units"]
  n = len(p["item_ids"])
  # A random word-level model never writes "Option A: x% Option B: y%": nothing is scored or invented.
  assert p["baseline"] == [None] * n and p["baseline_parsed"] == 0 and p["baseline_mean"] is None
  assert p["effects"] == [] and len(p["not_computable"]) == 2
  assert all(e["n"] == 0 and e["n_dropped"] == n for e in p["not_computable"])
  records = [json.loads(x) for x in open(os.path.join(wd, "intervene", "examples.jsonl"))]
  protocol = [r for r in records if r["metadata"].get("metric") == "choice_protocol"]
  assert len(protocol) == 3 * n and all(r["metadata"]["support_aligned"] is None for r in protocol)


def test_protocol_generator_runs_every_batch_as_batch_size_rows():
  """A short last batch of answers pads to intervene.batch_size instead of compiling a shape of its own."""
  from tests import tiny_models
  model = tiny_models.tiny_model_object("llama")
  generator = ChoiceProtocol().generator(_config(), model)
  assert generator.batch_buckets == (2,)
  ids = np.array([[5, 6, 7]], np.int32)  # one prompt, batch_size 2
  out = generator(ids, np.ones_like(ids), 3)
  assert out.tokens.shape == (1, 3) and [key[0] for key in generator._compiled] == [2]
