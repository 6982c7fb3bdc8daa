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
    outputs = workdir.write_sets(wd, sets, stability, _variations(config, wd, method, dataset, sets))
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


# The recording's variations beside the split halves: (summary key, the record stage's file, the config entry
# that records it, what the summary says of it).
VARIATIONS = (("budget_stability", "budget", "record.budget_tokens", "tokens"),
              ("pairing_stability", "pairing", "record.pairing_seed2", "seed"))


def _variations(config: mlc.ConfigDict, wd: Workdir, method, dataset, sets: dict) -> dict:
  """Every set located again, same rule and sizes, on the short token budget's statistics and on the second
  item pairing's (when the record stage recorded them), each against the run's own sets by Jaccard vs chance,
  read by locate.stable_factor: {summary key: {set: {group: comparison}}}, for every group's entry of the
  locate summary."""
  from valuejax.locate.stability import compare_located
  from valuejax.validate import get_key, has_key, require
  from valuejax.workdir import stability_records as sr
  found = {}
  for key, name, entry, label in VARIATIONS:
    if not (has_key(config, entry) and get_key(config, entry)):
      continue
    stats = sr.read_stats(wd.root, sr.RECORD_BUDGET if name == "budget" else sr.RECORD_PAIRING)
    if stats is None:
      raise ValueJaxError(f"{entry} is set but the record stage stored no {name} statistics", wd.path("record"),
                          f"rerun the record stage (--force) with {entry} set")
    require(config, ["locate.stable_factor"], f"the stability of located sets ({entry})")
    info = {label: get_key(config, entry)}
    try:
      other = method.locate(config, dataset, stats)
      found[key] = {n: {g: {**v, **info} for g, v in groups.items()}
                    for n, groups in compare_located(sets, other, config.locate.stable_factor, name).items()}
    except ValueJaxError as e:
      logging.warning("locate: the %s statistics could not be located on (%s); not measured", name, e.what)
      found[key] = {n: {g: {"reading": "not measured", "why": f"could not be located on: {e.what}", **info}
                        for g in ns.names} for n, ns in sets.items()}
  return found


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  with wd.lock():
    locate(config, wd, flags.FLAGS.force)


CLI = cli.Launcher(main)

if __name__ == "__main__":
  CLI.run()
