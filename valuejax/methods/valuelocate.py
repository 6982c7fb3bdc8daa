"""ValueLocate (Schwartz's four higher-order values): each value contrasted with its own reversed
descriptions, as the authors ran it, validated by steering, scored on the eval split's situations.

Two contrasts, chosen by `locate.contrast`:
- "reversed" (the authors', `processn_new.py::process_trait`): X against X_reversed, "holds X vs rejects X",
  for each of the four values. Enhance pushes X's set and clamps X_reversed's; reverse swaps them.
- "aspects": X against the opposing aspect of its dimension ("holds X vs holds Y"), one pair per dimension.
  A different experiment, kept under its own name for comparison with results pages made with it.
Either way each unit is scored on the held-out situations of X's dimension, as P(X's action) against the
opposing aspect's action.
"""

from __future__ import annotations

from typing import Any

import ml_collections as mlc

from valuejax import data as vdata
from valuejax.data.schema import REVERSED_SUFFIX
from valuejax.errors import ValueJaxError
from valuejax.methods.base import METHODS, ContrastMethod, Pair
from valuejax.validate import Choice, Range

CONTRASTS = ("reversed", "aspects")
# What each contrast compares, in the words of reports and results pages.
CONTRAST_WORDS = {
    "reversed": "each value against its own reversed descriptions (holds X vs rejects X; the authors' contrast)",
    "aspects": "each dimension's two opposing aspects (holds X vs holds Y; not the authors' contrast)",
}


def contrast_of(config: mlc.ConfigDict) -> str:
  """The contrast a ValueLocate config runs (configs/valuelocate.py ships the authors', "reversed")."""
  return config.locate.contrast


def pair_contrast(plus: str, minus: str) -> str:
  """"reversed" when `minus` is `plus`'s reversed group, else "aspects"."""
  return "reversed" if minus == plus + REVERSED_SUFFIX else "aspects"


class ValueLocate(ContrastMethod):
  name = "valuelocate"
  config_keys = {"locate.contrast": Choice(tuple(CONTRAST_WORDS)), "locate.pairs": None,
                 "data.questions_per_description": None, "data.seed": None,
                 "data.half_seed": None,
                 "locate.stable_factor": Range(0.0, float("inf"), False, False, "a positive number (how many times "
                                               "chance a split-half Jaccard must exceed)")}

  def pairs(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[Pair]:
    """`locate.pairs` ("X:X_reversed" or "X:Y" opposing aspects), else the contrast's default pairs: every
    aspect against its reversed descriptions, or both aspects of every dimension."""
    tax = dataset.taxonomy
    contrast = contrast_of(config)
    if contrast not in CONTRASTS:
      raise ValueJaxError(f"locate.contrast = {contrast!r} is not a ValueLocate contrast", "--config.locate.contrast",
                          f"use one of: {', '.join(CONTRASTS)}")
    if config.locate.pairs:
      specs = list(config.locate.pairs)
    elif contrast == "reversed":
      specs = [f"{a}:{a}{REVERSED_SUFFIX}" for a in tax.aspect_ids]
    else:
      specs = [f"{d.aspects[0].id}:{d.aspects[1].id}" for d in tax.dimensions]
    out = []
    for spec in specs:
      plus, sep, minus = spec.partition(":")
      if not sep or plus not in tax.aspect_ids:
        raise ValueJaxError(f"locate pair {spec!r} is not 'X:X_reversed' or 'X:Y' with X an aspect of the taxonomy",
                            "--config.locate.pairs", f"aspects: {', '.join(tax.aspect_ids)}")
      if pair_contrast(plus, minus) != contrast:
        raise ValueJaxError(f"locate pair {spec!r} is not of the run's contrast {contrast!r} "
                            f"({CONTRAST_WORDS[contrast]})",
                            "--config.locate.pairs",
                            f"write {plus}:{plus}{REVERSED_SUFFIX}" if contrast == "reversed" else
                            f"write {plus}:{tax.opposite(plus)}, or set locate.contrast='reversed'")
      if contrast == "aspects" and not tax.is_opposing_pair(plus, minus):
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

  def describe_contrast(self, config: mlc.ConfigDict) -> str:
    """One line for reports: which contrast located the neurons."""
    return CONTRAST_WORDS[contrast_of(config)]


METHODS.register("valuelocate", ValueLocate())
