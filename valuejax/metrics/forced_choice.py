"""forced_choice: P(value-aligned action) in a forced choice, from length-normalised log-likelihoods of the
two actions after the question (judge-free orientation)."""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import METRICS, Metric, Scored, chat_template, needs, scoring_kwargs


def direct_template(config: mlc.ConfigDict, tokenizer: Any) -> str:
  """The question template, as the user turn of the chat template when the config chats."""
  return chat_template(tokenizer, config.intervene.choice_template, config.data.chat)


@METRICS.register("forced_choice")
class ForcedChoice(Metric):
  name = "forced_choice"
  config_keys = {"intervene.choice_template": None, "data.chat": None}
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
