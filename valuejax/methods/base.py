"""What a method is: which groups it records, how it contrasts them, which edits it plans and on which items.

A `Method` owns its groups, its recording prompts, its units of analysis (opposing `Pair`s, or `Target`
groups to deactivate), and the eval items it can offer a metric. Selection rules (`RULES`), edit kinds
(`EDITS`) and metrics (`valuejax.metrics.METRICS`) are chosen by the config, each from its registry; the
method wires them together in `plan`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax import data as vdata
from valuejax.errors import ValueJaxError
from valuejax.methods.design import with_controls
from valuejax.methods.types import Experiment, Pair, Target, UnitPlan  # noqa: F401 (base.Pair etc. stay importable)
from valuejax.registry import Registry
from valuejax.validate import NON_NEGATIVE, Choice, Range

METHODS = Registry("method", "method", builtin="valuejax.methods", instances=True)
RULES = Registry("locator rule", "locate.rule", builtin="valuejax.methods")
EDITS = Registry("edit kind", "intervene.kind", builtin="valuejax.methods")


def set_name(pair: str, size: str | None) -> str:
  """The neuron set of a pair, per size rule when the locate stage ran several (locate.sizes)."""
  return pair if size is None else f"{pair}@{size}"


class Method:
  """The shared behaviour; a method module subclasses it and registers an instance in METHODS."""

  name = ""
  # Control seeds are control_seed + seed_stride * (unit index) + (experiment index).
  seed_stride = 1000
  # The entries every method reads (its data, the design of its edits and controls) and what each may be;
  # a subclass declares its own in its own `config_keys` (validate.declared_keys merges them along the bases).
  config_keys = {
      "data.framework": None, "data.groups": None, "data.chat": None, "data.items_per_group": NON_NEGATIVE,
      "intervene.n_controls": NON_NEGATIVE, "intervene.control_seed": None, "intervene.examples": NON_NEGATIVE,
      "intervene.example_max_new_tokens": None,
      "intervene.controls_at": Choice(("strongest", "all")),
      "intervene.controls": Choice(("mirrored", "independent")),
      "intervene.control_match": Choice(("p", "mean", "layer")),
      "intervene.primary_test": Choice(("pooled", "each", "")),
      "intervene.primary_controls": Range(0, float("inf"), True, False, "an integer >= 0"),
      "intervene.primary_gamma": None, "intervene.primary_point": None, "intervene.primary_pairs": None,
      "intervene.sequential_h": None, "intervene.grid": None,
  }

  # -- data and recording ---------------------------------------------------------------------------

  def load_dataset(self, config: mlc.ConfigDict) -> vdata.Dataset:
    return vdata.load_framework(config.data.framework)

  def pairs(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[Pair] | None:
    """The contrasted group pairs; None when the method contrasts all its groups at once."""
    return None

  def groups(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[str]:
    """The recorded groups: `data.groups` when the config names them, else the method's own."""
    if config.data.groups:
      return list(config.data.groups)
    return [g for p in self.pairs(config, dataset) or () for g in (p.plus, p.minus)]

  def recording_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, groups: list[str]
                        ) -> list[vdata.Prompt]:
    raise NotImplementedError(f"method {self.name!r} builds no recording prompts")

  def chat(self, config: mlc.ConfigDict) -> bool:
    """Whether recording prompts go through the chat template (only when the model answers them)."""
    return bool(config.data.chat) and config.record.mode == "generate"

  def record_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> tuple[list[str], list[vdata.Prompt]]:
    """(groups, prompts) for the record stage, `data.items_per_group` per group."""
    d = config.data
    groups = self.groups(config, dataset)
    by_group: dict[str, list[vdata.Prompt]] = {g: [] for g in groups}
    for p in self.recording_prompts(config, dataset, groups):
      if p.group in by_group and (not d.items_per_group or len(by_group[p.group]) < d.items_per_group):
        by_group[p.group].append(p)
    empty = [g for g, items in by_group.items() if not items]
    if empty:
      raise ValueJaxError(f"no recording prompts for group(s) {empty}", dataset.root,
                          "check data.groups, data.lang and that the framework has items for them")
    chat = self.chat(config)
    return groups, [dataclasses.replace(p, chat=chat) for g in groups for p in by_group[g]]

  # -- locating -------------------------------------------------------------------------------------

  def locate(self, config: mlc.ConfigDict, dataset: vdata.Dataset, stats: Any) -> dict[str, Any]:
    """{set name: NeuronSet} by the config's locator rule."""
    prov = {"model": config.model, "data": config.data.framework, "record_mode": config.record.mode}
    return RULES.get(config.locate.rule)(config, stats, self.pairs(config, dataset), prov)

  def preflight(self, config: mlc.ConfigDict, metric: Any) -> None:
    """Everything the run will need from the data, checked before any model loads: recording prompts for
    every group, and eval items of every pair for the metric (an empty eval split fails now, not after
    recording)."""
    dataset = self.load_dataset(config)
    self.record_prompts(config, dataset)
    pairs = list(self.pairs(config, dataset) or ())
    for pair in pairs:
      if not metric.items(config, dataset, self, pair):
        raise ValueJaxError(f"no eval items for {pair.name}", dataset.root,
                            "check intervene.eval_split, intervene.eval_items and data.lang")
    declared = tuple(config.intervene.primary_pairs)
    unknown = sorted(set(declared) - {p.name for p in pairs})
    if pairs and unknown:
      raise ValueJaxError(f"intervene.primary_pairs names {', '.join(unknown)}, which this run does not edit",
                          "--config.intervene.primary_pairs", f"use names of: {', '.join(p.name for p in pairs)}")

  # -- intervening ----------------------------------------------------------------------------------

  def units(self, config: mlc.ConfigDict, dataset: vdata.Dataset, sets: dict[str, Any]) -> list[Pair | Target]:
    """What is edited, one unit at a time: the pairs by default."""
    return list(self.pairs(config, dataset) or ())

  def plan(self, config: mlc.ConfigDict, dataset: vdata.Dataset, sets: dict[str, Any], metric: Any,
           activity: dict[str, np.ndarray] | None = None) -> list[UnitPlan]:
    """Per unit: the metric's eval items, the edits of the config's edit kind and their controls.

    `activity` ({"p", "mean"}: [L, F], valuejax.intervene.neuron_activity of the recorded statistics) is what
    controls are matched on. With mirrored controls, the experiments of one family (a unit, or the units
    naming one `Experiment.family`) get their controls together, seeded by the family's first unit."""
    from valuejax.methods.design import with_controls
    metric.check(config, self)
    build = EDITS.get(config.intervene.kind)
    units = self.units(config, dataset, sets)
    exps = [build(config, sets, unit, metric) for unit in units]
    mirrored = config.intervene.controls == "mirrored"
    families: dict[Any, tuple[int, list[Experiment]]] = {}
    for i, (unit, unit_exps) in enumerate(zip(units, exps)):
      for e in unit_exps:
        key = (e.family if mirrored and e.family else ("unit", i))
        families.setdefault(key, (i, []))[1].append(e)
    for first, family in families.values():
      with_controls(config, family, offset=self.seed_stride * first, activity=activity)
    return [UnitPlan(unit.name, metric.items(config, dataset, self, unit), unit_exps,
                     self.example_prompts(config, dataset, unit, config.intervene.examples))
            for unit, unit_exps in zip(units, exps)]

  def example_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, unit: Pair | Target, n: int
                      ) -> list[vdata.Prompt]:
    return []


