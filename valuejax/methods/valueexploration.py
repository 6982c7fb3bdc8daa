"""ValueExploration (C-voice, 12 Chinese social values): each value's support and conflict prompts
contrasted by activation-probability entropy, validated by scaling the neurons, scored on dilemmas.

The support prompt speaks as one raised to revere the value, the conflict prompt (by default, as the authors
do) as one raised to revere the dilemma's anti-value. Whether the two personas change the model's choices at
all is measured in every run (`manipulation_check`): if they do not, the recorded groups differ only in wording
and no located set can carry the value difference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections as mlc
import numpy as np

from valuejax import data as vdata
from valuejax.data.templates import CONFLICT_PERSONAS
from valuejax.errors import ValueJaxError
from valuejax.methods.base import METHODS, ContrastMethod, Pair, check_groups
from valuejax.validate import Range

# What the manipulation check scores, as the report names it.
MANIPULATION_METRIC = ("P(value-aligned action) after the recording prompt, from length-normalised "
                       "log-likelihoods of the two actions")


class ValueExploration(ContrastMethod):
  name = "valueexploration"
  config_keys = {"data.value_ids": None, "data.conflict_persona": None, "data.cvoice_activation": None,
                 "data.cvoice_eval": None, "intervene.manipulation_items": None, "data.half_seed": None,
                 "locate.stable_factor": Range(0.0, float("inf"), False, False, "a positive number (how many times "
                                               "chance a split-half Jaccard must exceed)")}

  def load_dataset(self, config: mlc.ConfigDict) -> vdata.Dataset:
    """The shipped C-voice data, or the released workbooks by path in place of the shipped splits: the
    activation folder's `*-final.xlsx` replace the locate split; `data.cvoice_eval`, else the folder's own
    `test-zh-200.xlsx`, replaces the eval split. Each split comes from one source, never two: a released eval
    workbook is read once even when the folder holds it and data.cvoice_eval names it too."""
    d = config.data
    base = vdata.load_framework(d.framework)
    if not (d.cvoice_activation or d.cvoice_eval):
      return base
    shipped = {split: [x for x in base.dilemmas if x.split == split] for split in ("locate", "eval")}
    release = vdata.read_cvoice_release(d.cvoice_activation, base.taxonomy).dilemmas if d.cvoice_activation else ()
    locate = [x for x in release if x.split == "locate"] if d.cvoice_activation else shipped["locate"]
    if d.cvoice_eval:
      evals = list(vdata.read_cvoice_eval(d.cvoice_eval, base.taxonomy))
    else:
      evals = [x for x in release if x.split == "eval"] or shipped["eval"]
    return dataclasses.replace(base, dilemmas=tuple(locate + evals))

  def pairs(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[Pair]:
    values = list(config.data.value_ids) or list(dataset.taxonomy.value_ids)
    check_groups(values, dataset.taxonomy.value_ids, "data.value_ids", "value(s)")
    return [Pair(v, f"{v}-support", f"{v}-conflict", v) for v in values]

  def recording_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, groups: list[str]
                        ) -> list[vdata.Prompt]:
    return vdata.cvoice_prompts([x for x in dataset.dilemmas if x.split == "locate"], dataset.taxonomy,
                                lang=config.data.lang, conflict_persona=_persona(config))

  def preflight(self, config: mlc.ConfigDict, metric: Any) -> None:
    """The base checks, and the two entries of the persona contrast: a known conflict persona, and a cap on
    the manipulation check's items that is a whole number (0 = every locate dilemma of the run's values)."""
    if _persona(config) not in CONFLICT_PERSONAS:
      raise ValueJaxError(f"unknown conflict persona {_persona(config)!r}", "--config.data.conflict_persona",
                          f"use {' or '.join(CONFLICT_PERSONAS)}")
    n = config.intervene.manipulation_items
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
      raise ValueJaxError(f"intervene.manipulation_items must be an integer >= 0, got {n!r}",
                          "--config.intervene.manipulation_items",
                          "give the locate dilemmas per value the check scores (0 = all of them)")
    super().preflight(config, metric)

  def manipulation_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset
                           ) -> dict[str, list[tuple[vdata.Prompt, vdata.Prompt, vdata.DilemmaText]]]:
    """Per value of the run: (support prompt, conflict prompt, the dilemma's text) for its first
    `intervene.manipulation_items` locate dilemmas written in data.lang (0 = all), the prompts exactly as the
    record stage builds them (persona, template, chat or not)."""
    lang, cap = config.data.lang, config.intervene.manipulation_items
    chat = self.chat(config)
    out = {}
    for pair in self.pairs(config, dataset):
      dilemmas = [x for x in dataset.dilemmas if x.split == "locate" and x.value == pair.eval_key and lang in x.texts]
      dilemmas = dilemmas[:cap] if cap else dilemmas
      if not dilemmas:
        raise ValueJaxError(f"no 'locate' dilemmas in language {lang!r} for {pair.name}", dataset.root,
                            "check data.lang and data.value_ids")
      prompts = {(p.item_id, p.meta["mode"]): dataclasses.replace(p, chat=chat) for p in vdata.cvoice_prompts(
          dilemmas, dataset.taxonomy, lang=lang, conflict_persona=_persona(config))}
      out[pair.name] = [(prompts[d.id, "support"], prompts[d.id, "conflict"], d.texts[lang]) for d in dilemmas]
    return out

  def manipulation_check(self, config: mlc.ConfigDict, dataset: vdata.Dataset, model: Any) -> dict[str, Any]:
    """Do the support and conflict personas separate the unedited model's choices? Each locate dilemma's two
    actions are scored as continuations of its support prompt and of its conflict prompt (the forced-choice
    scorer, as the forced_choice metric scores eval items), and summarised by `summarize_manipulation`."""
    from valuejax.evaluate import ForcedChoiceItem, forced_choice_many
    from valuejax.metrics.base import chat_template, scoring_kwargs
    per_value = self.manipulation_prompts(config, dataset)
    items = [ForcedChoiceItem(p.text, t.aligned, t.violating, p.id)
             for rows in per_value.values() for row in rows for p, t in ((row[0], row[2]), (row[1], row[2]))]
    template = chat_template(model.tokenizer, "{question}", self.chat(config))
    p = forced_choice_many(model.params, model.config, model.tokenizer, items, [None], lettered=False,
                           direct_template=template, **scoring_kwargs(config))[0].p_aligned_norm
    scores, k = {}, 0
    for value, rows in per_value.items():
      n = len(rows)
      both = np.asarray(p[k:k + 2 * n], np.float64).reshape(n, 2)  # items alternate support, conflict
      scores[value] = ([row[0].item_id for row in rows], both[:, 0], both[:, 1])
      k += 2 * n
    return {"metric": MANIPULATION_METRIC, "lang": config.data.lang, "conflict_persona": _persona(config),
            "chat": self.chat(config), "items_per_value": config.intervene.manipulation_items,
            **summarize_manipulation(scores, n_boot=config.intervene.n_boot, seed=config.seed)}

  def choice_sources(self, config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
    return [x for x in dataset.dilemmas if x.split == config.intervene.eval_split and x.value == pair.eval_key]


def _persona(config: mlc.ConfigDict) -> str:
  return config.data.conflict_persona


def summarize_manipulation(scores: dict[str, tuple[list[str], Any, Any]], *, level: float = 0.95,
                           n_boot: int = 10000, seed: int = 0) -> dict[str, Any]:
  """{value: (item ids, P(aligned) under support [n], under conflict [n])} -> per value and pooled over the
  values: n, the two means, the mean paired difference support - conflict and its bootstrap CI over items.

  The reading is fixed here, before any score: the personas separate the model's choices when the pooled CI of
  (support - conflict) lies above 0 (`separates`); otherwise the contrast is empty on this model.
  """
  from valuejax.evaluate.stats import bootstrap_ci

  def summary(support: np.ndarray, conflict: np.ndarray) -> dict[str, Any]:
    d = support - conflict
    lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
    return {"n": int(d.size), "mean_support": float(support.mean()), "mean_conflict": float(conflict.mean()),
            "mean_diff": float(d.mean()), "ci_low": lo, "ci_high": hi, "separates": lo > 0}

  if not scores:
    raise ValueJaxError("the manipulation check needs at least one value with items")
  values, all_s, all_c = {}, [], []
  for value, (ids, support, conflict) in scores.items():
    s, c = np.asarray(support, np.float64), np.asarray(conflict, np.float64)
    if s.shape != c.shape or s.shape != (len(ids),):
      raise ValueJaxError(f"{value}: support and conflict scores must be one per item ({len(ids)}), got "
                          f"{s.shape} and {c.shape}")
    values[value] = {**summary(s, c), "item_ids": list(ids), "support": s.tolist(), "conflict": c.tolist()}
    all_s.append(s)
    all_c.append(c)
  pooled = summary(np.concatenate(all_s), np.concatenate(all_c))
  return {"level": level, "n_boot": n_boot, "seed": seed, "values": values, "pooled": pooled,
          "separates": pooled["separates"]}


METHODS.register("valueexploration", ValueExploration())
