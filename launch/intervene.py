"""Intervene stage: edit the located neurons and measure the config's metric against the unedited model and
against random neuron sets with the same per-layer counts (the controls).

Writes intervene/metrics.json (effects with CIs and p-values, the primary test, the grid), metrics.csv
(every per-item score, long format), effects.csv (one row per edit) and examples.jsonl (answers generated
before and after editing).
"""

from __future__ import annotations

from typing import Any

from absl import flags, logging
import ml_collections as mlc

from launch import cli, runtime
from valuejax import methods, metrics, workdir
from valuejax.methods.design import decomposition, dose_response
from valuejax.methods.examples import examples as example_answers
from valuejax.metrics.effects import add_yardsticks, direction_yardsticks, evaluate
from valuejax.metrics.forced_choice import unit_sentences
from valuejax.errors import ValueJaxError
from valuejax.workdir import Timer, Workdir
from valuejax.workdir.outputs import MANIPULATION, read_manipulation, write_manipulation


def intervene(config: mlc.ConfigDict, wd: Workdir, force: bool = False, model=None) -> None:
  if wd.should_skip("intervene", force):
    return
  if wd.done("locate") is None:
    raise ValueJaxError("no neuron sets for this config in the workdir", wd.path("locate"),
                        "run the locate stage first (python -m launch.locate with the same flags)")
  with Timer() as t:
    method = methods.METHODS.get(config.method)
    metric = metrics.METRICS.get(config.intervene.metric)()
    dataset = method.load_dataset(config)
    stats = _recorded_stats(wd)  # read once: the controls' activity matching and the direction yardsticks
    activity = _activity(stats)
    sets = workdir.load_sets(wd)
    plan = method.plan(config, dataset, sets, metric, activity)
    placebo_plan = _placebo_plan(config, wd, method, dataset, metric, activity)
    _add_silent_share(plan + [p[0] for p in placebo_plan if p[0] is not None], activity)
    model = runtime.load_model(config, "intervene", model)
    checked = _manipulation_check(config, wd, method, dataset, model, force)
    generated: list[Any] = []
    results = evaluate(config, model, plan, metric, generated)
    units = method.units(config, dataset, sets)
    results, neutral = add_yardsticks(config, model, metric, plan, results, unit_sentences(dataset, units))
    results = direction_yardsticks(config, model, metric, plan, results, units, stats)
    placebo = _placebo(config, model, placebo_plan, metric)
    examples = example_answers(config, model, plan) + generated
    outputs = workdir.write_intervene(wd, workdir.InterveneResults(
        method=config.method, metric=config.intervene.metric, units=results,
        metric_description=metric.description, effect_of=metric.effect_of, alpha=config.intervene.alpha,
        n_controls=config.intervene.n_controls, primary=methods.primary(config, results),
        grid=methods.grid_summary(config, results), neutral_loss=neutral,
        decomposition=decomposition(config, results), dose_response=dose_response(config, results),
        placebo=placebo), examples) + checked
  wd.mark_done("intervene", t.seconds, outputs)
  wd.add_timing("intervene", t.seconds, evaluations=sum(r.evaluations for r in results))


def _placebo_plan(config: mlc.ConfigDict, wd: Workdir, method: Any, dataset: Any, metric: Any,
                  activity: dict[str, Any] | None) -> list[Any]:
  """[(the placebo unit's plan, the pair whose group it halves, the unit's name, why it could not be located)]
  when the config asks for the placebo (the plan None with a reason when a half is too small to locate on)."""
  if not (hasattr(method, "placebo_plan") and config.intervene.placebo):
    return []
  from valuejax.workdir.outputs import read_halves
  halves = read_halves(wd.root)
  if halves is None:
    raise ValueJaxError("intervene.placebo needs the halves of the recording, and the record stage stored none",
                        wd.path("record"), "rerun the record stage (--force) with record.halves = True")
  placebo, real = method.placebo_pairs(config, dataset)
  try:
    unit, _ = method.placebo_plan(config, dataset, halves, metric, activity)
  except ValueJaxError as e:
    # A half too small to locate on (a group half with no counted token): the placebo is reported as not
    # computable, with why, rather than failing the real units' stage.
    logging.warning("intervene: the placebo could not be located (%s)", e.what)
    return [(None, real, placebo.name, e.what)]
  return [(unit, real, placebo.name, None)]