class ContrastMethod(Method):
  """A method of opposing pairs whose eval items are choices between a value-aligned and a violating
  action (ValueLocate's situations, ValueExploration's dilemmas)."""

  config_keys = {"data.lang": None, "intervene.eval_split": None, "intervene.eval_items": NON_NEGATIVE,
                 "intervene.placebo": None, "intervene.placebo_pair": None}

  def preflight(self, config: mlc.ConfigDict, metric: Any) -> None:
    """The base checks, and a placebo that can be located: it needs the halves of the recording, and its pair
    is one of the run's."""
    super().preflight(config, metric)
    if config.intervene.placebo:
      if not config.record.halves:
        raise ValueJaxError("intervene.placebo locates its set between two halves of one group's items, and "
                            "this run records no halves", "--config.intervene.placebo",
                            "set --config.record.halves=True, or --config.intervene.placebo=False")
      self.placebo_pairs(config, self.load_dataset(config))

  # -- the placebo: a set located by the same rule between two random halves of one group -----------------

  def placebo_pairs(self, config: mlc.ConfigDict, dataset: vdata.Dataset) -> tuple[Pair, Pair]:
    """(placebo, real): the real pair is `intervene.placebo_pair` ("" = the run's first pair); the placebo
    contrasts the two halves of the real pair's `plus` group (ValueLocate's value X, ValueExploration's support
    group) as if they were plus and minus. Nothing but chance tells them apart: no value difference."""
    from valuejax.engine.record import HALVES, half_group
    pairs = list(self.pairs(config, dataset) or ())
    name = config.intervene.placebo_pair
    real = next((p for p in pairs if p.name == name), None) if name else (pairs[0] if pairs else None)
    if real is None:
      raise ValueJaxError(f"intervene.placebo_pair = {name!r} is not a pair of this run",
                          "--config.intervene.placebo_pair",
                          f"use '' (the first pair) or one of: {', '.join(p.name for p in pairs)}")
    plus, minus = (half_group(real.plus, h) for h in HALVES)
    return Pair(f"placebo_{real.plus}", plus, minus, real.eval_key), real

  def placebo_plan(self, config: mlc.ConfigDict, dataset: vdata.Dataset, halves: Any, metric: Any,
                   activity: dict[str, np.ndarray] | None = None) -> tuple[UnitPlan, dict[str, Any]]:
    """The placebo unit and its sets: located from the split-half statistics `halves` by the config's rule
    and sizes, edited by the config's edit kind with the same controls (number, matching, mirrored family)
    as every real unit, and scored on the real pair's eval items. Its controls are seeded as one more unit
    after the real ones."""
    placebo, real = self.placebo_pairs(config, dataset)
    config = placebo_config(config)
    prov = {"model": config.model, "data": config.data.framework, "record_mode": config.record.mode,
            "placebo": f"{placebo.plus} vs {placebo.minus}"}
    sets = RULES.get(config.locate.rule)(config, halves, [placebo], prov)
    exps = EDITS.get(config.intervene.kind)(config, sets, placebo, metric)
    with_controls(config, exps, offset=self.seed_stride * len(self.units(config, dataset, sets)),
                  activity=activity)
    return UnitPlan(placebo.name, metric.items(config, dataset, self, real), exps), sets

  def choice_sources(self, config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
    """The eval split's situations or dilemmas of one pair (before the eval_items cap)."""
    raise NotImplementedError

  def aligned(self, pair: Pair) -> str:
    """The option label (in choice prompts' meta) of the value-aligned action: a dilemma's own "aligned"."""
    return "aligned"

  def eval_sources(self, config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
    """The first `intervene.eval_items` sources written in data.lang; an empty list is an error."""
    n, lang = config.intervene.eval_items, config.data.lang
    sources = [x for x in self.choice_sources(config, dataset, pair) if _written_in(x, lang)]
    sources = sources[:n] if n else sources
    if not sources:
      raise ValueJaxError(f"no '{config.intervene.eval_split}' items in language {lang!r} to evaluate "
                          f"{pair.name}", dataset.root, "check intervene.eval_split and data.lang")
    return sources

  def choice_items(self, config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
    """The eval items as (question, aligned action, violating action)."""
    from valuejax.evaluate import ForcedChoiceItem
    lang, out = config.data.lang, []
    for x in self.eval_sources(config, dataset, pair):
      if isinstance(x, vdata.Situation):
        # A situation has one action per aspect of its dimension: the aligned one is the pair's `plus`, the
        # violating one the other aspect's, whether the pair contrasts that aspect or plus's reversed group.
        rival = [k for k in x.actions if k != pair.plus]
        if pair.plus not in x.actions or len(rival) != 1:
          raise ValueJaxError(f"situation {x.id} has actions {sorted(x.actions)}, not {pair.plus}'s and one rival's",
                              dataset.root, "give every situation one action per aspect of its dimension")
        out.append(ForcedChoiceItem(f"{x.situation} {x.question}", x.actions[pair.plus], x.actions[rival[0]], x.id))
      else:
        t = x.texts[lang]
        out.append(ForcedChoiceItem(t.context, t.aligned, t.violating, x.id))
    return out

  def example_prompts(self, config: mlc.ConfigDict, dataset: vdata.Dataset, unit: Pair, n: int
                      ) -> list[vdata.Prompt]:
    """A few open questions of the pair's eval items, answered before and after editing in the report."""
    return [vdata.Prompt(it.question, unit.name, it.item_id, chat=bool(config.data.chat))
            for it in self.choice_items(config, dataset, unit)[:n]]


def placebo_config(config: mlc.ConfigDict) -> mlc.ConfigDict:
  """The config the placebo unit is planned, scored and tested under: the run's own, with every unit in the
  primary family (`intervene.primary_pairs` names real units only), so that the placebo gets the primary edits'
  replicates, their sequential scoring and the primary test's pooled test."""
  import copy
  out = copy.deepcopy(config)
  out.intervene.primary_pairs = ()
  return out


def _written_in(x: Any, lang: str) -> bool:
  return x.lang == lang if isinstance(x, vdata.Situation) else lang in x.texts


def check_groups(groups: Sequence[str], known: Sequence[str], key: str, what: str) -> None:
  unknown = [g for g in groups if g not in known]
  if unknown:
    raise ValueJaxError(f"unknown {what} {unknown}", f"--config.{key}", f"use ids from {', '.join(known)}")


def exclusive_mask(ns: Any, group: str, exclude: Sequence[str]) -> np.ndarray:
  """The group's neurons that no excluded group holds."""
  mask = ns.mask(group)
  if exclude:
    mask = mask & ~np.any([ns.mask(g) for g in exclude], axis=0)
  return mask
