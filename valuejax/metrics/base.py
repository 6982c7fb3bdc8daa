"""What a metric is: how it builds its items from a method's unit, scores them under a batch of edits, pairs
baseline and edited scores (unparsed answers included), and in which direction a damaged model moves it.

A metric module subclasses `Metric` and registers the class in `METRICS`; the intervene stage makes one
instance per run (`METRICS.get(config.intervene.metric)()`), so an instance may cache what it compiles. What
the report shows of a metric beyond its effects (a profile, the terms of its score) is the metric's
`report_section`, so that a metric is one module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.registry import Registry

METRICS = Registry("metric", "intervene.metric", builtin="valuejax.metrics")

# Edits vmapped per compiled call. On CPU the continuation pass is already one large matrix product per
# layer, so bigger chunks buy little speed; they cost memory (each holds its own copy of the prompt cache).
EDIT_CHUNK = 8


@dataclasses.dataclass
class Scored:
  """Per-item scores under each edit ([E, N], NaN = not scored, e.g. an unparsed answer), with what else the
  metric read: generated answers ([E][N]), the terms of a composite score ({name: [E, N]})."""
  values: np.ndarray
  texts: list[list[str]] = dataclasses.field(default_factory=list)
  components: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  detail: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-edit extras the report may show


class Metric:
  name = ""
  description = ""
  effect_of = "value orientation"  # what the metric measures, in the words of the report's headline
  worse = "less"  # the direction a model that got worse at the unit's items moves the metric
  generates = False  # whether scoring generates answers (then the intervene stage decodes, see launch/runtime.py)

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    """Raises when the method cannot give this metric items (before any model runs)."""

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[Any]:
    raise NotImplementedError

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[Any], edits: Sequence[Any]) -> Scored:
    raise NotImplementedError

  def paired(self, config: mlc.ConfigDict, scored: Scored, items: Sequence[Any], base: int, edited: int
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """(baseline, edited, n_dropped) over the items scored under both: an item unscored under either would
    otherwise enter the mean as a silent 0 or 50/50."""
    s = scored.values
    ok = np.isfinite(s[base]) & np.isfinite(s[edited])
    return s[base][ok], s[edited][ok], int((~ok).sum())

  def records(self, unit: str, items: Sequence[Any], scored: Scored, k: int, edit: str, meta: dict[str, Any]
              ) -> list[Any]:
    """Generated answers worth keeping for the report's examples (metrics that generate)."""
    return []

  def report_section(self, results: Any, root: str) -> list[str]:
    """The metric's own part of report.md (markdown lines, headings at level 2, figures written under
    `root`'s report folder), from a run's `valuejax.workdir.InterveneResults` (its `components`, `detail`);
    the generic report places it after the effects table. Default: nothing."""
    return []


def answer_generator(config: mlc.ConfigDict, model: Any) -> Any:
  """The Generator a metric that generates answers under its edits uses (choice_protocol, judge): the model's
  special ids, and every batch run as `intervene.batch_size` rows, a short last one included, so that it
  compiles once per length bucket."""
  from valuejax.engine import special_ids
  from valuejax.engine.generate import Generator
  ids = special_ids(model.tokenizer, model.config)
  return Generator(model.params, model.config, pad_id=ids.pad, eos_ids=list(ids.eos),
                   batch_buckets=(config.intervene.batch_size,))


def item_ids(items: Sequence[Any]) -> list[str]:
  """The ids of eval items (each item type names its id `item_id` or `id`)."""
  return [getattr(x, "item_id", None) or getattr(x, "id") for x in items]


def needs(method: Any, hook: str, metric: str, what: str) -> None:
  """A metric that needs a method hook the method lacks gets one clear error, not an AttributeError."""
  if not hasattr(method, hook):
    raise ValueJaxError(f"method {method.name!r} has no {what} for metric {metric!r}", "--config.intervene.metric",
                        f"use a metric this method offers items for (see configs/{method.name}.py)")


def scoring_kwargs(config: mlc.ConfigDict) -> dict[str, Any]:
  c = config.intervene
  return dict(batch_size=c.batch_size, buckets=tuple(c.length_buckets) or None, chunk=EDIT_CHUNK)


_SENTINEL = "\x00VALUEJAX_CONTENT\x00"


def chat_template(tokenizer: Any, template: str, use_chat: bool) -> str:
  """`template` (a str.format string) wrapped as the user turn of the tokenizer's chat template."""
  if not use_chat or not getattr(tokenizer, "chat_template", None):
    return template
  text = tokenizer.apply_chat_template([{"role": "user", "content": _SENTINEL}], add_generation_prompt=True,
                                       tokenize=False)
  head, _, tail = text.partition(_SENTINEL)
  escape = lambda s: s.replace("{", "{{").replace("}", "}}")
  return escape(head) + template + escape(tail)
