"""pvq: the value profile of a PVQ questionnaire answered under each edit.

Every shipped portrait ("It is important to this person to ...") is answered on the 6-point scale A..F; a
portrait's score is the expected scale point from the next-token probabilities of the six letters. Centred
on the respondent's mean over all portraits (the PVQ's scoring rule, which removes a general tendency to
agree), the items of one pair are the portraits of its two aspects' values, signed + for the `plus` aspect
and - for the `minus` aspect: their mean rises when an edit moves the profile toward `plus`.

The answer is the next token after the prompt, so edits act on every position here (an edit of generated
tokens only could not change it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.metrics.base import METRICS, Metric, Scored, chat_template, needs


@dataclasses.dataclass(frozen=True)
class PortraitItem:
  item_id: str
  value: str
  sign: float  # +1: a value of the pair's plus aspect, -1: of its minus aspect


@METRICS.register("pvq")
class Pvq(Metric):
  name = "pvq"
  config_keys = {"data.lang": None, "data.chat": None}
  description = ("PVQ value profile: expected 1-6 answer to the portraits of the pair's two aspects, centred on "
                 "the respondent's mean over all portraits, signed + for the plus aspect and - for the minus")
  effect_of = "the PVQ value profile (toward the plus aspect)"

  def __init__(self):
    self._all: tuple[list[str], list[str], list[str]] = ([], [], [])  # every portrait: texts, values, ids

  def check(self, config: mlc.ConfigDict, method: Any) -> None:
    needs(method, "choice_sources", self.name, "opposing pairs of aspects")

  def _portraits(self, config: mlc.ConfigDict, dataset: Any) -> list[Any]:
    from valuejax import data as vdata
    return vdata.likert_prompts(dataset.portraits, lang=config.data.lang)

  def items(self, config: mlc.ConfigDict, dataset: Any, method: Any, unit: Any) -> list[PortraitItem]:
    tax = dataset.taxonomy
    # A value contrasted with its reversed descriptions is scored against the opposing aspect's values, as a
    # pair of opposing aspects is: portraits describe values people hold, and no value is "rejecting X".
    minus = tax.opposite(unit.plus) if unit.plus in tax.aspect_ids and unit.minus == unit.plus + "_reversed" \
        else unit.minus
    if unit.plus not in tax.aspect_ids or minus not in tax.aspect_ids:
      raise ValueJaxError(f"pvq scores the values of two opposing aspects; {unit.name} is not a pair of aspects",
                          "--config.intervene.metric", "use pvq with valuelocate on the Schwartz framework")
    sign = {v: s for a, s in ((unit.plus, 1.0), (minus, -1.0)) for v in tax.aspect(a).values}
    prompts = self._portraits(config, dataset)
    items = [PortraitItem(p.item_id, p.group, sign[p.group]) for p in prompts if p.group in sign]
    if not items:
      raise ValueJaxError(f"no '{config.data.lang}' PVQ portraits of the values of {unit.plus} and {minus}",
                          dataset.root, "add portraits (pvq_portraits.jsonl) or choose data.lang")
    # Every portrait is answered (the centring needs the respondent's mean), then the pair's are kept.
    self._all = ([p.text for p in prompts], [p.group for p in prompts], [p.item_id for p in prompts])
    return items

  def score(self, config: mlc.ConfigDict, model: Any, items: Sequence[PortraitItem], edits: Sequence[Any]) -> Scored:
    from valuejax.evaluate import likert_scores, pvq_profile
    texts, values, ids = self._all
    template = chat_template(model.tokenizer, "{question}", config.data.chat)
    prompts = [template.format(question=t) for t in texts]
    index = {i: k for k, i in enumerate(ids)}
    cols = [index[x.item_id] for x in items]
    sign = np.array([x.sign for x in items])
    c = config.intervene
    out, profiles, mass = np.zeros((len(edits), len(items))), [], []
    for k, e in enumerate(edits):
      if e is not None and e.scope == "generated":
        e = dataclasses.replace(e, scope="all")
      r = likert_scores(model.params, model.config, model.tokenizer, prompts, e, batch_size=c.batch_size,
                        buckets=tuple(c.length_buckets) or None)
      out[k] = sign * (r.expected[cols] - r.expected.mean())
      profiles.append(pvq_profile(r.expected, values))
      mass.append(float(r.letter_mass.mean()))
    return Scored(out, detail={"profile": profiles, "letter_mass": mass})

  def report_section(self, results: Any, root: str) -> list[str]:
    """The value profiles (the `profile` detail of the unedited model and of each located edit) as a figure
    per unit."""
    import os
    from valuejax.report import plots
    from valuejax.workdir import layout
    lines: list[str] = []
    for u in results.units:
      base = (u.detail or {}).get("profile")
      edited = [(e.edit, e.detail["profile"]) for e in u.edits if (e.detail or {}).get("profile")]
      if not base or not edited:
        continue
      if not lines:
        lines = ["## Value profiles", "", "Centred PVQ scores per value (each value's mean answer minus the mean "
                 "over all portraits), unedited and under each located edit.", ""]
      path = plots.plot_profiles(u.unit, [("unedited", base), *edited],
                                 os.path.join(root, layout.FIGURES, f"profile_{u.unit}.png"))
      lines += [f"![{u.unit} value profile]({plots.relpath(path, root)})", ""]
    return lines
