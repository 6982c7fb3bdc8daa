"""ValueExploration (C-voice, 12 Chinese social values): each value's support and conflict prompts
contrasted by activation-probability entropy, validated by scaling the neurons, scored on dilemmas."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections as mlc

from valuejax import data as vdata
from valuejax.methods.base import METHODS, ContrastMethod, Pair, check_groups


class ValueExploration(ContrastMethod):
  name = "valueexploration"

  def load_dataset(self, config: mlc.ConfigDict) -> vdata.Dataset:
    """The shipped C-voice data, or the released workbooks by path (the activation folder and/or the
    evaluation workbook) in place of the shipped locate and/or eval splits."""
    d = config.data
    base = vdata.load_framework(d.framework)
    if not (d.get("cvoice_activation") or d.get("cvoice_eval")):
      return base
    dilemmas = []
    if d.cvoice_activation:
      dilemmas += vdata.read_cvoice_release(d.cvoice_activation, base.taxonomy).dilemmas
    else:
      dilemmas += [x for x in base.dilemmas if x.split == "locate"]
    if d.cvoice_eval:
      dilemmas += vdata.read_cvoice_eval(d.cvoice_eval, base.taxonomy)
    else:
      dilemmas += [x for x in base.dilemmas if x.split == "eval"]
    return dataclasses.replace(base, dilemmas=tuple(dilemmas))

  def pairs(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[Pair]:
    values = list(config.data.value_ids) or list(dataset.taxonomy.value_ids)
    check_groups(values, dataset.taxonomy.value_ids, "data.value_ids", "value(s)")
    return [Pair(v, f"{v}-support", f"{v}-conflict", v) for v in values]

  def recording_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, groups: list[str]
                        ) -> list[vdata.Prompt]:
    return vdata.cvoice_prompts([x for x in dataset.dilemmas if x.split == "locate"], dataset.taxonomy,
                                lang=config.data.lang)

  def choice_sources(self, config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
    return [x for x in dataset.dilemmas if x.split == config.intervene.eval_split and x.value == pair.eval_key]


METHODS.register("valueexploration", ValueExploration())
