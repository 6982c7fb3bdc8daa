"""Split-half recording and what is built on it: halves that sum to the whole, the stability of located sets
(split-half Jaccard against its chance value), and the placebo (a set located between two halves of one group).
"""

import os

import numpy as np
import pytest

from tests import helpers, tiny_models
from valuejax.engine.record import (HALVES, Prompt, Recorder, half_group, half_stats, join_halves,
                                    split_halves)
from valuejax.errors import ValueJaxError


def _prompts(n=11):
  rng = np.random.default_rng(1)
  return [Prompt(" ".join(f"w{j}" for j in rng.integers(0, 80, size=3 + i % 4)), ["up", "down"][i % 2],
                 f"p{i}", chat=bool(i % 3)) for i in range(n)]


def test_split_is_seeded_per_group_and_balanced():
  prompts = _prompts()
  groups, group_of = split_halves(["up", "down"], prompts, seed=3)
  assert groups == ["up#a", "up#b", "down#a", "down#b"]
  assert set(group_of) == {p.id for p in prompts}
  for g, n in (("up", 6), ("down", 5)):
    a = sum(group_of[p.id] == half_group(g, "a") for p in prompts)
    b = sum(group_of[p.id] == half_group(g, "b") for p in prompts)
    assert (a, b) == ((n + 1) // 2, n // 2)
  # The same seed splits the same way, a group's split does not depend on the other groups.
  assert split_halves(["up", "down"], prompts, seed=3)[1] == group_of
  only_up = split_halves(["up"], [p for p in prompts if p.group == "up"], seed=3)[1]
  assert all(group_of[k] == v for k, v in only_up.items())
  assert any(split_halves(["up", "down"], prompts, seed=s)[1] != group_of for s in range(4, 8))


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_halves_sum_to_the_whole_recording():
  """Same prompts, same generated tokens; every count (tokens, items, per-neuron counts, histogram) is equal
  exactly, the float sums up to rounding."""
  model = tiny_models.tiny_model_object("llama")
  prompts = _prompts()
  whole = Recorder(model, groups=["up", "down"], batch_size=4, max_new_tokens=5, hist=True,
                   hist_bins="compact").run(prompts, progress=False)
  groups, group_of = split_halves(["up", "down"], prompts, seed=0)
  split = Recorder(model, groups=groups, batch_size=4, max_new_tokens=5, hist=True, hist_bins="compact",
                   group_of=group_of).run(prompts, progress=False)
  assert split.texts == whole.texts and split.tokens == whole.tokens
  for part in ("prompt_stats", "gen_stats"):
    w, s = getattr(whole, part), getattr(split, part)
    joined = join_halves(s)
    assert joined.group_names == w.group_names
    for k in ("tokens", "items", "count", "hist"):
      np.testing.assert_array_equal(getattr(joined, k), getattr(w, k))
    # Each batch's sums are float32 on device (one group's tokens in one sum, or the same tokens in two), added
    # into float64 on the host: the two orders differ by float32 rounding of each batch's sum, about 2**-24
    # relative to the sum of |a| (or a**2) over the batch's tokens, summed over at most a few batches.
    for k in ("s1", "s2"):
      np.testing.assert_allclose(getattr(joined, k), getattr(w, k), rtol=1e-6, atol=1e-5)
    a, b = half_stats(s, "a"), half_stats(s, "b")
    assert a.group_names == b.group_names == ("up", "down")
    np.testing.assert_array_equal(a.items + b.items, w.items)
    assert (a.items > 0).all() and (b.items > 0).all()


@pytest.mark.slow  # compiles generation or scoring programs of its own: seconds each
def test_split_half_recording_resumes_exactly():
  """A checkpointed split-half state (through its arrays, as the record stage saves it) resumes to the same
  statistics and texts as an uninterrupted run."""
  from valuejax.engine.record import RecordState
  model = tiny_models.tiny_model_object("llama")
  prompts = _prompts(9)
  groups, group_of = split_halves(["up", "down"], prompts, seed=5)
  rec = Recorder(model, groups=groups, batch_size=2, max_new_tokens=4, group_of=group_of)
  saved = []
  full = rec.run(prompts, on_batch=lambda s: saved.append(RecordState.from_arrays(s.to_arrays())), progress=False)
  resumed = rec.run(prompts, state=saved[1], progress=False)
  assert resumed.gen_stats == full.gen_stats and resumed.prompt_stats == full.prompt_stats
  assert resumed.texts == full.texts and full.gen_stats.group_names == tuple(groups)


def test_half_stats_refuses_whole_statistics():
  from valuejax.engine.stats import NeuronStats
  with pytest.raises(ValueJaxError, match="not split-half"):
    half_stats(NeuronStats.zeros(["up", "down"], 2, 3), HALVES[0])


def test_jaccard_and_its_chance_value_by_hand():
  from valuejax.locate.stability import chance_jaccard, reading, set_overlaps, split_half_stability
  # 4 and 5 neurons among 20: 20 / 20 = 1 shared expected, union 4 + 5 - 1 = 8, so 1/8.
  assert chance_jaccard(4, 5, 20) == pytest.approx(1 / 8)
  assert chance_jaccard(20, 20, 20) == 1.0 and np.isnan(chance_jaccard(0, 0, 20))
  with pytest.raises(ValueJaxError):
    chance_jaccard(21, 1, 20)
  a = helpers.neuron_set("a", {"x": [0, 1, 2, 3], "y": [10, 11]})
  b = helpers.neuron_set("b", {"x": [2, 3, 4, 5, 6], "y": [12, 13]})
  st = split_half_stability({"s": a}, {"s": b}, factor=2.0)
  # x: {2, 3} shared of 7 in the union = 2/7; chance 1/8, ratio 16/7 > 2: stable. y: nothing shared.
  assert st["s"]["x"]["jaccard"] == pytest.approx(2 / 7) and st["s"]["x"]["chance"] == pytest.approx(1 / 8)
  assert st["s"]["x"]["ratio"] == pytest.approx(16 / 7) and st["s"]["x"]["reading"] == "stable"
  assert (st["s"]["x"]["a"], st["s"]["x"]["b"]) == (4, 5)
  assert st["s"]["y"]["jaccard"] == 0.0 and st["s"]["y"]["reading"] == "unstable"
  assert split_half_stability({"s": a}, {"s": b}, factor=3.0)["s"]["x"]["reading"] == "unstable"
  assert reading(float("nan"), float("nan"), 10.0) == "empty"
  ov = set_overlaps({"s": a, "t": b})
  assert ov["s: x"]["s: x"] == 1.0 and ov["s: x"]["t: x"] == pytest.approx(2 / 7) and ov["s: y"]["s: x"] == 0.0


@pytest.fixture(scope="module")
def counted_run(tiny_model, tmp_path_factory):
  """The smoke config teacher-forced: every prompt token counts, so no half of a group is empty (the tiny model
  often ends its answers at once, leaving a one-item half without generated tokens)."""
  wd = str(tmp_path_factory.mktemp("halves_run") / "w")
  helpers.ok(helpers.launch("launch.run", *helpers.smoke_args(tiny_model, wd), "--config.record.mode=teacher_forced"))
  return wd


@pytest.mark.slow
@pytest.mark.parametrize("which", ["smoke", "counted"])
def test_smoke_run_reports_stability_and_placebo(which, request):
  """Both runs write the stability numbers and the placebo; with empty halves (the generating smoke run) both
  say why they were not measured, with every half counted (teacher-forced) both are measured."""
  from valuejax.workdir import layout
  from valuejax.workdir.outputs import RECORD_HALVES
  wd = request.getfixturevalue("smoke_run").workdir if which == "smoke" else request.getfixturevalue("counted_run")
  assert os.path.exists(os.path.join(wd, RECORD_HALVES))
  summary = layout.read(wd, layout.LOCATE_SUMMARY)
  halves = helpers.arrays(os.path.join(wd, RECORD_HALVES))
  measurable = bool((halves["tokens"] > 0).all())
  assert measurable or which == "smoke"
  for name, s in summary.items():
    for g, info in s["groups"].items():
      st = info["stability"]
      assert info["overlap"][f"{name}: {g}"] == 1.0
      if not measurable:  # a half of a group generated no counted token: nothing to locate on, and said so
        assert st["reading"] == "not measured" and "total 0" in st["why"]
        continue
      assert st["reading"] in ("stable", "unstable", "empty")
      # The halves locate sets of the run's size (locate.size = 12 in the smoke flags).
      assert st["a"] == st["b"] == info["count"] == 12
      assert 0.0 <= st["jaccard"] <= 1.0
  report = open(os.path.join(wd, layout.REPORT), encoding="utf-8").read()
  assert "## Are the located sets stable?" in report and "| Jaccard a vs b |" in report
  # The placebo: its own pooled test, next to (not inside) the primary test.
  from valuejax.workdir.outputs import read_intervene
  results = read_intervene(wd)
  pl = results.placebo
  assert pl["group"] == "openness_to_change" and pl["unit"] == "placebo_openness_to_change"
  assert "## Can it say no? (placebo)" in report
  assert not any(u.unit == pl["unit"] for u in results.units)
  assert not any(e.startswith(pl["unit"]) for e in results.primary.edits)
  if measurable:
    from valuejax.workdir.results import PrimaryResult
    test = PrimaryResult.from_json(pl["primary"])
    assert test.pooled is not None and test.pooled.n_edits * len(results.units) == results.primary.pooled.n_edits
  else:
    assert "total 0" in pl["why"] and "**Not computable**" in report


@pytest.mark.slow
def test_placebo_is_planned_as_the_real_units(counted_run):
  """Same rule and sizes (neurons per side), same edit kind and parameters, same number and kind of controls,
  and the real pair's eval items."""
  from configs import valuelocate
  from valuejax import methods, metrics
  from valuejax.engine.stats import NeuronStats
  from valuejax.intervene import neuron_activity
  from valuejax.workdir import layout
  from valuejax.workdir.outputs import read_halves
  config = valuelocate.get_config("smoke")
  config.locate.size = "12"
  method = methods.METHODS.get("valuelocate")
  metric = metrics.METRICS.get(config.intervene.metric)()
  dataset = method.load_dataset(config)
  stats = NeuronStats.load(os.path.join(counted_run, layout.RECORD_STATS))
  activity = neuron_activity(stats.count, stats.s1, stats.tokens)
  real_plan = method.plan(config, dataset, method.locate(config, dataset, stats), metric, activity)
  unit, sets = method.placebo_plan(config, dataset, read_halves(counted_run), metric, activity)
  placebo, real = method.placebo_pairs(config, dataset)
  assert real.name == real_plan[0].name and placebo.plus == "openness_to_change#a"
  assert set(sets) == {placebo.name} and sets[placebo.name].names == (placebo.plus, placebo.minus)
  assert [len(sets[placebo.name][g]) for g in sets[placebo.name].names] == [12, 12]
  assert [it.item_id for it in unit.items] == [it.item_id for it in real_plan[0].items]
  for other in real_plan:
    assert [(e.params, e.alternative, type(e.edit), len(e.controls)) for e in unit.experiments] == \
        [(e.params, e.alternative, type(e.edit), len(e.controls)) for e in other.experiments]
    for e, r in zip(unit.experiments, other.experiments):
      assert int(np.sum(e.edit.edited_mask())) == int(np.sum(r.edit.edited_mask()))
      assert all(int(np.sum(c.edited_mask())) == int(np.sum(e.edit.edited_mask())) for c in e.controls)
  k = next(i for i, e in enumerate(unit.experiments) if e.controls)  # controls_at = "strongest": the last gamma
  assert unit.experiments[k].control_activity["controls"] == "mirrored"
  # The placebo's controls are seeded as one more unit after the real ones: not a real unit's replicates.
  first = lambda plan_unit: np.asarray(plan_unit.experiments[k].controls[0].edited_mask())
  assert all(not np.array_equal(first(unit), first(other)) for other in real_plan)
  # A primary family narrowed to other units, with more replicates for it: the placebo still gets them.
  config.intervene.primary_controls, config.intervene.primary_pairs = 3, (real_plan[1].name,)
  unit, _ = method.placebo_plan(config, dataset, read_halves(counted_run), metric, activity)
  assert [len(e.controls) for e in unit.experiments if e.controls and "part" not in e.params] == [3, 3]


def test_placebo_needs_halves():
  from configs import valuelocate
  from valuejax import methods, metrics
  config = valuelocate.get_config("smoke")
  config.record.halves = False
  method = methods.METHODS.get("valuelocate")
  with pytest.raises(ValueJaxError, match="records no halves"):
    method.preflight(config, metrics.METRICS.get(config.intervene.metric)())
  config.record.halves, config.intervene.placebo_pair = True, "nope"
  with pytest.raises(ValueJaxError, match="not a pair of this run"):
    method.preflight(config, metrics.METRICS.get(config.intervene.metric)())
