"""Locate stage: neuron sets from the recorded statistics, saved as JSON + npz with per-layer plots.

ValueLocate contrasts each opposing pair; VAPE/LAPE rank neurons by the entropy of their activation
probability across groups (per value for ValueExploration, over all groups at once for LAPE).
"""

from __future__ import annotations

import os

from absl import flags, logging
import ml_collections as mlc
import numpy as np

from launch import cli, inputs, record as record_stage
from launch.workdir import Timer, Workdir
from valuejax import io as vio
from valuejax.errors import ValueJaxError

SUMMARY = os.path.join("locate", "summary.json")


def locate(config: mlc.ConfigDict, wd: Workdir, force: bool = False) -> None:
  if wd.should_skip("locate", force):
    return
  with Timer() as t:
    from valuejax.engine.stats import NeuronStats
    if wd.done("record") is None:
      raise ValueJaxError("no statistics for this config in the workdir", wd.path("record"),
                          "run the record stage first (python -m launch.record with the same flags)")
    stats = NeuronStats.load(wd.path(record_stage.STATS))
    sets = neuron_sets(config, inputs.load_dataset(config), stats)
    _write(wd, sets)
  wd.mark_done("locate", t.seconds)
  wd.add_timing("locate", t.seconds)
  logging.info("locate: %d neuron sets in %.1f s", len(sets), t.seconds)


def neuron_sets(config: mlc.ConfigDict, dataset, stats) -> dict[str, object]:
  """{set name: NeuronSet} for the config's locator."""
  from valuejax import locate as vl
  c = config.locate
  prov = {"model": config.model, "data": config.data.framework, "record_mode": config.record.mode}
  if c.rule == "valuelocate":
    if c.steer_value == "v95" and stats.hist is None:
      raise ValueJaxError("locate.steer_value = 'v95' needs activation histograms", "--config.record.hist",
                          "set --config.record.hist=True (and rerun record) or use steer_value='p'")
    # With histograms every set also stores v95, so one set serves both steer values (a study's grid).
    from launch.intervene import set_name
    sizes = list(c.get("sizes", ())) or [None]
    return {set_name(p.name, size): vl.valuelocate_pair(
                stats.count, stats.tokens, stats.group_names, p.plus, p.minus, hist=stats.hist,
                threshold=c.threshold, min_count=c.min_count, size=c.get("size", "paper") if size is None else size,
                provenance=prov)
            for p in inputs.pairs(config, dataset) for size in sizes}
  totals = {"tokens": stats.tokens, "items": stats.items}
  top_rate = c.get("top_rate") or None  # 0 = the preset's
  if config.method in ("lape", "languages"):
    return {"lape": vl.vape_preset(c.presets[0], stats.count, totals, stats.group_names, top_rate=top_rate,
                                   denominator=c.denominator, provenance=prov)}
  out = {}
  for p in inputs.pairs(config, dataset):
    idx = [stats.group(p.plus), stats.group(p.minus)]
    for preset in c.presets:
      out[f"{p.name}-{preset}"] = vl.vape_preset(
          preset, stats.count[idx], {k: v[idx] for k, v in totals.items()}, [p.plus, p.minus], top_rate=top_rate,
          denominator=c.denominator, provenance={**prov, "value": p.name})
  return out


def _write(wd: Workdir, sets: dict) -> None:
  if not wd.writer:
    return
  from valuejax.locate import plot_counts_per_layer
  summary = {}
  for name, ns in sets.items():
    ns.save_json(wd.path("locate", f"{name}.json"))
    ns.save_npz(wd.path("locate", f"{name}.npz"))
    plot = plot_counts_per_layer(ns, wd.path("locate"), f"{name}_per_layer.png", title=f"{name}: neurons per layer")
    summary[name] = {"method": ns.provenance.get("method"), "num_layers": ns.num_layers,
                     "num_neurons": ns.num_neurons, "plot": os.path.relpath(plot, wd.root),
                     "groups": {g: {"count": len(ns[g]), "per_layer": ns.counts_per_layer(g).tolist(),
                                    "mean_delta": _mean(ns[g].scores.get("delta"))}
                                for g in ns.names}}
  vio.write_json(wd.path(SUMMARY), summary)


def _mean(v) -> float | None:
  if v is None or not len(v):
    return None
  v = np.asarray(v)[np.isfinite(v)]
  return float(v.mean()) if v.size else None


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  wd.write_config()
  locate(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
