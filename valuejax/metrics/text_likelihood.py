"""text_likelihood: mean log-probability per token of held-out texts of the group (LAPE's measure)."""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import METRICS, Metric, Scored, needs, scoring_kwargs


@METRICS.register("text_likelihood")
class TextLikelihood(Metric):
  name = "text_likelihood"
  config_keys = {"intervene.text_prefix": None}
  description = "mean log-probability per token of held-out texts of the group"

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    needs(method, "held_out_texts", self.name, "held-out texts per group")

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[Any]:
    return method.held_out_texts(config, dataset, unit)

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[Any], edits: Sequence[Any]) -> Scored:
    from valuejax.evaluate import continuation_logprobs_many
    prefix = config.intervene.text_prefix
    scores = continuation_logprobs_many(model.params, model.config, model.tokenizer, [prefix] * len(items),
                                        [" " + x.text for x in items], edits, **scoring_kwargs(config))
    return Scored(np.stack([s.mean_logprob for s in scores]))
