"""Edit kinds (`intervene.kind`): the located edits of one unit, each with the direction the method predicts.

An edit kind is a function `(config, sets, unit, metric) -> [Experiment]` registered in `EDITS`; random
controls are added afterwards by the design (`valuejax.methods.design.with_controls`).
"""

from __future__ import annotations

from typing import Any

import ml_collections as mlc

from valuejax.errors import ValueJaxError
from valuejax.methods.base import EDITS, Experiment, Pair, Target, exclusive_mask, set_name
from valuejax.methods.design import grid_points, primary_params
from valuejax.validate import NON_NEGATIVE, Range, Subset, declare


def _need(unit: Any, kind: type, edit: str) -> None:
  if not isinstance(unit, kind):
    raise ValueJaxError(f"intervene.kind {edit!r} edits {kind.__name__.lower()}s, and this method's units are "
                        f"{type(unit).__name__.lower()}s", "--config.intervene.kind",
                        "use the edit kind of the method's config (configs/<method>.py)")


@EDITS.register("steering")
@declare({"intervene.modes": Subset(("enhance", "reverse")), "intervene.gamma": None,
          "intervene.keep_prob": Range(0.0, 1.0, False, True, "a probability in (0, 1]"), "locate.steer_value": None,
          "intervene.decompose": None, "intervene.decompose_controls": NON_NEGATIVE})
def steering(config: mlc.ConfigDict, sets: dict[str, Any], pair: Pair, metric: Any) -> list[Experiment]:
  """ValueLocate: steer one aspect's neurons up and the opposite aspect's down (enhance), or the reverse,
  at every grid point (size, gamma, steer value).

  With `intervene.decompose`, each edit of the primary family also runs taken apart: its push alone and its
  clamp alone (params "part": "push" / "clamp"), exploratory, never in the primary test (design.primary_params).
  They are experiments of the same unit, so their controls come from the same mirrored family: replicate r
  moves the parts' neurons through the full edit's map, and a part's control is that part of the full edit's
  control."""
  from valuejax.intervene import SteerSet, steering as steer
  _need(pair, Pair, "steering")
  c = config.intervene
  out = []
  for mode in c.modes:
    for point in grid_points(config):
      ns = sets[set_name(pair.name, point.get("size"))]
      shape = (ns.num_layers, ns.num_neurons)
      v = point.get("steer", config.locate.steer_value)
      side = lambda g: SteerSet.from_arrays(ns.mask(g), ns[g].score_map(v), ns[g].score_map("delta"), shape)
      gamma = point["gamma"]
      name = f"{mode} gamma={gamma:g}" + (f" size={point['size']} steer={v}" if "size" in point else "")
      expected, params = "greater" if mode == "enhance" else "less", {"mode": mode, **point}
      parts = ["full"]
      if c.decompose and primary_params(c, params, pair.name):
        parts += ["push", "clamp"]
      for part in parts:
        edit = steer(side(pair.plus), side(pair.minus), gamma, mode=mode, keep_prob=c.keep_prob, seed=config.seed,
                     name=name + ("" if part == "full" else f" {part}-only"), part=part)
        out.append(Experiment(pair.name, edit, expected, params if part == "full" else {**params, "part": part}, []))
  return out


@EDITS.register("value_exploration")
@declare({"intervene.regions": Subset(("semantic", "decision", "combined")),
          "intervene.directions": Subset(("support", "conflict")),
          "intervene.factor": Range(0.0, float("inf"), True, False, "a finite number >= 0")})
def value_exploration(config: mlc.ConfigDict, sets: dict[str, Any], pair: Pair, metric: Any) -> list[Experiment]:
  """ValueExploration: scale one side's neurons (support or conflict) in the semantic, decision or both
  layer regions."""
  from valuejax.intervene import value_exploration as explore, value_exploration_combined
  from valuejax.locate import layer_split
  _need(pair, Pair, "value_exploration")
  c = config.intervene
  found = {p: sets.get(f"{pair.name}-{p}") for p in ("semantic", "decision")}
  out = []
  for region in c.regions:
    needed = ("semantic", "decision") if region == "combined" else (region,)
    missing = [p for p in needed if found[p] is None]
    if missing:
      raise ValueJaxError(f"region {region!r} needs the {' and '.join(missing)} neuron sets",
                          "--config.locate.presets", f"add {', '.join(missing)} to locate.presets")
    ns = found[needed[0]]
    masks = lambda s: (s.mask(pair.plus), s.mask(pair.minus))
    split = layer_split(ns.num_layers)
    for toward in c.directions:
      name = f"{region} toward {toward} x{c.factor:g}"
      if region == "combined":
        edit = value_exploration_combined(masks(found["semantic"]), masks(found["decision"]), toward=toward,
                                          factor=c.factor, split=split, name=name)
      else:
        edit = explore(*masks(ns), toward=toward, region=region, factor=c.factor, split=split, name=name)
      out.append(Experiment(pair.name, edit, "greater" if toward == "support" else "less",
                            {"region": region, "toward": toward, "factor": float(c.factor)}, []))
  return out


@EDITS.register("deactivate")
def deactivate(config: mlc.ConfigDict, sets: dict[str, Any], target: Target, metric: Any) -> list[Experiment]:
  """Deactivation (a = 0, every position) of a group's neurons, or of those no excluded group holds. The
  predicted direction is the metric's `worse`: the model gets worse at the group's items."""
  from valuejax.intervene import deactivate as off
  _need(target, Target, "deactivate")
  ns = sets[target.set]
  mask = exclusive_mask(ns, target.group, target.exclude)
  if target.exclude and not mask.any():
    raise ValueJaxError(f"every {target.group} neuron is also a neuron of {', '.join(target.exclude)}: nothing to "
                        "deactivate", "locate", "record more text per group or raise the LAPE top rate")
  name = f"deactivate {target.group}" + ("-only neurons" if target.exclude else "")
  # The targets deactivating one neuron set are one family: replicate r of every target deactivates that
  # target's counterpart in one random relabelling of all their neurons.
  return [Experiment(target.name, off(mask, name=name), metric.worse, {"group": target.group}, [],
                     family=f"deactivate:{target.set}")]
