"""LAPE (Tang et al. 2024) over the value descriptions: neurons of every aspect by the entropy of their
activation probability across all aspects at once, validated by deactivating each aspect's neurons and
scoring the likelihood of that aspect's held-out descriptions."""

from __future__ import annotations

from typing import Any

import ml_collections as mlc

from valuejax import data as vdata
from valuejax.errors import ValueJaxError
from valuejax.methods.base import METHODS, Method, Target
from valuejax.validate import NON_NEGATIVE


class Lape(Method):
  name = "lape"
  seed_stride = 0  # every group's controls start from control_seed (each has its own per-layer counts)
  config_keys = {"data.lang": None, "intervene.eval_items": NON_NEGATIVE}

  def groups(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[str]:
    return list(config.data.groups) or list(dataset.taxonomy.aspect_ids)

  def _texts(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> tuple[list[Any], list[Any]]:
    """(recorded, held-out) descriptions: the first items_per_group of each group are recorded, the next
    eval_items are scored under deactivation."""
    record, held_out = [], []
    n, m = config.data.items_per_group, config.intervene.eval_items
    for g in self.groups(config, dataset):
      items = [x for x in dataset.descriptions if x.group == g and x.lang == config.data.lang]
      if n and len(items) <= n:
        raise ValueJaxError(f"group {g!r} has {len(items)} descriptions, none left to evaluate on after "
                            f"recording {n}", "--config.data.items_per_group", "record fewer items per group")
      record += items[:n] if n else items
      held_out += items[n:n + m] if m else items[n:]
    return record, held_out

  def recording_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, groups: list[str]
                        ) -> list[vdata.Prompt]:
    return [vdata.Prompt(x.text, x.group, x.id, "raw", x.lang) for x in self._texts(config, dataset)[0]]

  def units(self, config: mlc.ConfigDict, dataset: vdata.Dataset, sets: dict[str, Any]) -> list[Target]:
    return [Target(g, g) for g in sets["lape"].names]

  def held_out_texts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, target: Target) -> list[Any]:
    """The group's held-out descriptions (each with `.text`)."""
    return [x for x in self._texts(config, dataset)[1] if x.group == target.group]


METHODS.register("lape", Lape())
