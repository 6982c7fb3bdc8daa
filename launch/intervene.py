"""Intervene stage: edit the located neurons and measure the config's metric against the unedited model and
against random neuron sets with the same per-layer counts (the controls).

Writes intervene/metrics.json (effects with CIs and p-values, the primary test, the grid), metrics.csv
(every per-item score, long format), effects.csv (one row per edit) and examples.jsonl (answers generated
before and after editing).
"""

from __future__ import annotations

from typing import Any

from absl import flags
import ml_collections as mlc

from launch import cli, runtime
from valuejax import methods, metrics, workdir
from valuejax.methods.examples import examples as example_answers
from valuejax.metrics.effects import evaluate
from valuejax.errors import ValueJaxError
from valuejax.workdir import Timer, Workdir


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
    plan = method.plan(config, dataset, workdir.load_sets(wd), metric)
    model = runtime.load_model(config, "intervene", model)
    generated: list[Any] = []
    results = evaluate(config, model, plan, metric, generated)
    examples = example_answers(config, model, plan) + generated
    outputs = workdir.write_intervene(wd, {
        "primary": methods.primary(config, results), "grid": methods.grid_summary(config, results),
        "method": config.method, "metric": config.intervene.metric, "metric_description": metric.description,
        "effect_of": metric.effect_of, "alpha": config.intervene.alpha, "n_controls": config.intervene.n_controls,
        "pairs": results}, examples)
  wd.mark_done("intervene", t.seconds, outputs)
  wd.add_timing("intervene", t.seconds, evaluations=sum(r["evaluations"] for r in results))


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  runtime.setup(config)
  with wd.lock():
    intervene(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
