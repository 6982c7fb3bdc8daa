"""The edit taken apart and the yardsticks of an effect: push-only and clamp-only steering, the dose-response
fit, flips and log-odds, the prompt yardstick, the neutral loss, and a smoke run that writes and reports them.
"""

import json
import os

import numpy as np
import pytest

from valuejax.metrics import effects


# -- flips and log-odds by hand ------------------------------------------------------------------------------

def test_flip_share_counts_items_crossing_one_half():
  base = np.array([0.4, 0.6, 0.7, 0.2, np.nan])
  edited = np.array([0.6, 0.4, 0.8, 0.1, 0.9])
  # Items 0 and 1 cross 0.5, items 2 and 3 stay on their side; item 4 is unscored at baseline.
  assert effects.flip_share(base, edited) == 2 / 4
  assert effects.flip_share(np.array([np.nan]), np.array([0.5])) is None


def test_log_odds_by_hand():
  p = np.array([0.5, 0.8, 0.2])
  np.testing.assert_allclose(effects.log_odds(p), [0.0, np.log(4.0), -np.log(4.0)], rtol=1e-12)
  # Clipped, not infinite, at 0 and 1.
  assert np.all(np.isfinite(effects.log_odds(np.array([0.0, 1.0]))))


def test_effect_yardsticks_by_hand():
  base = np.array([0.5, 0.8, 0.2, 0.4])
  edited = np.array([0.8, 0.8, 0.5, 0.6])
  ctrl = [np.array([0.5, 0.8, 0.2, 0.6]), np.array([0.5, 0.8, 0.2, 0.4])]
  y = effects.effect_yardsticks(base, edited, ctrl, n_boot=200)
  lo = lambda p: np.log(p / (1 - p))
  expected = np.mean([lo(0.8) - lo(0.5), 0.0, lo(0.5) - lo(0.2), lo(0.6) - lo(0.4)])
  assert y["logodds"] == pytest.approx(expected, rel=1e-9)
  assert y["logodds_ci"][0] <= y["logodds"] <= y["logodds_ci"][1]
  # Edited: item 0 goes from 0.5 (not above) to 0.8, item 3 from 0.4 to 0.6; item 2 reaches 0.5 (not above).
  assert y["flips"] == 2 / 4
  assert y["control_flips"] == pytest.approx((1 / 4 + 0) / 2)
  assert y["control_logodds"] == pytest.approx((lo(0.6) - lo(0.4)) / 4 / 2, rel=1e-9)


# -- the prompt yardstick ------------------------------------------------------------------------------------

def _config(model: str):
  from configs import valuelocate
  c = valuelocate.get_config("smoke")
  c.model = model
  c.intervene.n_boot = 200
  return c


def test_prompt_yardstick_prompt_and_score(tiny_model):
  import valuejax
  from valuejax.evaluate import ForcedChoiceItem, forced_choice_many
  from valuejax.metrics import METRICS
  from valuejax.metrics.forced_choice import direct_template, told_items, unit_sentences, value_sentence
  from valuejax.methods.base import Pair
  from valuejax.data import load_framework
  config = _config(tiny_model)
  model = valuejax.load_model(tiny_model)
  metric = METRICS.get("forced_choice")()
  tax = load_framework("data/schwartz").taxonomy
  pair = Pair("conservation_vs_conservation_reversed", "conservation", "conservation_reversed", "x")
  sentence = unit_sentences(load_framework("data/schwartz"), [pair])[pair.name]
  definition = tax.aspect("conservation").definition
  assert sentence == value_sentence("Conservation", definition)
  assert definition.rstrip(".")[1:] in sentence and "Conservation" in sentence
  items = [ForcedChoiceItem("what would you do at work", "keep the rule", "change the rule", "a"),
           ForcedChoiceItem("how do you plan your life", "stay safe", "try new way", "b")]
  told = told_items(items, sentence)
  assert all(t.question.startswith(sentence) and t.question.endswith(i.question) for t, i in zip(told, items))
  baseline = metric.score(config, model, items, [None]).values[0]
  y = effects.prompt_yardstick(config, model, metric, items, baseline, sentence)
  # The told scores are the forced choice computed directly on the told questions.
  direct = forced_choice_many(model.params, model.config, model.tokenizer, told, [None], lettered=False,
                              direct_template=direct_template(config, model.tokenizer))[0].p_aligned_norm
  # Float32 scoring of the same rows through the same path: equal up to float32 rounding.
  np.testing.assert_allclose(np.asarray(y["scores"], np.float64), direct, atol=1e-6)
  assert y["mean"] == pytest.approx(float(np.mean(direct - baseline)), abs=1e-6)
  assert y["n"] == 2 and y["sentence"] == sentence


def test_neutral_text_ships_and_is_plain():
  from configs import valuelocate
  texts = effects.read_neutral_text(valuelocate.get_config("smoke"))
  assert len(texts) == 20
  with open("data/neutral_text.jsonl", encoding="utf-8") as f:
    langs = [json.loads(line)["lang"] for line in f]
  assert sorted(set(langs)) == ["en", "zh"] and langs.count("en") == 10


# -- the smoke run -------------------------------------------------------------------------------------------

def test_smoke_run_writes_and_reports_yardsticks(smoke_run):
  from valuejax.workdir.outputs import read_intervene
  results = read_intervene(smoke_run.workdir)
  assert results.neutral_loss and results.neutral_loss["sentences"] == 20
  assert np.isfinite(results.neutral_loss["baseline"])
  for u in results.units:
    assert u.prompt_yardstick and u.prompt_yardstick["sentence"].startswith("You value ")
    for e in u.effects:
      y = e.yardsticks
      assert 0.0 <= y["flips"] <= 1.0 and np.isfinite(y["logodds"]) and np.isfinite(y["neutral_change"])
  with open(os.path.join(smoke_run.workdir, "report.md"), encoding="utf-8") as f:
    report = f.read()
  assert "## How big is each effect?" in report and "prompt yardstick" in report
