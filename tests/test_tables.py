"""Tables for notebooks: statistics, neuron sets and a run's intervene results as pandas DataFrames."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

pd = pytest.importorskip("pandas")


def test_neuron_stats_to_dataframe_has_one_row_per_group_layer_neuron():
  from valuejax.engine.stats import NeuronStats
  st = NeuronStats.zeros(("up", "down"), 2, 3)
  st.tokens[:] = (4, 8)
  st.count[1, 1, 2] = 6
  st.s1[1, 1, 2] = 2.0
  df = st.to_dataframe()
  assert len(df) == 2 * 2 * 3 and list(df.columns) == ["group", "layer", "neuron", "tokens", "count", "p", "mean",
                                                       "var"]
  row = df[(df.group == "down") & (df.layer == 1) & (df.neuron == 2)].iloc[0]
  assert row["count"] == 6 and row["p"] == pytest.approx(0.75) and row["mean"] == pytest.approx(0.25)
  assert df.groupby("group")["tokens"].first().to_dict() == {"down": 8, "up": 4}


def test_neuron_set_to_dataframe_keeps_the_scores():
  from valuejax.locate.neuron_set import GroupNeurons, NeuronSet
  mask = np.zeros((2, 5), bool)
  mask[0, 1] = mask[1, 4] = True
  ns = NeuronSet({"a": GroupNeurons.from_mask(mask, {"delta": np.arange(10.0).reshape(2, 5)})})
  df = ns.to_dataframe()
  assert df[["group", "layer", "neuron", "delta"]].values.tolist() == [["a", 0, 1, 1.0], ["a", 1, 4, 9.0]]


def test_run_results_tables(tmp_path):
  from valuejax.errors import ValueJaxError
  from valuejax.workdir import RunResults
  effect = {"pair": "x_vs_y", "edit": "enhance gamma=2", "mode": "enhance", "gamma": 2.0, "n_neurons": 12,
            "computable": True, "n": 2, "n_dropped": 0, "mean": 0.1, "ci_low": 0.0, "ci_high": 0.2,
            "control_mean": 0.0, "control_sd": 0.01, "n_controls": 1, "p_value": 0.5, "alternative": "greater",
            "significant": False, "scores": [0.6, 0.7], "control_scores": [[0.5, None]]}
  os.makedirs(tmp_path / "intervene")
  json.dump({"pairs": [{"pair": "x_vs_y", "item_ids": ["s1", "s2"], "baseline": [0.5, 0.6], "effects": [effect],
                        "not_computable": []}]}, open(tmp_path / "intervene" / "metrics.json", "w"))
  r = RunResults(str(tmp_path))
  effects = r.to_dataframe("effects")
  assert len(effects) == 1 and effects.loc[0, "mean"] == 0.1 and effects.loc[0, "gamma"] == 2.0
  scores = r.to_dataframe("scores")
  assert scores.groupby("role").size().to_dict() == {"baseline": 2, "control": 2, "located": 2}
  assert scores["score"].isna().sum() == 1  # the unparsed control answer stays missing, not 0
  with pytest.raises(ValueJaxError, match="no intervene results"):
    RunResults(str(tmp_path / "nothing"))


def _typed_results():
  """Results with every type filled: a sequential look, components, a detail, a pooled primary test, a grid."""
  from valuejax.workdir import (EffectRecord, GridPoint, InterveneResults, PooledResult, PrimaryResult,
                                SequentialLook, UnitResult)
  look = SequentialLook(0.25, 2, 9, 8, 2, "h reached", [0, 0, 1, 1, 1, 1, 1, 2], [], replicates_scored=9)
  effect = EffectRecord("x_vs_y", "enhance gamma=2", "greater", {"mode": "enhance", "gamma": 2.0, "size": "12"},
                        n_neurons=12, n=2, scores=[0.6, 0.7], control_scores=[[0.5, None]], control_n_dropped=[1],
                        controls_planned=9, controls_scored=9, components={"target_nll": 0.1},
                        control_components={"target_nll": [0.0]}, detail={"profile": {"a": 0.1, "b": -0.1}},
                        mean=0.1, ci_low=0.0, ci_high=0.2, p_value=0.25, n_controls=1, alternative="greater",
                        control_mean=0.0, significant=False, control_effects=[0.0], sequential=look,
                        control_activity={"controls": "mirrored", "fallbacks": 0}, describe="enhance: +0.1")
  missing = EffectRecord("x_vs_y", "reverse gamma=2", "less", {"mode": "reverse", "gamma": 2.0}, computable=False,
                         n=1, n_dropped=1, scores=[None, 0.4], describe="reverse gamma=2: not computable")
  unit = UnitResult("x_vs_y", ["s1", "s2"], [0.5, 0.6], 0.55, 2, [effect], [missing], 4, {"profile": {"a": 0.0}})
  pooled = PooledResult(0.1, 0.0, 0.2, 0.25, 1, 1, False, [0.0], sequential=look, replicates_scored=9, t_p=0.3,
                        excess=0.1, excess_low=-0.1, excess_high=0.3, ci_method="percentile")
  point = GridPoint("12", 2.0, "p", True, dataclasses.replace(pooled, control_effects=(), control_band=(-0.1, 0.1),
                                                              n_neurons=12), {"x_vs_y": pooled})
  return InterveneResults("valuelocate", "forced_choice", [unit], "P(aligned)", "value orientation", 0.05, 1,
                          PrimaryResult("pooled", "one pooled test", 0.05, ["x_vs_y, enhance gamma=2"], pooled),
                          [point])


def test_every_results_type_round_trips_through_json():
  from valuejax.workdir import EffectRecord, InterveneResults, PrimaryEdit, PrimaryResult
  results = _typed_results()
  unit = results.units[0]
  each = PrimaryResult("each", "per edit", 0.05, ["x_vs_y, enhance gamma=2"],
                       each=[PrimaryEdit("x_vs_y, enhance gamma=2", 0.1, 0.0, 0.2, 0.25, 0.5, False, True,
                                         unit.effects[0].sequential)])
  for x in (unit.effects[0].sequential, unit.effects[0], unit.not_computable[0], unit, results.primary.pooled,
            each.each[0], each, results.primary, results.grid[0], results):
    # through the text of a file, as metrics.json is written and read
    again = type(x).from_json(json.loads(json.dumps(x.to_json())))
    assert again == x, type(x).__name__
  assert InterveneResults.from_json(json.loads(json.dumps(results.to_json()))).to_json() == results.to_json()
  # keys a newer writer adds travel on unread, not dropped
  d = {**unit.effects[0].to_json(), "replicate_correlation": 0.4}
  assert EffectRecord.from_json(d).to_json() == d


def test_the_written_file_holds_units_and_a_schema_version(tmp_path):
  from valuejax.workdir import SCHEMA_VERSION, RunResults
  os.makedirs(tmp_path / "intervene")
  json.dump(_typed_results().to_json(), open(tmp_path / "intervene" / "metrics.json", "w"))
  d = json.load(open(tmp_path / "intervene" / "metrics.json"))
  assert d["schema_version"] == SCHEMA_VERSION and "pairs" not in d and d["units"][0]["unit"] == "x_vs_y"
  r = RunResults(str(tmp_path))
  assert r.results == _typed_results()
  effects = r.to_dataframe("effects")
  assert effects["edit"].tolist() == ["enhance gamma=2", "reverse gamma=2"]
  assert effects["computable"].tolist() == [True, False] and np.isnan(effects.loc[1, "mean"])


def test_an_unreadable_or_newer_metrics_file_is_refused_with_what_to_do(tmp_path):
  from valuejax.errors import ValueJaxError
  from valuejax.workdir import RunResults
  os.makedirs(tmp_path / "intervene")
  path = tmp_path / "intervene" / "metrics.json"
  json.dump({**_typed_results().to_json(), "schema_version": 99}, open(path, "w"))
  with pytest.raises(ValueJaxError, match=r"(?s)metrics.json: .*schema version 99.*--force"):
    RunResults(str(tmp_path))
  json.dump({"pairs": [{"pair": "x", "effects": [{"edit": "e", "scores": 3}]}]}, open(path, "w"))
  with pytest.raises(ValueJaxError,
                     match=r"(?s)metrics.json: .*unreadable layout.*rerun the intervene stage with --force"):
    RunResults(str(tmp_path))
