"""The positive control: LAPE language neurons over the same dilemmas written in several languages. One
language's neurons that no other language holds are deactivated; that language's held-out loss should rise
far more than the other's, and more than under random neurons."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections as mlc
import numpy as np

from valuejax import data as vdata
from valuejax.errors import ValueJaxError
from valuejax.methods.base import METHODS, Method, Target
from valuejax.validate import NON_NEGATIVE


@dataclasses.dataclass(frozen=True)
class LanguageItem:
  """One dilemma written out in every language of the run (context, then both actions): the same content
  in each language, so that a per-item difference between languages compares like with like."""
  item_id: str
  texts: dict[str, str]


def language_items(config: mlc.ConfigDict, dataset: vdata.Dataset, split: str, n: int) -> list[LanguageItem]:
  """`n` (0 = all) dilemmas of `split` present in every language of `data.langs`, in a seeded order that
  spreads them over the values (the file lists them value by value)."""
  langs = list(config.data.langs)
  if len(langs) < 2 or len(set(langs)) != len(langs):
    raise ValueJaxError(f"data.langs = {tuple(langs)} must name two or more different languages",
                        "--config.data.langs", "e.g. --config.data.langs='(\"zh\", \"en\")'")
  pool = [x for x in dataset.dilemmas if x.split == split and all(lang in x.texts for lang in langs)]
  if not pool:
    raise ValueJaxError(f"no '{split}' dilemmas written in all of {', '.join(langs)}", dataset.root,
                        "use a framework with bilingual dilemmas (data.framework='cvoice') or other data.langs")
  order = np.random.default_rng(config.data.seed).permutation(len(pool))
  chosen = [pool[i] for i in order[:n or len(pool)]]
  join = lambda t, lang: ("" if lang in ("zh", "ja") else " ").join((t.context, t.aligned, t.violating))
  return [LanguageItem(x.id, {lang: join(x.texts[lang], lang) for lang in langs}) for x in chosen]


class Languages(Method):
  name = "languages"
  config_keys = {"data.langs": None, "data.seed": None, "intervene.targets": None, "intervene.eval_split": None,
                 "intervene.eval_items": NON_NEGATIVE}

  def groups(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[str]:
    return list(config.data.groups) or list(config.data.langs)

  def recording_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, groups: list[str]
                        ) -> list[vdata.Prompt]:
    items = language_items(config, dataset, "locate", config.data.items_per_group)
    return [vdata.Prompt(x.texts[g], g, x.item_id, "raw", g) for x in items for g in groups]

  def preflight(self, config: mlc.ConfigDict, metric: Any) -> None:
    super().preflight(config, metric)
    self.language_items(config, self.load_dataset(config), None)  # the held-out texts exist

  def units(self, config: mlc.ConfigDict, dataset: vdata.Dataset, sets: dict[str, Any]) -> list[Target]:
    names = sets["lape"].names
    out = []
    for target in config.intervene.targets:
      if target not in names:
        raise ValueJaxError(f"intervene.targets names {target!r}, which is not a recorded language",
                            "--config.intervene.targets", f"use languages of data.langs: {', '.join(names)}")
      out.append(Target(target, target, tuple(g for g in names if g != target)))
    return out

  def language_items(self, config: mlc.ConfigDict, dataset: vdata.Dataset, target: Target) -> list[Any]:
    """The held-out items of the eval split (the same for every target)."""
    c = config.intervene
    return language_items(config, dataset, c.eval_split, c.eval_items)


METHODS.register("languages", Languages())
