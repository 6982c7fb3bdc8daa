"""language_nll: negative log-likelihood per token (nats) of a held-out text in the target language minus
that of the same text in the other language(s) (the positive control's measure)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import METRICS, Metric, Scored, needs, scoring_kwargs


@dataclasses.dataclass(frozen=True)
class LanguagePairItem:
  """One held-out dilemma as the text in the target language and the same text in the other language(s)."""
  item_id: str
  target: str
  others: tuple[str, ...]


@METRICS.register("language_nll")
class LanguageNLL(Metric):
  name = "language_nll"
  config_keys = {"intervene.max_text_tokens": None, "intervene.text_prefix": None}
  description = ("negative log-likelihood per token (nats) of a held-out text in the target language minus that "
                 "of the same text in the other language(s)")
  effect_of = "the target language's loss (relative to the other language's)"
  worse = "greater"

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    needs(method, "language_items", self.name, "texts written in several languages")

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[LanguagePairItem]:
    others = unit.exclude
    return [LanguagePairItem(x.item_id, x.texts[unit.group], tuple(x.texts[g] for g in others))
            for x in method.language_items(config, dataset, unit)]

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[LanguagePairItem], edits: Sequence[Any]
            ) -> Scored:
    """NLL per token of each target text minus the mean NLL per token of its other-language versions."""
    from valuejax.evaluate import continuation_logprobs_many
    c, n = config.intervene, len(items)
    texts = [x.target for x in items] + [t for x in items for t in x.others]
    scores = continuation_logprobs_many(model.params, model.config, model.tokenizer, [c.text_prefix] * len(texts),
                                        texts, edits, max_tokens=c.max_text_tokens or None,
                                        **scoring_kwargs(config))
    nll = -np.stack([s.mean_logprob for s in scores])  # [E, texts]
    target = nll[:, :n]
    other = nll[:, n:].reshape(len(edits), n, -1).mean(-1)
    return Scored(target - other, components={"target_nll": target, "other_nll": other})
