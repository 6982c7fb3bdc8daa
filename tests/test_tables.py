"""Tables for notebooks: statistics, neuron sets and a run's intervene results as pandas DataFrames."""

from __future__ import annotations

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
