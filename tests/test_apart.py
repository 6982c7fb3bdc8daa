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

@pytest.mark.slow
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


# -- the edit taken apart ------------------------------------------------------------------------------------

def test_push_and_clamp_parts_reproduce_the_full_edit_at_the_activations():
  import jax.numpy as jnp
  from valuejax.intervene import SteerSet, steering
  from valuejax.models.edit import apply_edit
  rng = np.random.default_rng(0)
  shape = (2, 16)
  plus, minus = np.zeros(shape, bool), np.zeros(shape, bool)
  plus[:, :5], minus[:, 4:9] = True, True  # neuron 4 of each layer is in both sets
  v, delta = rng.uniform(0.2, 1.0, shape), rng.uniform(0.0, 0.5, shape)
  target, opposite = SteerSet(plus, v, delta), SteerSet(minus, v[::-1], delta[::-1])
  a = jnp.asarray(rng.normal(size=(3, 4, shape[1])), jnp.float32)
  steps = jnp.arange(4)
  for mode in ("enhance", "reverse"):
    edits = {p: steering(target, opposite, 2.0, mode=mode, keep_prob=0.7, seed=3, part=p)
             for p in ("full", "push", "clamp")}
    for layer in range(shape[0]):
      out = {p: np.asarray(apply_edit(a, jnp.asarray(layer), e.neurons, None, steps=steps)) for p, e in edits.items()}
      pushed, clamped = (plus, minus) if mode == "enhance" else (minus, plus)
      only_push, only_clamp = pushed[layer] & ~clamped[layer], clamped[layer] & ~pushed[layer]
      both, neither = pushed[layer] & clamped[layer], ~(pushed[layer] | clamped[layer])
      # Exact: the same float32 operations on the same values, the same keep draws (seed and steps).
      np.testing.assert_array_equal(out["push"][..., only_push], out["full"][..., only_push])
      np.testing.assert_array_equal(out["clamp"][..., only_clamp], out["full"][..., only_clamp])
      np.testing.assert_array_equal(out["push"][..., only_clamp], np.asarray(a)[..., only_clamp])
      np.testing.assert_array_equal(out["clamp"][..., only_push], np.asarray(a)[..., only_push])
      for p in out:
        np.testing.assert_array_equal(out[p][..., neither], np.asarray(a)[..., neither])
      # On the overlap the full edit is the clamp, then the push: min(a, 0) + (push(a) - a).
      np.testing.assert_allclose(out["full"][..., both], out["clamp"][..., both] + out["push"][..., both]
                                 - np.asarray(a)[..., both], atol=1e-6)
    assert edits["push"].metadata["part"] == "push" and "part" not in edits["full"].metadata


@pytest.mark.slow
def test_smoke_run_takes_the_primary_edits_apart(smoke_run):
  from valuejax.workdir.outputs import read_intervene
  results = read_intervene(smoke_run.workdir)
  d = results.decomposition
  assert set(d["parts"]) == {"full", "push", "clamp"}
  for part in ("push", "clamp"):
    assert len(d["parts"][part]["edits"]) == len(d["parts"]["full"]["edits"]) == 2 * len(results.units)
    assert d["parts"][part]["pooled"]["replicates"] >= 1
  # The parts stay outside the primary family.
  assert all("-only" not in name for name in results.primary.edits)
  assert len(results.primary.edits) == 2 * len(results.units)
  with open(os.path.join(smoke_run.workdir, "report.md"), encoding="utf-8") as f:
    assert "## The edit taken apart" in f.read()


# -- the dose-response fit -----------------------------------------------------------------------------------

def _dose_edits(a: float, b: float, gammas=(0.5, 1.0, 2.0, 4.0), n: int = 12):
  from valuejax.evaluate.stats import DoseEdit
  rng = np.random.default_rng(1)
  out = []
  for unit in ("u1", "u2"):
    base = rng.uniform(0.2, 0.8, n)
    # Item offsets that sum to 0: every edit's mean change is exactly a + b * gamma, yet a resample of items
    # moves it, by the same amount at every gamma (the draw is shared), so the bootstrap's b stays b.
    offset = rng.normal(0, 0.01, n)
    offset -= offset.mean()
    for g in gammas:
      for sign in (1.0, -1.0):
        out.append(DoseEdit(g, base, base + sign * (a + b * g + offset), sign, unit))
  return out


def test_dose_response_fit_recovers_a_and_b():
  from valuejax.evaluate.stats import dose_response_fit
  fit = dose_response_fit(_dose_edits(0.004, 0.002), n_boot=300)
  # Least squares on exact lines: equal up to float64 rounding of the means (~1e-17 on values ~1e-2).
  assert fit["a"] == pytest.approx(0.004, abs=1e-12) and fit["b"] == pytest.approx(0.002, abs=1e-12)
  # The shared draw moves every gamma's effect by the same amount: b's CI collapses onto b, a's holds a.
  assert fit["b_ci"][0] == pytest.approx(0.002, abs=1e-12) and fit["b_ci"][1] == pytest.approx(0.002, abs=1e-12)
  assert fit["a_ci"][0] < 0.004 < fit["a_ci"][1]
  np.testing.assert_allclose(fit["means"], [0.004 + 0.002 * g for g in (0.5, 1.0, 2.0, 4.0)], atol=1e-12)
  with pytest.raises(Exception, match="two gammas"):
    dose_response_fit([e for e in _dose_edits(0.0, 1.0) if e.gamma == 2.0])


def test_dose_response_from_results():
  from configs import study
  from valuejax.methods.design import dose_response
  from valuejax.workdir.results import EffectRecord, UnitResult
  config = study.get_config("smoke")
  config.intervene.n_boot = 200
  units = {}
  for e in _dose_edits(0.01, -0.003):
    units.setdefault(e.stratum, (e.baseline, []))[1].append(EffectRecord(
        e.stratum, f"g{e.gamma}", "greater" if e.sign > 0 else "less",
        {"gamma": e.gamma, "size": "0.005", "steer": "p", "mode": "enhance" if e.sign > 0 else "reverse"},
        scores=e.edited.tolist(), mean=float(np.mean(e.edited - e.baseline))))
  # A part of an edit taken apart and a v95 point stay out of the fit.
  extra = EffectRecord("u1", "push", "greater", {"gamma": 9.0, "size": "0.005", "steer": "p", "part": "push"},
                       scores=[1.0] * 12, mean=0.5)
  results = [UnitResult(u, baseline=b.tolist(), effects=effs + ([extra] if u == "u1" else []))
             for u, (b, effs) in units.items()]
  fits = dose_response(config, results)
  assert len(fits) == 1 and fits[0]["size"] == "0.005" and fits[0]["gammas"] == [0.5, 1.0, 2.0, 4.0]
  assert fits[0]["a"] == pytest.approx(0.01, abs=1e-12) and fits[0]["b"] == pytest.approx(-0.003, abs=1e-12)


@pytest.mark.slow
def test_smoke_run_fits_the_dose_response(smoke_run):
  from valuejax.workdir.outputs import read_intervene
  results = read_intervene(smoke_run.workdir)
  # configs/valuelocate.py runs gamma 0.5 and 2 at one size: one fit over both.
  (fit,) = results.dose_response
  assert fit["gammas"] == [0.5, 2.0] and fit["n_edits"] == 4 * len(results.units)
  assert fit["a_ci"][0] <= fit["a"] <= fit["a_ci"][1] and fit["b_ci"][0] <= fit["b"] <= fit["b_ci"][1]
  with open(os.path.join(smoke_run.workdir, "report.md"), encoding="utf-8") as f:
    assert "## Dose-response" in f.read()
