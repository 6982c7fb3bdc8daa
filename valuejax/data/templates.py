"""Prompt templates (data/templates/*.json) and the builders that fill them from items.

Builders return plain prompt strings with metadata; chat formatting is left to the tokenizer later.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import string
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from valuejax.data.readers import read_text_utf8, shipped_data_dir
from valuejax.data.schema import Dataset, Dilemma, FrozenMap, Portrait, Situation, Taxonomy
from valuejax.errors import ValueJaxError

# The documented placeholders of every built-in template; a file may not add, drop or misspell one.
TEMPLATE_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "valuelocate_activation": ("description", "situation", "question"),
    "open_question": ("situation", "question"),
    "cvoice_support": ("value", "context", "option_a", "option_b"),
    "cvoice_conflict": ("anti_value", "context", "option_a", "option_b"),
    "cvoice_conflict_value_holder": ("value", "anti_value", "context", "option_a", "option_b"),
    "forced_choice": ("situation", "question", "option_a", "option_b"),
    "choice_protocol": ("situation", "question", "option_a", "option_b"),
    "likert_pvq": ("portrait", "scale"),
}
CVOICE_MODES = ("support", "conflict")
# Who speaks in a C-voice 'conflict' prompt. "anti_value" (the authors' protocol, activation.py): the support
# template with the anti-value in the value's place, so the two groups hold opposite values. "value_holder":
# the value's holder told that the dilemma pits the value against its anti-value; the two groups then differ by
# one sentence, which is kept only to compare with the authors' contrast (the manipulation check shows whether
# either persona moves the model's choices).
CONFLICT_PERSONAS = {"anti_value": "cvoice_conflict", "value_holder": "cvoice_conflict_value_holder"}


@dataclasses.dataclass(frozen=True)
class ScalePoint:
  letter: str
  label: str
  score: int


@dataclasses.dataclass(frozen=True)
class Template:
  """One prompt template in one or more languages, with optional per-language defaults and a scale."""
  name: str
  description: str
  placeholders: tuple[str, ...]
  texts: FrozenMap[str, str]
  defaults: FrozenMap[str, FrozenMap[str, str]] = FrozenMap()
  scale: FrozenMap[str, tuple[ScalePoint, ...]] = FrozenMap()
  source: str = ""

  def text(self, lang: str) -> str:
    if lang not in self.texts:
      raise ValueJaxError(f"template '{self.name}' has no '{lang}' text (it has: {', '.join(self.texts)})",
                          self.source, f"add a '{lang}' entry to its \"text\"")
    return self.texts[lang]

  def fill(self, lang: str, **values: str) -> str:
    """str.format with exactly the documented placeholders; defaults fill the ones not given."""
    for key, per_lang in self.defaults.items():
      if values.get(key) is None and lang in per_lang:
        values[key] = per_lang[lang]
    missing = [p for p in self.placeholders if values.get(p) is None]
    extra = [k for k in values if k not in self.placeholders]
    if missing or extra:
      raise ValueError(f"template '{self.name}': missing {missing}, unexpected {extra}")
    return self.text(lang).format(**values)


def _placeholders(text: str) -> list[str]:
  return [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]


def read_template(path: str | os.PathLike) -> Template:
  """One template file, checked: its placeholders are exactly the documented ones in every language."""
  path = Path(path)
  raw = read_text_utf8(path)
  lines = raw.splitlines()

  def where(needle: str | None = None) -> str:
    for n, line in enumerate(lines, 1):
      if needle and needle in line:
        return f"{path}:{n}"
    return f"{path}:1"

  try:
    obj = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueJaxError(f"not valid JSON ({e.msg} at column {e.colno})", f"{path}:{e.lineno}") from None
  if not isinstance(obj, dict):
    raise ValueJaxError("a template file must be a JSON object", where())
  for key in obj:
    if key not in ("name", "description", "placeholders", "text", "defaults", "scale", "notes"):
      raise ValueJaxError(f"unknown field '{key}' in template", where(f'"{key}"'))
  name = obj.get("name")
  if not isinstance(name, str) or name != path.stem:
    raise ValueJaxError(f"field 'name' must be the file name without .json ('{path.stem}'), got {name!r}",
                        where('"name"'))
  declared = obj.get("placeholders")
  if not isinstance(declared, list) or not all(isinstance(p, str) for p in declared):
    raise ValueJaxError("missing field 'placeholders' (the list of {names} the template uses)",
                        where('"placeholders"'))
  documented = TEMPLATE_PLACEHOLDERS.get(name, tuple(declared))
  if sorted(declared) != sorted(documented):
    raise ValueJaxError(f"field 'placeholders' lists {declared}, but '{name}' takes {list(documented)}",
                        where('"placeholders"'))
  texts = obj.get("text")
  if not isinstance(texts, dict) or not texts:
    raise ValueJaxError("missing field 'text' ({language: text or list of lines})", where('"text"'))
  out: dict[str, str] = {}
  for lang, t in texts.items():
    if isinstance(t, list) and all(isinstance(x, str) for x in t):
      t = "\n".join(t)  # a list of lines keeps long prompts readable in the JSON file
    if not isinstance(t, str) or not t.strip():
      raise ValueJaxError(f"field 'text.{lang}' is empty text", where(f'"{lang}"'))
    try:
      used = _placeholders(t)
    except ValueError as e:
      raise ValueJaxError(f"field 'text.{lang}' is not a valid format string ({e})", where(f'"{lang}"'),
                          "write literal braces as {{ and }}") from None
    for _, field, spec, conv in string.Formatter().parse(t):
      if field is not None and (spec or conv or not re.fullmatch(r"[a-z_]+", field)):
        raise ValueJaxError(f"field 'text.{lang}' has placeholder {{{field}}} with a format spec, "
                            "an index or an attribute", where(f"{{{field}"), "use plain {name} placeholders")
    unknown = sorted(set(used) - set(documented))
    unused = sorted(set(documented) - set(used))
    if unknown:
      raise ValueJaxError(f"field 'text.{lang}' uses undocumented placeholder(s) {unknown} "
                          f"(allowed: {list(documented)})", where("{" + unknown[0] + "}"))
    if unused:
      raise ValueJaxError(f"field 'text.{lang}' never uses placeholder(s) {unused}", where(f'"{lang}"'))
    out[lang] = t
  defaults = {}
  for key, per_lang in (obj.get("defaults") or {}).items():
    if key not in documented or not isinstance(per_lang, dict):
      raise ValueJaxError(f"field 'defaults' has '{key}', which is not one of its placeholders",
                          where(f'"{key}"'))
    defaults[key] = FrozenMap({k: str(v) for k, v in per_lang.items()})
  scale = {}
  for lang, points in (obj.get("scale") or {}).items():
    try:
      scale[lang] = tuple(ScalePoint(str(p["letter"]), str(p["label"]), int(p["score"])) for p in points)
    except (KeyError, TypeError, ValueError):
      raise ValueJaxError(f"field 'scale.{lang}' must be a list of {{letter, label, score}}",
                          where(f'"{lang}"')) from None
  if "scale" in documented and set(scale) != set(out):
    raise ValueJaxError("template fills {scale}, so 'scale' needs an entry for every language of 'text'",
                        where('"scale"'))
  return Template(name, str(obj.get("description", "")), tuple(documented), FrozenMap(out),
                  FrozenMap(defaults), FrozenMap(scale), str(path))


def load_templates(folder: str | os.PathLike | None = None) -> dict[str, Template]:
  """Every template in a folder (default: the shipped data/templates), checked; all built-ins required."""
  folder = Path(folder) if folder is not None else shipped_data_dir() / "templates"
  found = {p.stem: read_template(p) for p in sorted(folder.glob("*.json"))}
  missing = [n for n in TEMPLATE_PLACEHOLDERS if n not in found]
  if missing:
    raise ValueJaxError(f"missing template file(s): {', '.join(m + '.json' for m in missing)}", str(folder))
  return found


# ---------------------------------------------------------------------------------------------------
# Built prompts


@dataclasses.dataclass(frozen=True)
class Prompt:
  """A filled prompt: the text, the statistics group it counts towards, and where it came from.

  The one prompt type of valuejax, from the templates to the engine: with `chat`, the engine sends `text` as
  the user turn of the tokenizer's chat template (when it has one); without, it reads `text` as it is.
  """
  text: str
  group: str
  item_id: str
  template: str = "raw"
  lang: str = ""
  meta: FrozenMap[str, Any] = FrozenMap()
  chat: bool = False

  @property
  def id(self) -> str:
    """Unique within a run: the group and the item (an item can be recorded for several groups)."""
    return f"{self.group}/{self.item_id}"


def _templates(templates: dict[str, Template] | None) -> dict[str, Template]:
  return templates if templates is not None else load_templates()


def _swap(item_id: str, balance: bool) -> bool:
  # A hash of the id (not the position) decides the order, so it is the same in every run and subset.
  return balance and bool(zlib.crc32(item_id.encode("utf-8")) & 1)


def valuelocate_prompts(data: Dataset, split: str = "locate", lang: str = "en",
                        questions_per_description: int = 1, seed: int = 0,
                        groups: Sequence[str] | None = None,
                        templates: dict[str, Template] | None = None) -> list[Prompt]:
  """ValueLocate activation prompts: each value description paired with situational questions.

  Pairs each description of a group with `questions_per_description` situations of the aspect's own
  dimension (round-robin through a seeded shuffle, so every situation is used about equally often);
  `questions_per_description=0` pairs every description with every situation.
  """
  tpl = _templates(templates)["valuelocate_activation"]
  tax = data.taxonomy
  sits = [s for s in data.situations if s.split == split]
  by_group = data.descriptions_by_group()
  wanted = list(groups) if groups is not None else list(by_group)
  out = []
  for g in wanted:
    if g not in by_group:
      raise ValueJaxError(f"no value descriptions for group '{g}'", data.root,
                          f"groups with descriptions: {', '.join(by_group)}")
    descs = [d for d in by_group[g] if d.lang == lang]
    pool = [s for s in sits if s.dimension == _dimension_of(tax, descs[0].target if descs else g)
            and s.lang == lang] if tax.dimensions else [s for s in sits if s.lang == lang]
    if not descs or not pool:
      raise ValueJaxError(f"group '{g}' has {len(descs)} '{lang}' descriptions and {len(pool)} "
                          f"'{split}' situations to pair with", data.root)
    order = list(pool)
    random.Random(f"{seed}:{g}").shuffle(order)
    for k, d in enumerate(descs):
      chosen = order if questions_per_description == 0 else [
          order[(k * questions_per_description + i) % len(order)] for i in range(questions_per_description)]
      for s in chosen:
        text = tpl.fill(lang, description=d.text, situation=s.situation, question=s.question)
        out.append(Prompt(text, g, f"{d.id}+{s.id}", tpl.name, lang, FrozenMap({
            "description_id": d.id, "situation_id": s.id, "target": d.target, "reversed": d.reversed})))
  return out


def _dimension_of(tax: Taxonomy, label: str) -> str | None:
  if label in tax.aspect_ids:
    return tax.aspect(label).dimension
  for a in tax.aspects:
    if label in a.values:
      return a.dimension
  return None


def open_question_prompts(situations: Iterable[Situation], lang: str = "en",
                          templates: dict[str, Template] | None = None) -> list[Prompt]:
  """The situational question alone, for open answers that a judge later scores per aspect."""
  tpl = _templates(templates)["open_question"]
  return [Prompt(tpl.fill(lang, situation=s.situation, question=s.question), s.dimension, s.id, tpl.name,
                 lang, FrozenMap({"aspects": tuple(s.actions)})) for s in situations if s.lang == lang]


def cvoice_prompts(dilemmas: Iterable[Dilemma], taxonomy: Taxonomy, modes: Sequence[str] = CVOICE_MODES,
                   lang: str = "zh", templates: dict[str, Template] | None = None,
                   conflict_persona: str = "anti_value") -> list[Prompt]:
  """ValueExploration activation prompts: per dilemma, a 'support' and a 'conflict' role-play.

  Groups are '<value>-support' and '<value>-conflict'. 'support' speaks as one raised to revere the value;
  'conflict', by default, as one raised to revere the dilemma's anti-value (the same template, the anti-value in
  the value's place: the authors' protocol); `conflict_persona="value_holder"` keeps the value's holder and names
  the conflict instead (see CONFLICT_PERSONAS). Dilemmas without a `lang` text are skipped.
  """
  tpls = _templates(templates)
  for m in modes:
    if m not in CVOICE_MODES:
      raise ValueJaxError(f"unknown C-voice prompt mode '{m}'", fix=f"use {' or '.join(CVOICE_MODES)}")
  if conflict_persona not in CONFLICT_PERSONAS:
    raise ValueJaxError(f"unknown conflict persona {conflict_persona!r}", "--config.data.conflict_persona",
                        f"use {' or '.join(CONFLICT_PERSONAS)}")
  names = {"support": "cvoice_support", "conflict": CONFLICT_PERSONAS[conflict_persona]}
  out = []
  for d in dilemmas:
    t = d.texts.get(lang)
    if t is None:
      continue
    value = taxonomy.value(d.value).label(lang)
    for m in modes:
      tpl = tpls[names[m]]
      fields = {"value": value, "anti_value": d.anti_value[lang] if m == "conflict" else None}
      fields = {k: v for k, v in fields.items() if k in tpl.placeholders}
      text = tpl.fill(lang, context=t.context, option_a=t.aligned, option_b=t.violating, **fields)
      out.append(Prompt(text, f"{d.value}-{m}", d.id, tpl.name, lang,
                        FrozenMap({"value": d.value, "mode": m, "split": d.split})))
  if not out:
    raise ValueJaxError(f"no dilemma has a '{lang}' text", fix="choose a language the dilemmas are written in")
  return out


def _options(item: Situation | Dilemma, lang: str, swap: bool, taxonomy: Taxonomy | None
             ) -> tuple[str, str | None, tuple[str, str], tuple[str, str]]:
  """(situation text, question or None, option labels, option texts) in presentation order."""
  if isinstance(item, Situation):
    labels = tuple(item.actions)
    if taxonomy is not None:
      labels = tuple(a.id for a in taxonomy.dimension(item.dimension).aspects)
    texts = tuple(item.actions[a] for a in labels)
    context, question = item.situation, item.question
  else:
    t = item.texts.get(lang)
    if t is None:
      raise ValueJaxError(f"dilemma '{item.id}' has no '{lang}' text")
    labels, texts, context, question = ("aligned", "violating"), (t.aligned, t.violating), t.context, None
  if swap:
    labels, texts = labels[::-1], texts[::-1]
  return context, question, labels, texts


def _choice_prompts(name: str, items: Iterable[Situation | Dilemma], lang: str, balance: bool,
                    taxonomy: Taxonomy | None, templates: dict[str, Template] | None) -> list[Prompt]:
  tpl = _templates(templates)[name]
  out = []
  for it in items:
    if isinstance(it, Situation) and it.lang != lang:
      continue
    swap = _swap(it.id, balance)
    context, question, labels, texts = _options(it, lang, swap, taxonomy)
    text = tpl.fill(lang, situation=context, question=question, option_a=texts[0], option_b=texts[1])
    group = it.dimension if isinstance(it, Situation) else it.value
    out.append(Prompt(text, group, it.id, tpl.name, lang, FrozenMap({
        "letters": ("A", "B"), "labels": labels, "continuations": tuple(" " + t for t in texts),
        "swapped": swap})))
  return out


def forced_choice_prompts(items: Iterable[Situation | Dilemma], lang: str = "en", balance: bool = True,
                          taxonomy: Taxonomy | None = None,
                          templates: dict[str, Template] | None = None) -> list[Prompt]:
  """Situation + two options, for scoring the options' likelihood (judge-free orientation).

  meta['labels'][i] says which aspect (or 'aligned'/'violating') option A/B expresses; with `balance`
  half of the items (chosen by id) list the options in reverse, so position bias cancels out.
  """
  return _choice_prompts("forced_choice", items, lang, balance, taxonomy, templates)


def choice_protocol_prompts(items: Iterable[Situation | Dilemma], lang: str = "zh", balance: bool = True,
                            taxonomy: Taxonomy | None = None,
                            templates: dict[str, Template] | None = None) -> list[Prompt]:
  """Open generation that must end with 'Option A: x% Option B: y%' (ValueExploration's measure)."""
  return _choice_prompts("choice_protocol", items, lang, balance, taxonomy, templates)


def likert_prompts(portraits: Iterable[Portrait], lang: str = "en",
                   templates: dict[str, Template] | None = None) -> list[Prompt]:
  """PVQ portrait items answered on the 6-point A..F scale; meta maps each letter to its score."""
  tpl = _templates(templates)["likert_pvq"]
  points = tpl.scale[lang] if lang in tpl.scale else ()
  scale = "\n".join(f"{p.letter}. {p.label}" for p in points)
  return [Prompt(tpl.fill(lang, portrait=p.text, scale=scale), p.value, p.id, tpl.name, lang, FrozenMap({
      "letters": tuple(x.letter for x in points), "scores": tuple(x.score for x in points)}))
          for p in portraits if p.lang == lang]
