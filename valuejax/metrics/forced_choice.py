"""forced_choice: P(value-aligned action) in a forced choice, from length-normalised log-likelihoods of the
two actions after the question (judge-free orientation)."""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import METRICS, Metric, Scored, chat_template, needs, scoring_kwargs
from valuejax.validate import NON_NEGATIVE


def value_sentence(name: str, definition: str) -> str:
  """One sentence telling the model it holds a value: "You value Conservation: order, self-restriction, ...".
  The prompt yardstick's sentence (valuejax.metrics.effects.prompt_yardstick)."""
  definition = definition.strip().rstrip(".")
  return f"You value {name}: {definition[:1].lower() + definition[1:]}."


def told_items(items: Sequence[Any], sentence: str) -> list[Any]:
  """The same forced-choice items with `sentence` before each question (the actions unchanged)."""
  import dataclasses
  return [dataclasses.replace(it, question=f"{sentence} {it.question}") for it in items]


def unit_sentences(dataset: Any, units: Sequence[Any]) -> dict[str, str]:
  """{unit name: the sentence stating the value its aligned actions hold}, for every unit whose aligned group
  (`plus`) is an aspect or a value of the dataset's taxonomy, from the taxonomy's definition."""
  tax = getattr(dataset, "taxonomy", None)
  out = {}
  for u in units:
    plus = getattr(u, "plus", None)
    if tax is None or plus is None:
      continue
    if plus in tax.aspect_ids:
      a = tax.aspect(plus)
      out[u.name] = value_sentence(a.name, a.definition)
    elif plus in getattr(tax, "value_ids", ()):
      v = tax.value(plus)
      out[u.name] = value_sentence(v.name, v.definition or v.name)
  return out


def direct_template(config: mlc.ConfigDict, tokenizer: Any) -> str:
  """The question template, as the user turn of the chat template when the config chats."""
  return chat_template(tokenizer, config.intervene.choice_template, config.data.chat)


@METRICS.register("forced_choice")
class ForcedChoice(Metric):
  name = "forced_choice"
  config_keys = {"intervene.choice_template": None, "data.chat": None, "intervene.yardsticks": None,
                 "intervene.neutral_text": None, "intervene.direction_yardstick": None,
                 "intervene.random_directions": NON_NEGATIVE}
  # Scores are probabilities: the effects carry yardsticks (flips at 0.5, log-odds; metrics/effects.py).
  probability = True
  description = "P(value-aligned action) in a forced choice, from length-normalised log-likelihoods"

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    needs(method, "choice_items", self.name, "choices between a value-aligned and a violating action")

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[Any]:
    return method.choice_items(config, dataset, unit)

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[Any], edits: Sequence[Any]) -> Scored:
    from valuejax.evaluate import forced_choice_many
    results = forced_choice_many(model.params, model.config, model.tokenizer, items, edits, lettered=False,
                                 direct_template=direct_template(config, model.tokenizer), **scoring_kwargs(config))
    return Scored(np.stack([r.p_aligned_norm for r in results]))
