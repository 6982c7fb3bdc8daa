"""ValueLocate (Schwartz's four higher-order values): opposing aspects contrasted pairwise, validated by
steering, scored on the eval split's situations."""

from __future__ import annotations

from typing import Any

import ml_collections as mlc

from valuejax import data as vdata
from valuejax.errors import ValueJaxError
from valuejax.methods.base import METHODS, ContrastMethod, Pair


class ValueLocate(ContrastMethod):
  name = "valuelocate"

  def pairs(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[Pair]:
    """`locate.pairs` ("plus:minus" aspects), else both aspects of every dimension."""
    tax = dataset.taxonomy
    specs = list(config.locate.pairs) or [f"{d.aspects[0].id}:{d.aspects[1].id}" for d in tax.dimensions]
    out = []
    for spec in specs:
      plus, sep, minus = spec.partition(":")
      if not sep or plus not in tax.aspect_ids or minus not in tax.aspect_ids:
        raise ValueJaxError(f"locate pair {spec!r} is not 'plus:minus' with two aspects of the taxonomy",
                            "--config.locate.pairs", f"aspects: {', '.join(tax.aspect_ids)}")
      if not tax.is_opposing_pair(plus, minus):
        raise ValueJaxError(f"{plus} and {minus} are not the two aspects of one dimension",
                            "--config.locate.pairs", "pair each aspect with its opposite")
      out.append(Pair(f"{plus}_vs_{minus}", plus, minus, tax.aspect(plus).dimension))
    return out

  def recording_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, groups: list[str]
                        ) -> list[vdata.Prompt]:
    d = config.data
    return vdata.valuelocate_prompts(dataset, split="locate", lang=d.lang,
                                     questions_per_description=d.questions_per_description, seed=d.seed,
                                     groups=groups)

  def choice_sources(self, config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
    return [s for s in dataset.situations if s.split == config.intervene.eval_split and s.dimension == pair.eval_key]

  def aligned(self, pair: Pair) -> str:
    return pair.plus


METHODS.register("valuelocate", ValueLocate())
