"""The pre-declared study (configs/study.py) end to end on a tiny model: one recording, one neuron set per
pair and size rule, every grid point evaluated with its controls, the primary point with more, the grid
table and figure in the report.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.helpers import launch as _launch, launch_in_process, ok as _ok, write_cvoice_release
from valuejax.methods import METHODS
from valuejax.workdir import read_intervene


@pytest.mark.slow
def test_study_grid_shares_one_recording_and_declares_its_primary_point(tiny_model, tmp_path):
  wd = str(tmp_path / "study")
  # Two of the four values (each against its reversed descriptions), to keep the test's size.
  two = "--config.locate.pairs=('openness_to_change:openness_to_change_reversed','conservation:conservation_reversed')"
  _ok(_launch("launch.run", "--config=configs/study.py:smoke,sizes=0.05+12,primary_size=12", f"--workdir={wd}",
              f"--config.model={tiny_model}", two))
  with open(os.path.join(wd, "locate", "summary.json"), encoding="utf-8") as f:
    sets = json.load(f)
  pairs = ["openness_to_change_vs_openness_to_change_reversed", "conservation_vs_conservation_reversed"]
  assert sorted(sets) == sorted(f"{p}@{s}" for p in pairs for s in ("0.05", "12"))
  for p in pairs:  # 5% of 3 x 48 neurons is 7.2 -> 7; an exact count of 12
    assert {g["count"] for g in sets[f"{p}@0.05"]["groups"].values()} == {7}
    assert {g["count"] for g in sets[f"{p}@12"]["groups"].values()} == {12}
  metrics = read_intervene(wd)
  effects = metrics.effects()
  assert len(effects) == 2 * 2 * 8  # pairs x modes x 2 sizes x 4 gammas
  point = lambda e: (e.params["size"], e.params["gamma"], e.params["steer"])
  primary = [e for e in effects if point(e) == ("12", 2.0, "p")]
  assert len(primary) == 4 and all(len(e.control_effects) == 3 for e in primary)
  assert all(len(e.control_effects) == 2 for e in effects if e not in primary)
  pt = metrics.primary
  assert pt.test == "pooled" and len(pt.edits) == 4 and pt.pooled.n_controls == 3
  assert "size=12,gamma=2,steer=p" in pt.declared
  grid = metrics.grid
  assert len(grid) == 8 and [g.primary for g in grid].count(True) == 1
  # The grid's pooled effect at a point is the mean of its edits' signed effects.
  for g in grid:
    at = [e for e in effects if point(e) == (g.size, g.gamma, g.steer)]
    signed = [e.mean if e.expected == "greater" else -e.mean for e in at]
    # a mean of a few floats in another order: equal up to a few ulps of values of order 1
    assert g.summary.mean == np.mean(signed).item() or abs(g.summary.mean - np.mean(signed)) < 1e-12
    assert set(g.units) == set(pairs)
  with open(os.path.join(wd, "report.md"), encoding="utf-8") as f:
    report = f.read()
  assert report.index("**Primary test**") < report.index("## Every grid point")
  assert os.path.isfile(os.path.join(wd, "report", "grid.png"))
  # One recording: record ran once, and a rerun with another grid keeps it and the neuron sets.
  again = _ok(_launch("launch.run", "--config=configs/study.py:smoke,sizes=0.05+12,primary_size=12",
                      f"--workdir={wd}", f"--config.model={tiny_model}", two, "--config.intervene.n_controls=1"))
  assert "record: skipped" in again.stderr and "locate: skipped" in again.stderr


def test_a_grid_point_of_an_unlocated_size_is_refused(tiny_model, tmp_path):
  proc = launch_in_process("launch.run", "--config=configs/study.py:smoke,sizes=0.05+12,primary_size=12",
                           f"--workdir={tmp_path}", f"--config.model={tiny_model}", "--config.locate.sizes=('0.05',)")
  assert proc.returncode == 2 and "not located: 12" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_valueexploration_study_declares_its_primary_values(tiny_model, tmp_path):
  """configs/study_ve.py: only the seeded primary values are recorded and scored; their two directions get the
  primary controls and form the pooled primary test."""
  from configs import study_ve
  assert study_ve.PRIMARY_VALUES == tuple(sorted(__import__("random").Random(study_ve.PRIMARY_SEED)
                                                 .sample(study_ve.VALUES, 2)))
  wd = str(tmp_path / "ve")
  _ok(_launch("launch.run", "--config=configs/study_ve.py:smoke", f"--workdir={wd}", f"--config.model={tiny_model}"))
  metrics = read_intervene(wd)
  by_pair = {p.unit: p.effects for p in metrics.units}
  assert sorted(by_pair) == sorted(study_ve.PRIMARY_VALUES)
  for v in study_ve.PRIMARY_VALUES:
    assert len(by_pair[v]) == 2 and all(len(e.control_effects) == 3 for e in by_pair[v])
  pt = metrics.primary
  assert pt.test == "pooled" and len(pt.edits) == 4 and pt.pooled.n_controls == 3
  assert all(e.split(",")[0] in study_ve.PRIMARY_VALUES for e in pt.edits)
  assert f"of {', '.join(study_ve.PRIMARY_VALUES)}" in pt.declared


def test_a_results_page_corrects_its_runs_primary_tests_as_one_family():
  from valuejax.report.results import family_line
  # Holm over three tests: 0.01 x 3 = 0.03, then max(0.03, 0.04 x 2) = 0.08, then max(0.08, 0.5) = 0.5
  line = family_line([("a", 0.04, True), ("b", 0.01, True), ("c", 0.5, False)], alpha=0.05)
  assert "a 0.04 -> 0.08; b 0.01 -> 0.03; c 0.5 -> 0.5" in line
  assert "1 of 3 survives (b)" in line
  assert "2 of 2 survive (a, b)" in family_line([("a", 0.01, True), ("b", 0.02, True)], alpha=0.05)
  # a small p with the effect off the predicted side does not survive (the runs' own rule); one run is no family
  assert "none of the 2 survives" in family_line([("a", 0.01, False), ("b", 0.01, False)], alpha=0.05)
  assert family_line([("a", 0.01, True)], alpha=0.05) == ""
  # each run's rule for the direction: a pooled CI above 0; a per-edit test's mean on its predicted side
  from valuejax.report.results import _primary_tests
  from valuejax.workdir import InterveneResults, PooledResult, PrimaryEdit, PrimaryResult
  run = lambda pt: InterveneResults("valuelocate", "forced_choice", primary=pt)
  pooled = run(PrimaryResult("pooled", "", pooled=PooledResult(0.01, -0.001, 0.02, 0.01)))
  assert _primary_tests("run", pooled) == [("run", 0.01, False)]
  each = run(PrimaryResult("each", "", each=[PrimaryEdit("reverse", -0.2, -0.3, -0.1, 0.01, 0.02, True, True),
                                              PrimaryEdit("old run", 0.2, 0.1, 0.3, 0.2, 0.4, False)]))
  assert _primary_tests("run", each) == [("run: reverse", 0.01, True), ("run: old run", 0.2, False)]


def test_a_results_page_sums_each_models_time_with_its_positive_controls(tmp_path):
  from valuejax.report.results import _totals, time_line
  run = tmp_path / "run"
  (run / "positive_control").mkdir(parents=True)
  (run / "timings.json").write_text(json.dumps({
      "record": {"seconds": 100.0, "skipped": False, "peak_rss_mib": 900.0},
      "intervene": {"seconds": 500.0, "skipped": False, "peak_rss_mib": 1200.0}}))
  (run / "positive_control" / "timings.json").write_text(json.dumps({
      "record": {"seconds": 20.0, "skipped": False, "peak_rss_mib": 1500.0},
      "locate": {"seconds": 0.5, "skipped": True, "peak_rss_mib": 3000.0}}))
  # every stage's seconds, the control's included; the peak only of stages that ran
  assert _totals(str(run)) == (620.5, 1500.0)
  line = time_line([("a", 600.0), ("b", 60.0), ("a", 1200.0)])
  assert "`a` 30 min (2 runs); `b` 1 min (1 run)." in line
  assert time_line([]) == ""


def test_runs_whose_folders_share_a_name_get_names_of_their_own_on_a_page():
  from valuejax.report.results import run_slugs
  assert run_slugs(["/r/study/model=a", "/r/study_ve/lang=en"]) == ["model=a", "lang=en"]
  # the positive controls of two models' studies: one parent folder tells them apart, and only them
  assert run_slugs(["/r/study/model=a/positive_control", "/r/study/model=b/positive_control", "/r/x/other"]) == [
      "model=a_positive_control", "model=b_positive_control", "other"]
  assert run_slugs(["/r/a/b/run", "/r/c/b/run"]) == ["a_b_run", "c_b_run"]
  # the same folder twice keeps its whole path and stops there
  assert run_slugs(["/r/run", "/r/run"]) == ["r_run", "r_run"]


def test_a_models_declared_cuts_come_with_its_config_argument():
  """MODEL_CUTS apply when the model is named as the config's argument, and an argument the command line sets
  itself wins over the cut."""
  from configs import common, study, study_ve
  fields = {"primary": "primary_controls", "parts": "decompose_controls", "eval_items": "eval_items"}
  for mod in (study, study_ve):
    default = mod.get_config()
    assert default.model == common.DEFAULT_MODEL and common.DEFAULT_MODEL not in mod.MODEL_CUTS
    for model, cuts in mod.MODEL_CUTS.items():
      c = mod.get_config(f"model={model}")
      assert c.model == model
      for key, value in cuts.items():
        assert c.intervene[fields[key]] == value != default.intervene[fields[key]], (mod.__name__, key)
      assert mod.get_config(f"model={model},primary=7").intervene.primary_controls == 7
  assert study_ve.get_config("lang=zh,model=gemma3-270m").data.lang == "zh"


def test_the_cvoice_study_runs_the_released_workbooks_under_the_study_design(tmp_path):
  """configs/study_cvoice.py: the study_ve design (the same primary values, edits, controls and pooled test) on
  the folder of released workbooks named as its argument (locate rows from its *-final.xlsx, the first 100 eval
  rows per value from its own test-zh-200.xlsx: data.cvoice_eval stays empty), in Chinese; without the folder
  it refuses with the argument to write."""
  from configs import study_cvoice, study_ve
  from valuejax.errors import ValueJaxError
  with pytest.raises(ValueJaxError, match="needs the folder of the released C-voice workbooks") as err:
    study_cvoice.get_config("model=gemma3-270m")
  assert "release=<folder" in err.value.fix
  c = study_cvoice.get_config(f"release={tmp_path}/,model=gemma3-270m")
  ve = study_ve.get_config("lang=zh,model=gemma3-270m,primary=19")
  assert c.model == "gemma3-270m" and c.data.lang == "zh" and c.data.value_ids == study_ve.PRIMARY_VALUES
  assert c.data.cvoice_activation == f"{tmp_path}/" and not c.data.cvoice_eval
  released = write_cvoice_release(tmp_path)  # the folder supplies both splits, each from one workbook
  loaded = METHODS.get("valueexploration").load_dataset(c).dilemmas
  assert [(d.id, d.split) for d in loaded] == list(zip(released, ("locate", "eval")))
  assert c.intervene.eval_items == study_cvoice.EVAL_ROWS == 100
  assert c.intervene.manipulation_items == c.data.items_per_group == 50
  assert (c.intervene.primary_controls, c.intervene.sequential_h, c.intervene.placebo) == (19, 3, False)
  for key in ("primary_test", "primary_pairs", "controls", "control_match", "factor", "regions", "metric"):
    assert c.intervene[key] == ve.intervene[key], key
  assert c.locate.to_dict() == ve.locate.to_dict() and c.positive_control == "" and not c.sweep.to_dict()


def test_a_results_page_says_how_to_rerun_each_run_or_that_it_cannot():
  from valuejax.report.results import reproduce_line
  assert reproduce_line({"command": "python -m launch.run --config=c.py --workdir=w", "git_commit": "abc"}) == (
      "Reproduce: `python -m launch.run --config=c.py --workdir=w` (code at git commit `abc`).")
  old = reproduce_line({"git_commit": "abc", "config": {}})
  assert "command was not recorded" in old and "config.json" in old and "`abc`" in old and "unknown" not in old


def test_the_results_launcher_answers_bad_input_in_one_paragraph(tmp_path):
  """launch.results runs behind the launchers' error boundary (its cli.Launcher takes no config)."""
  proc = launch_in_process("launch.results", f"--workdirs={tmp_path}/none", f"--out={tmp_path}/page.md")
  assert proc.returncode == 2 and "not a valuejax workdir" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "page.md").exists()
  proc = launch_in_process("launch.results", "stray")
  assert proc.returncode == 2 and "unexpected argument(s) 'stray': every input is a flag (see --help)" in proc.stderr
