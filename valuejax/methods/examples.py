"""Example answers for the report: a few eval questions answered by the unedited model and under each located
edit at full strength."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections as mlc

from valuejax import data as vdata


def example_rows(model: Any, prompts: list[vdata.Prompt]) -> list[list[int]]:
  """Token ids of the example prompts, encoded as the record stage encodes them: a model that needs <bos>
  without a chat template (Gemma) gets it, or its answers are garbage."""
  from valuejax.engine import special_ids
  from valuejax.engine.record import encode_prompt
  bos = special_ids(model.tokenizer, model.config).bos
  return [encode_prompt(model.tokenizer, q, bos) for q in prompts]


def examples(config: mlc.ConfigDict, model: Any, plan: list[Any]) -> list[Any]:
  import valuejax
  from valuejax.engine import pack_rows, special_ids
  from valuejax.engine.generate import Sampling
  from valuejax.evaluate import GenerationRecord
  from valuejax.intervene import baseline
  c, tok, cfg = config.intervene, model.tokenizer, model.config
  ids = special_ids(tok, cfg)
  out = []
  for p in plan:
    prompts = p.example_prompts
    if not prompts or not p.experiments:
      continue
    strongest = max((e.params.get("gamma", 0.0) for e in p.experiments), default=0.0)
    edits = [e.edit for e in p.experiments if e.params.get("gamma", 0.0) == strongest]
    edits.insert(0, dataclasses.replace(baseline(edits[0].shape), scope=edits[0].scope))
    tokens, mask = pack_rows(example_rows(model, prompts), pad_id=ids.pad)
    for e in edits:
      g = valuejax.generate(model.params, cfg, tokens, mask, c.example_max_new_tokens,
                            sampling=Sampling(repetition_penalty=config.record.repetition_penalty),
                            seed=config.seed, edit=e.neurons, edit_scope=e.scope, pad_id=ids.pad, eos_ids=list(ids.eos))
      for q, row, n in zip(prompts, g.tokens, g.lengths):
        meta = {k: v for k, v in e.metadata.items() if isinstance(v, (int, float, str, bool))}
        out.append(GenerationRecord(q.id, q.text, tok.decode(row[:n].tolist(), skip_special_tokens=True),
                                    e.name, 0, {"pair": p.name, **meta}))
  return out
