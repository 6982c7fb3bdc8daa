"""The types a method's plan is made of: the units it edits (`Pair`, `Target`), each located edit with its
controls (`Experiment`) and one unit's plan (`UnitPlan`).

Their own module, below both `base` (which builds plans) and `design` (which adds controls and reads the primary
test back), so that neither imports the other for them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from valuejax import data as vdata


@dataclasses.dataclass(frozen=True)
class Pair:
  """Two groups contrasted against each other: ValueLocate's opposing aspects, or one value's
  support / conflict prompts in ValueExploration."""
  name: str
  plus: str
  minus: str
  eval_key: str  # the taxonomy dimension (ValueLocate) or value (ValueExploration) of its eval items


@dataclasses.dataclass(frozen=True)
class Target:
  """One group whose neurons are deactivated; with `exclude`, only the neurons no excluded group holds."""
  name: str
  group: str
  exclude: tuple[str, ...] = ()
  set: str = "lape"  # the neuron set (locate/<set>.npz) holding the group


@dataclasses.dataclass
class Experiment:
  """One located edit, the direction the method predicts it moves the metric, and its controls."""
  pair: str
  edit: Any  # valuejax.intervene.Edit
  alternative: str  # "greater" or "less"
  params: dict[str, Any]
  controls: list[Any]
  # Experiments of one family share replicate r of their random controls (design.with_controls): by default
  # the unit's own; units whose edits are one design across units (the deactivation targets of one neuron
  # set) name the same family.
  family: str | None = None
  # The activity of the located and control neurons (design.with_controls), when the statistics are known.
  control_activity: dict[str, Any] | None = None


@dataclasses.dataclass
class UnitPlan:
  """What the intervene stage does for one pair or target: its eval items, its edits (each with its
  controls), and the open questions answered before and after editing in the report."""
  name: str
  items: list[Any]
  experiments: list[Experiment]
  example_prompts: list[vdata.Prompt] = dataclasses.field(default_factory=list)
