"""What each method feeds the model: recording prompts per group, and the evaluation items of each edit.

Wires `valuejax.data` (items, templates) to the engine's `Prompt` and the evaluators' item types.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax import data as vdata
from valuejax.errors import ValueJaxError

_SENTINEL = "\x00VALUEJAX_CONTENT\x00"


@dataclasses.dataclass(frozen=True)
class Pair:
  """Two groups contrasted against each other: ValueLocate's opposing aspects, or one value's
  support / conflict prompts in ValueExploration."""
  name: str
  plus: str
  minus: str
  eval_key: str  # the taxonomy dimension (ValueLocate) or value (ValueExploration) of its eval items


def load_dataset(config: mlc.ConfigDict) -> vdata.Dataset:
  d = config.data
  if config.method == "valueexploration" and (d.get("cvoice_activation") or d.get("cvoice_eval")):
    return _cvoice_release(config)
  return vdata.load_framework(d.framework)


def _cvoice_release(config: mlc.ConfigDict) -> vdata.Dataset:
  """Released C-voice workbooks by path: the activation folder and/or the evaluation workbook."""
  d = config.data
  base = vdata.load_framework(d.framework)
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


def pairs(config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[Pair]:
  """The contrasted group pairs the config asks for, checked against the taxonomy."""
  tax = dataset.taxonomy
  if config.method == "valueexploration":
    values = list(config.data.value_ids) or list(tax.value_ids)
    unknown = [v for v in values if v not in tax.value_ids]
    if unknown:
      raise ValueJaxError(f"unknown value(s) {unknown}", "--config.data.value_ids",
                          f"use ids from {', '.join(tax.value_ids)}")
    return [Pair(v, f"{v}-support", f"{v}-conflict", v) for v in values]
  if config.method == "lape":
    raise ValueJaxError("LAPE contrasts all groups at once, not pairs")
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


def record_groups(config: mlc.ConfigDict, dataset: vdata.Dataset) -> list[str]:
  if config.data.groups:
    return list(config.data.groups)
  if config.method == "languages":
    return list(config.data.langs)
  if config.method == "lape":
    return list(dataset.taxonomy.aspect_ids)
  return [g for p in pairs(config, dataset) for g in (p.plus, p.minus)]


def record_prompts(config: mlc.ConfigDict, dataset: vdata.Dataset) -> tuple[list[str], list[Any]]:
  """(groups, engine prompts) for the record stage, `data.items_per_group` per group."""
  from valuejax.engine.record import Prompt
  d = config.data
  groups = record_groups(config, dataset)
  if config.method == "valuelocate":
    built = vdata.valuelocate_prompts(dataset, split="locate", lang=d.lang,
                                      questions_per_description=d.questions_per_description, seed=d.seed,
                                      groups=groups)
  elif config.method == "valueexploration":
    built = vdata.cvoice_prompts([x for x in dataset.dilemmas if x.split == "locate"], dataset.taxonomy,
                                 lang=d.lang)
  elif config.method == "languages":
    built = [vdata.Prompt(x.texts[g], g, x.item_id, "raw", g)
             for x in language_items(config, dataset, "locate", d.items_per_group) for g in groups]
  else:
    built = [vdata.Prompt(x.text, x.group, x.id, "raw", x.lang) for x in _lape_texts(config, dataset)[0]]
  by_group: dict[str, list] = {g: [] for g in groups}
  for p in built:
    if p.group in by_group and (not d.items_per_group or len(by_group[p.group]) < d.items_per_group):
      by_group[p.group].append(p)
  empty = [g for g, items in by_group.items() if not items]
  if empty:
    raise ValueJaxError(f"no recording prompts for group(s) {empty}", dataset.root,
                        "check data.groups, data.lang and that the framework has items for them")
  chat = d.chat and config.record.mode == "generate"
  prompts = [Prompt(f"{p.group}/{p.item_id}", p.group,
                    messages=[{"role": "user", "content": p.text}] if chat else None,
                    text=None if chat else p.text)
             for g in groups for p in by_group[g]]
  return groups, prompts


def _lape_texts(config: mlc.ConfigDict, dataset: vdata.Dataset) -> tuple[list, list]:
  """LAPE's (record, held-out) description texts per aspect: the first items_per_group of each group
  are recorded, the next eval_items are scored under deactivation."""
  record, held_out = [], []
  n, m = config.data.items_per_group, config.intervene.eval_items
  for g in record_groups(config, dataset):
    items = [x for x in dataset.descriptions if x.group == g and x.lang == config.data.lang]
    if n and len(items) <= n:
      raise ValueJaxError(f"group {g!r} has {len(items)} descriptions, none left to evaluate on after "
                          f"recording {n}", "--config.data.items_per_group", "record fewer items per group")
    record += items[:n] if n else items
    held_out += items[n:n + m] if m else items[n:]
  return record, held_out


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


def chat_template(tokenizer: Any, template: str, use_chat: bool) -> str:
  """`template` (a str.format string) wrapped as the user turn of the tokenizer's chat template."""
  if not use_chat or not getattr(tokenizer, "chat_template", None):
    return template
  text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True,
                                       tokenize=False)
  head, _, tail = text.partition(_SENTINEL)
  escape = lambda s: s.replace("{", "{{").replace("}", "}}")
  return escape(head) + template + escape(tail)


def forced_choice_items(config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair) -> list[Any]:
  """The eval split's items of one pair: the aligned action is the `plus` group's."""
  from valuejax.evaluate import ForcedChoiceItem
  n = config.intervene.eval_items
  lang = config.data.lang
  if config.method == "valuelocate":
    sits = [s for s in dataset.situations if s.split == config.intervene.eval_split
            and s.dimension == pair.eval_key and s.lang == lang]
    items = [ForcedChoiceItem(f"{s.situation} {s.question}", s.actions[pair.plus], s.actions[pair.minus], s.id)
             for s in sits]
  else:
    dils = [x for x in dataset.dilemmas if x.split == config.intervene.eval_split and x.value == pair.eval_key]
    items = [ForcedChoiceItem(x.texts[lang].context, x.texts[lang].aligned, x.texts[lang].violating, x.id)
             for x in dils if lang in x.texts]
  items = items[:n] if n else items
  if not items:
    raise ValueJaxError(f"no '{config.intervene.eval_split}' items in language {lang!r} to evaluate "
                        f"{pair.name}", dataset.root, "check intervene.eval_split and data.lang")
  return items


def held_out_texts(config: mlc.ConfigDict, dataset: vdata.Dataset) -> dict[str, list[Any]]:
  """LAPE: held-out descriptions per group, scored by likelihood under each group's deactivation."""
  out: dict[str, list[Any]] = {}
  for x in _lape_texts(config, dataset)[1]:
    out.setdefault(x.group, []).append(x)
  return out


def example_prompts(config: mlc.ConfigDict, dataset: vdata.Dataset, pair: Pair, n: int) -> list[Any]:
  """A few open questions of the pair's eval items, answered before and after editing in the report."""
  from valuejax.engine.record import Prompt
  items = forced_choice_items(config, dataset, pair)[:n]
  chat = config.data.chat
  return [Prompt(f"{pair.name}/{it.item_id}", pair.plus,
                 messages=[{"role": "user", "content": it.question}] if chat else None,
                 text=None if chat else it.question) for it in items]


def names(items: Sequence[Any]) -> list[str]:
  return [getattr(x, "item_id", None) or getattr(x, "id") for x in items]