def _placebo(config: mlc.ConfigDict, model: Any, placebo_plan: list[Any], metric: Any) -> dict[str, Any] | None:
  """The placebo unit scored and tested as the primary test is (same pooled test, replicates and sequential
  p), apart from the primary test's family: {"group", "pair", "unit", "primary", "units"}."""
  if not placebo_plan:
    return None
  from valuejax.methods.base import placebo_config
  unit, real, name, why = placebo_plan[0]
  if unit is None:
    return {"group": real.plus, "pair": real.name, "unit": name, "primary": None, "units": [], "why": why}
  # Planned, scored and tested with every unit in the primary family: a primary_pairs list names real units only.
  c = placebo_config(config)
  results = evaluate(c, model, [unit], metric, [])
  test = methods.primary(c, results)
  return {"group": real.plus, "pair": real.name, "unit": name,
          "primary": None if test is None else test.to_json(), "units": [r.to_json() for r in results]}


def _recorded_stats(wd: Workdir) -> Any | None:
  """The record stage's per-neuron statistics (record/stats.npz, a NeuronStats), or None when the run recorded
  none."""
  import os
  from valuejax.engine.stats import NeuronStats
  from valuejax.workdir import layout
  path = wd.path(layout.RECORD_STATS)
  return NeuronStats.load(path) if os.path.exists(path) else None


def _activity(stats: Any | None) -> dict[str, Any] | None:
  """The recorded activity of every neuron, pooled over all recorded groups ({"p": C / T, "mean": S1 / T}),
  that the controls are matched on (intervene.control_match); None when the run recorded no statistics."""
  from valuejax.intervene import neuron_activity
  return None if stats is None else neuron_activity(stats.count, stats.s1, stats.tokens)


# A neuron that fires on fewer than 1% of recorded tokens counts as silent in the report's control table:
# deactivating or clamping it changes almost nothing, so controls rich in such neurons are weak controls.
SILENT_P = 0.01


def _add_silent_share(plan: list[Any], activity: dict[str, Any] | None) -> None:
  """Adds to every experiment's `control_activity` the share of silent neurons (p < SILENT_P) among the
  located neurons and among its controls' neurons (pooled over replicates): {"silent": {"below": SILENT_P,
  "located": share, "control": share}}. Nothing without recorded activity."""
  import numpy as np
  if activity is None or "p" not in activity:
    return
  p = np.asarray(activity["p"], np.float64)
  for unit in plan:
    for e in unit.experiments:
      if not e.controls or not getattr(e, "control_activity", None):
        continue
      ctrl = np.concatenate([p[np.asarray(c.edited_mask(), bool)] for c in e.controls])
      located = p[np.asarray(e.edit.edited_mask(), bool)]
      share = lambda v: float(np.mean(v < SILENT_P)) if v.size else None
      e.control_activity = {**e.control_activity,
                            "silent": {"below": SILENT_P, "located": share(located), "control": share(ctrl)}}


def _manipulation_check(config: mlc.ConfigDict, wd: Workdir, method: Any, dataset: Any, model: Any, force: bool
                        ) -> list[str]:
  """The method's persona manipulation check, if it has one, before any edit is scored; an unfinished run's
  check for the same config is reused, not recomputed. Returns the files it lies in."""
  check = getattr(method, "manipulation_check", None)
  if check is None:
    return []
  if not force and read_manipulation(wd.root, config) is not None:
    logging.info("intervene: manipulation check reused from %s", wd.path(MANIPULATION))
    return [MANIPULATION]
  return write_manipulation(wd, check(config, dataset, model))


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  runtime.setup(config)
  with wd.lock():
    intervene(config, wd, flags.FLAGS.force)


CLI = cli.Launcher(main)

if __name__ == "__main__":
  CLI.run()
