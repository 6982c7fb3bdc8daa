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
    dataset = method.load_dataset(config)
    sets = method.locate(config, dataset, NeuronStats.load(wd.path(layout.RECORD_STATS)))
    stability = _stability(config, wd, method, dataset) if config.record.halves else None
    outputs = workdir.write_sets(wd, sets, stability)
  wd.mark_done("locate", t.seconds, outputs)
  wd.add_timing("locate", t.seconds)
  logging.info("locate: %d neuron sets in %.1f s", len(sets), t.seconds)


def _stability(config: mlc.ConfigDict, wd: Workdir, method, dataset) -> dict:
  """Every set located again on each half of the recording items alone (same rule, same sizes), and the two
  halves' sets compared (valuejax.locate.stability), read by locate.stable_factor."""
  from valuejax.engine.record import half_stats
  from valuejax.locate.stability import split_half_stability
  from valuejax.validate import require
  from valuejax.workdir.outputs import read_halves
  require(config, ["locate.stable_factor"], "the stability of located sets (record.halves = True)")
  halves = read_halves(wd.root)
  if halves is None:
    raise ValueJaxError("record.halves = True but the record stage stored no halves", wd.path("record"),
                        "rerun the record stage (--force) with record.halves = True")
  try:
    a, b = (method.locate(config, dataset, half_stats(halves, h)) for h in ("a", "b"))
  except ValueJaxError as e:
    # A half too small to locate on (no counted tokens in a group): the stability is not measured, and the
    # summary says why instead of failing the stage whose own sets are fine.
    logging.warning("locate: the halves could not be located on (%s); stability not measured", e.what)
    return {"unmeasured": f"a half could not be located on: {e.what}"}
  return split_half_stability(a, b, config.locate.stable_factor)


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  with wd.lock():
    locate(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
