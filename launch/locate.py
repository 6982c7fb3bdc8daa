"""Locate stage: neuron sets from the recorded statistics by the config's locator rule, saved as npz + JSON
with per-layer plots.

ValueLocate contrasts each opposing pair; VAPE/LAPE rank neurons by the entropy of their activation
probability across groups (per value for ValueExploration, over all groups at once for LAPE).
"""

from __future__ import annotations

from absl import flags, logging
import ml_collections as mlc

from launch import cli
from valuejax import methods, workdir
from valuejax.errors import ValueJaxError
from valuejax.workdir import Timer, Workdir, layout


def locate(config: mlc.ConfigDict, wd: Workdir, force: bool = False) -> None:
  if wd.should_skip("locate", force):
    return
  with Timer() as t:
    from valuejax.engine.stats import NeuronStats
    if wd.done("record") is None:
      raise ValueJaxError("no statistics for this config in the workdir", wd.path("record"),
                          "run the record stage first (python -m launch.record with the same flags)")
    method = methods.METHODS.get(config.method)
    sets = method.locate(config, method.load_dataset(config), NeuronStats.load(wd.path(layout.RECORD_STATS)))
    outputs = workdir.write_sets(wd, sets)
  wd.mark_done("locate", t.seconds, outputs)
  wd.add_timing("locate", t.seconds)
  logging.info("locate: %d neuron sets in %.1f s", len(sets), t.seconds)


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  with wd.lock():
    locate(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
