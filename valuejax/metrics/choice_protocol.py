"""choice_protocol: support (0-1) for the value-aligned option stated in a generated "Option A: x% Option B:
y%" verdict (ValueExploration's protocol); effects over items parsed before and after."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import METRICS, Metric, Scored, answer_generator, chat_template, needs
from valuejax.validate import POSITIVE


@dataclasses.dataclass(frozen=True)
class ProtocolItem:
  """One dilemma (or situation) as a choice-protocol prompt; `aligned` is the letter of the value-aligned
  option, which differs per item because half of the items list their options in reverse."""
  item_id: str
  question: str
  aligned: str


@METRICS.register("choice_protocol")
class ChoiceProtocol(Metric):
  name = "choice_protocol"
  config_keys = {"intervene.max_new_tokens": POSITIVE, "data.lang": None, "data.chat": None}
  generates = True
  description = ("support (0-1) for the value-aligned option stated in a generated 'Option A: x% Option B: y%' "
                 "verdict (ValueExploration's protocol); effects over items parsed before and after")

  def __init__(self, generator: Any = None):
    # One Generator for every unit and edit: it keeps one compiled executable per shape bucket, and the edit
    # is an argument of that executable, so edits of one shape never recompile.
    self._generator = generator

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    needs(method, "eval_sources", self.name, "options to choose between")

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[ProtocolItem]:
    """The same eval items as forced_choice, as choice-protocol prompts (both metrics score one item set)."""
    from valuejax import data as vdata
    sources = method.eval_sources(config, dataset, unit)
    aligned = method.aligned(unit)
    prompts = vdata.choice_protocol_prompts(sources, lang=config.data.lang, taxonomy=dataset.taxonomy)
    return [ProtocolItem(p.item_id, p.text, "A" if p.meta["labels"][0] == aligned else "B") for p in prompts]

  def generator(self, config: mlc.ConfigDict, model: Any):
    if self._generator is None:
      self._generator = answer_generator(config, model)
    return self._generator

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[ProtocolItem], edits: Sequence[Any]
            ) -> Scored:
    """Greedy answers under each edit, parsed to support for the aligned option in [0, 1]; NaN = unparsed."""
    from valuejax.engine import pack_rows, special_ids
    from valuejax.engine.generate import Sampling
    from valuejax.evaluate import parse_option_support
    c, tok = config.intervene, model.tokenizer
    template = chat_template(tok, "{question}", config.data.chat)
    rows = [list(tok(template.format(question=x.question), add_special_tokens=False)["input_ids"]) for x in items]
    pad = special_ids(tok, model.config).pad
    sampling = Sampling(repetition_penalty=config.record.repetition_penalty)
    generate = self.generator(config, model)
    scores, all_texts = np.full((len(edits), len(items)), np.nan), []
    for k, e in enumerate(edits):
      kw = {} if e is None else e.generate_kwargs()
      texts = []
      for s in range(0, len(rows), c.batch_size):
        ids, mask = pack_rows(rows[s:s + c.batch_size], pad_id=pad)
        g = generate(ids, mask, c.max_new_tokens, sampling=sampling, seed=config.seed, **kw)
        texts += [tok.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(g.tokens, g.lengths)]
      for i, (x, t) in enumerate(zip(items, texts)):
        r = parse_option_support(t, x.aligned)
        if r.parsed:
          scores[k, i] = r.aligned / 100.0
      all_texts.append(texts)
    return Scored(scores, texts=all_texts)

  def paired(self, config: mlc.ConfigDict, scored: Scored, items: Sequence[ProtocolItem], base: int, edited: int
             ) -> tuple[np.ndarray, np.ndarray, int]:
    from valuejax.evaluate import paired_support
    ps = paired_support(scored.texts[base], scored.texts[edited], [x.aligned for x in items])
    return ps.baseline / 100.0, ps.edited / 100.0, ps.n_dropped

  def records(self, unit: str, items: Sequence[ProtocolItem], scored: Scored, k: int, edit: str,
              meta: dict[str, Any]) -> list[Any]:
    from valuejax.evaluate import GenerationRecord
    return [GenerationRecord(x.item_id, x.question, t, edit, 0,
                             {"pair": unit, "metric": self.name, "aligned": x.aligned,
                              "support_aligned": float(s) if np.isfinite(s) else None, **meta})
            for x, t, s in zip(items, scored.texts[k], scored.values[k])]
