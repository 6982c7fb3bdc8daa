"""Locator rules (`locate.rule`): neuron sets from the recorded statistics.

A rule is a function `(config, stats, pairs, provenance) -> {set name: NeuronSet}` registered in `RULES`;
`pairs` is None when the method contrasts all its groups at once (LAPE).
"""

from __future__ import annotations

from typing import Any

import ml_collections as mlc

from valuejax.errors import ValueJaxError
from valuejax.methods.base import RULES, Pair, set_name
from valuejax.validate import Choice, Range, Subset, declare


@RULES.register("valuelocate")
@declare({"locate.threshold": Range(0.0, 1.0, True, False, "a number in [0, 1): the least difference in activation "
                                    "probability"),
          "locate.min_count": Range(0, float("inf"), True, False, "an integer >= 0"),
          "locate.size": None, "locate.sizes": None, "locate.steer_value": Choice(("p", "v95"))})
def valuelocate(config: mlc.ConfigDict, stats: Any, pairs: list[Pair] | None, prov: dict[str, Any]) -> dict[str, Any]:
  """ValueLocate's contrast of each opposing pair, one set per pair (and per size rule of locate.sizes)."""
  from valuejax.locate import valuelocate_pair
  c = config.locate
  if pairs is None:
    raise ValueJaxError("the valuelocate rule contrasts pairs of groups, and this method has none",
                        "--config.locate.rule", "use locate.rule='vape'")
  if c.steer_value == "v95" and stats.hist is None:
    raise ValueJaxError("locate.steer_value = 'v95' needs activation histograms", "--config.record.hist",
                        "set --config.record.hist=True (and rerun record) or use steer_value='p'")
  # With histograms every set also stores v95, so one set serves both steer values (a study's grid).
  sizes = list(c.sizes) or [None]
  return {set_name(p.name, size): valuelocate_pair(
              stats.count, stats.tokens, stats.group_names, p.plus, p.minus, hist=stats.hist,
              hist_edges=stats.hist_edges, threshold=c.threshold,
              min_count=c.min_count, size=c.size if size is None else size, provenance=prov)
          for p in pairs for size in sizes}


@RULES.register("vape")
@declare({"locate.presets": Subset(("semantic", "decision", "lape")), "locate.denominator": Choice(("tokens", "items")),
          "locate.top_rate": Range(0.0, 1.0, True, False, "a share of neurons in [0, 1) (0 = the preset's)")})
def vape(config: mlc.ConfigDict, stats: Any, pairs: list[Pair] | None, prov: dict[str, Any]) -> dict[str, Any]:
  """Entropy of activation probability across groups: over all groups at once (LAPE, one set "lape"), or
  per pair for each preset (ValueExploration's "<value>-semantic" and "<value>-decision")."""
  from valuejax.locate import vape_preset
  c = config.locate
  totals = {"tokens": stats.tokens, "items": stats.items}
  top_rate = c.top_rate or None  # 0 = the preset's
  if pairs is None:
    return {"lape": vape_preset(c.presets[0], stats.count, totals, stats.group_names, top_rate=top_rate,
                                denominator=c.denominator, provenance=prov)}
  out = {}
  for p in pairs:
    idx = [stats.group(p.plus), stats.group(p.minus)]
    for preset in c.presets:
      out[f"{p.name}-{preset}"] = vape_preset(
          preset, stats.count[idx], {k: v[idx] for k, v in totals.items()}, [p.plus, p.minus], top_rate=top_rate,
          denominator=c.denominator, provenance={**prov, "value": p.name})
  return out


@RULES.register("masks")
@declare({"locate.masks": None})
def masks(config: mlc.ConfigDict, stats: Any, pairs: list[Pair] | None, prov: dict[str, Any]) -> dict[str, Any]:
  """Neurons given, not located: a LAPE mask file (`locate.masks`, e.g. the authors' `activation_mask`) over
  the recorded groups in their order, evaluated with the run's edits, controls and metric."""
  from valuejax.locate import NeuronSet
  path = config.locate.masks
  if not path:
    raise ValueJaxError("locate.rule = 'masks' needs the mask file", "--config.locate.masks",
                        "set --config.locate.masks=<path of a torch.save'd list of per-layer index tensors>")
  if pairs is not None:
    raise ValueJaxError("a LAPE mask file holds one set over all groups; this method contrasts pairs",
                        "--config.locate.rule", "use masks with the lape or languages method")
  return {"lape": NeuronSet.from_lape_masks(path, list(stats.group_names), stats.count.shape[-1], **prov)}
