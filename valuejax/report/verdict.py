"""Reading an edit's effect without overclaiming: in the predicted direction or not, and whether random
neuron sets of the same per-layer counts do as much.
"""

from __future__ import annotations

from typing import Any, Mapping

CAUSAL = "causal"
SUGGESTIVE = "suggestive"
NOT_SPECIFIC = "not specific"
OPPOSITE = "opposite"
NO_EFFECT = "no effect"
UNTESTED = "effect, untested"


def verdict(e: Mapping[str, Any]) -> tuple[str, str]:
  """(label, one sentence) for an effect dict (EffectSummary.to_dict plus `expected`, `control_effects`).

  causal: the 95% CI excludes 0 in the predicted direction and the located set moves the metric further
  than the random controls (p <= alpha). suggestive: as causal, and further than every control, but there
  are too few controls for p to reach alpha. not specific: the CI excludes 0 but controls do as much.
  opposite: the CI excludes 0 against the prediction. no effect: the CI includes 0.
  """
  greater = e["expected"] == "greater"
  toward = e["ci_low"] > 0 if greater else e["ci_high"] < 0
  against = e["ci_high"] < 0 if greater else e["ci_low"] > 0
  ci = f"{e['mean']:+.3g} [{e['ci_low']:+.3g}, {e['ci_high']:+.3g}]"
  if against:
    return OPPOSITE, f"moves the metric against the prediction ({ci})"
  if not toward:
    return NO_EFFECT, f"no effect: the 95% CI of the change includes 0 ({ci})"
  controls = list(e.get("control_effects") or [])
  if not controls:
    return UNTESTED, f"changes the metric as predicted ({ci}); no random controls ran at this setting"
  beyond_all = all((c < e["mean"]) if greater else (c > e["mean"]) for c in controls)
  floor = 1.0 / (1 + len(controls))
  if e.get("p_value") is not None and e["p_value"] <= e.get("alpha", 0.05):
    return CAUSAL, f"changes the metric as predicted ({ci}), more than random neurons (p = {e['p_value']:.3g})"
  if beyond_all and floor > e.get("alpha", 0.05):
    return SUGGESTIVE, (f"changes the metric as predicted ({ci}), more than all {len(controls)} random "
                        f"controls, but p = {floor:.3g} is the smallest possible with {len(controls)} controls "
                        f"(run {int(round(1 / e.get('alpha', 0.05))) - 1} or more for a test at alpha "
                        f"{e.get('alpha', 0.05):g})")
  return NOT_SPECIFIC, (f"changes the metric ({ci}), but random neurons with the same per-layer counts do as "
                        f"much (p = {e.get('p_value', float('nan')):.3g})")


def pooled_label(r: Mapping[str, Any]) -> str:
  """The label of a pooled test's result (PooledTest.to_dict): causal when significant, else by its CI."""
  if r["significant"]:
    return CAUSAL
  return OPPOSITE if r["ci_high"] < 0 else NOT_SPECIFIC if r["ci_low"] > 0 else NO_EFFECT
