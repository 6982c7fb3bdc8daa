"""Registries: a config name selects exactly one method, locator rule, edit kind or metric; an unknown name is
a clear error listing the registered ones; and a user's own objects, defined here (outside valuejax), run
through the launchers by `module:name` without any change to valuejax.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.helpers import launch as _launch, ok as _ok, smoke_args as _smoke_args
from valuejax.errors import ValueJaxError
from valuejax.methods import EDITS, METHODS, RULES, Experiment, Pair
from valuejax.methods.valuelocate import ValueLocate
from valuejax.metrics import METRICS, Metric, Scored
from valuejax.registry import Registry


# -- a user's own method, rule, edit kind and metric ------------------------------------------------------

class FirstPairOnly(ValueLocate):
  """ValueLocate on its first opposing pair only."""
  name = "first_pair_only"

  def pairs(self, config, dataset):
    return super().pairs(config, dataset)[:1]


def six_per_aspect(config, stats, pairs, prov):
  """ValueLocate's contrast, always 6 neurons per aspect."""
  from valuejax.locate import valuelocate_pair
  return {p.name: valuelocate_pair(stats.count, stats.tokens, stats.group_names, p.plus, p.minus,
                                   threshold=config.locate.threshold, size=6, provenance=prov) for p in pairs}


def deactivate_plus(config, sets, pair: Pair, metric):
  """Deactivate the plus aspect's neurons; the model should get worse at choosing its actions."""
  from valuejax.intervene import deactivate
  ns = sets[pair.name]
  return [Experiment(pair.name, deactivate(ns.mask(pair.plus), name="deactivate plus"), metric.worse,
                     {"group": pair.plus}, [])]


@METRICS.register("aligned_logprob")
class AlignedLogprob(Metric):
  name = "aligned_logprob"
  description = "log-probability per token of the value-aligned action after the question"
  effect_of = "the aligned action's likelihood"

  def items(self, config, dataset, method, unit):
    return method.choice_items(config, dataset, unit)

  def score(self, config, model, items, edits):
    from valuejax.evaluate import continuation_logprobs_many
    out = continuation_logprobs_many(model.params, model.config, model.tokenizer, [x.question for x in items],
                                     [" " + x.aligned for x in items], edits, batch_size=4)
    return Scored(np.stack([s.mean_logprob for s in out]))


# -- tests --------------------------------------------------------------------------------------------------

def test_unknown_names_list_the_registered_ones():
  with pytest.raises(ValueJaxError, match="(?s)unknown metric 'calm'.*forced_choice.*language_nll.*pvq"):
    METRICS.get("calm")
  with pytest.raises(ValueJaxError, match="(?s)intervene.kind.*deactivate, steering, value_exploration"):
    EDITS.get("amplify")
  with pytest.raises(ValueJaxError, match="valuelocate, vape"):
    RULES.get("top_k")
  with pytest.raises(ValueJaxError, match="languages, lape, valueexploration, valuelocate"):
    METHODS.get("probe")
  with pytest.raises(ValueJaxError, match="cannot import module 'no_such_lab.metrics'"):
    METRICS.get("no_such_lab.metrics:calm")
  with pytest.raises(ValueJaxError, match="defines no metric 'calm'"):
    METRICS.get("tests.test_registry:calm")


def test_each_name_selects_exactly_one_object():
  assert isinstance(METHODS.get("valuelocate"), ValueLocate)
  assert METHODS.get("tests.test_registry:FirstPairOnly").pairs is not None
  assert isinstance(METHODS.get("tests.test_registry:FirstPairOnly"), FirstPairOnly)  # a class becomes one method
  assert METRICS.get("tests.test_registry:aligned_logprob") is AlignedLogprob  # registered by the module itself
  assert RULES.get("tests.test_registry:six_per_aspect") is six_per_aspect
  r = Registry("widget", "x")
  r.register("a", len)
  with pytest.raises(ValueJaxError, match="two widgets are registered as 'a'"):
    r.register("a", sum)


def test_config_check_names_the_entry_and_the_registered_names():
  from configs import valuelocate
  from valuejax.validate import check_config
  config = valuelocate.get_config("smoke")
  config.intervene.metric = "calm"
  with pytest.raises(ValueJaxError, match="--config.intervene.metric: unknown metric 'calm'"):
    check_config(config)


@pytest.mark.slow
def test_a_users_method_rule_edit_and_metric_run_through_the_launchers(tiny_model, tmp_path):
  wd = str(tmp_path / "w")
  _ok(_launch("launch.run", *_smoke_args(tiny_model, wd), "--config.method=tests.test_registry:FirstPairOnly",
              "--config.locate.rule=tests.test_registry:six_per_aspect",
              "--config.intervene.kind=tests.test_registry:deactivate_plus",
              "--config.intervene.metric=tests.test_registry:aligned_logprob", "--config.intervene.n_controls=3",
              "--config.intervene.sequential_h=0",  # every replicate: this test counts them
              "--config.intervene.primary_test=each", "--config.intervene.primary_gamma=0"))
  sets = json.load(open(os.path.join(wd, "locate", "summary.json")))
  (name,) = sets  # the first pair only
  assert all(g["count"] == 6 for g in sets[name]["groups"].values())
  metrics = json.load(open(os.path.join(wd, "intervene", "metrics.json")))
  assert metrics["metric"] == "tests.test_registry:aligned_logprob"
  assert metrics["effect_of"] == "the aligned action's likelihood"
  (pair,) = metrics["units"]
  (e,) = pair["effects"]
  assert e["edit"] == "deactivate plus" and e["expected"] == "less" and e["n_neurons"] == 6
  assert e["n_controls"] == 3 and len(e["control_scores"]) == 3
  assert "the aligned action's likelihood" in open(os.path.join(wd, "report.md"), encoding="utf-8").read()


@pytest.mark.slow
def test_pvq_is_a_metric_module_and_the_report_plots_the_profiles(tiny_model, tmp_path):
  wd = str(tmp_path / "w")
  _ok(_launch("launch.run", *_smoke_args(tiny_model, wd), "--config.intervene.metric=pvq",
              "--config.locate.pairs=('openness_to_change:openness_to_change_reversed',)",
              "--config.intervene.n_controls=2"))
  metrics = json.load(open(os.path.join(wd, "intervene", "metrics.json")))
  (pair,) = metrics["units"]
  from valuejax import data as vdata
  ds = vdata.load_framework("schwartz")
  tax = ds.taxonomy
  mine = {v for a in ("openness_to_change", "conservation") for v in tax.aspect(a).values}
  want = [p.id for p in ds.portraits if p.value in mine and p.lang == "en"]
  assert pair["item_ids"] == want
  # The baseline's signed, centred scores average to the value's own aspect's values minus the opposing
  # aspect's (a value against its reversed descriptions is scored like its opposing pair), read from the
  # stored profile.
  prof = pair["detail"]["profile"]
  # Every value has as many portraits, so the centred value means sum to 0.
  assert set(prof) == set(tax.value_ids) and sum(prof.values()) == pytest.approx(0.0, abs=1e-9)
  sign = {v: (1 if v in tax.aspect("openness_to_change").values else -1) for v in mine}
  values = {p.id: p.value for p in ds.portraits}
  assert np.mean(pair["baseline"]) == pytest.approx(np.mean([sign[values[i]] * prof[values[i]] for i in want]))
  assert all(e["detail"]["profile"].keys() == prof.keys() for e in pair["effects"])
  report = open(os.path.join(wd, "report.md"), encoding="utf-8").read()
  assert "## Value profiles" in report and os.path.isfile(os.path.join(wd, "report", f"profile_{pair['unit']}.png"))


@pytest.mark.parametrize("name", ["valuelocate", "valueexploration", "lape", "languages", "study"])
def test_every_shipped_config_selects_one_registered_object_of_each_kind(name):
  import importlib
  config = importlib.import_module(f"configs.{name}").get_config()
  method = METHODS.get(config.method)
  assert method.name == config.method
  assert RULES.get(config.locate.rule) and EDITS.get(config.intervene.kind)
  metric = METRICS.get(config.intervene.metric)()
  assert metric.name == config.intervene.metric
  metric.check(config, method)  # the method offers the metric its items
