"""Reading an effect without overclaiming: in the predicted direction or not, and whether random neuron sets of
the same per-layer counts do as much. `verdict` is the one reading: the per-run report, its primary section and
the results page all take their words from it, so the same numbers get the same words everywhere.
"""

from __future__ import annotations

from valuejax.workdir.results import EffectRecord, PooledResult

CAUSAL = "causal"
SUGGESTIVE = "suggestive"
NOT_SPECIFIC = "not specific"
OPPOSITE = "opposite"
NO_EFFECT = "no effect"
UNTESTED = "effect, untested"


def verdict(x: EffectRecord | PooledResult, what: str = "the metric") -> tuple[str, str]:
  """(label, one sentence) for one edit's effect (EffectRecord) or a pooled test's result (PooledResult, e.g.
  the primary test or a grid point), `what` naming the measured quantity in a pooled test's sentence.

  An edit: causal when the 95% CI excludes 0 in the predicted direction and the located set moves the metric
  further than the random controls (p <= alpha); suggestive as causal, and further than every control, but
  with too few controls for p to reach alpha; not specific when the CI excludes 0 but controls do as much;
  opposite when the CI excludes 0 against the prediction; no effect when the CI includes 0.

  A pooled test (signed: the predicted direction counted +): causal when significant (CI above 0 and p <=
  alpha), else opposite (CI below 0), not specific (CI above 0) or no effect (CI covers 0).
  """
  if isinstance(x, PooledResult):
    return _pooled(x, what)
  return _edit(x)


def _pooled(r: PooledResult, what: str) -> tuple[str, str]:
  if r.significant:
    return CAUSAL, (f"the located neurons move {what} as predicted, further than random neurons with the same "
                    "per-layer counts")
  if r.ci_high < 0:
    return OPPOSITE, f"the located edits move {what} against the prediction"
  if r.ci_low > 0:
    return NOT_SPECIFIC, f"{what} moves as predicted, but random neurons of the same shape move it as much"
  return NO_EFFECT, f"the pooled change of {what} is indistinguishable from 0"


def _edit(e: EffectRecord) -> tuple[str, str]:
  greater = e.expected == "greater"
  toward = e.ci_low > 0 if greater else e.ci_high < 0
  against = e.ci_high < 0 if greater else e.ci_low > 0
  ci = f"{e.mean:+.3g} [{e.ci_low:+.3g}, {e.ci_high:+.3g}]"
  if against:
    return OPPOSITE, f"moves the metric against the prediction ({ci})"
  if not toward:
    return NO_EFFECT, f"the 95% CI of the change includes 0 ({ci})"
  controls = list(e.control_effects)
  if not controls:
    return UNTESTED, f"changes the metric as predicted ({ci}); no random controls ran at this setting"
  beyond_all = all((c < e.mean) if greater else (c > e.mean) for c in controls)
  floor = 1.0 / (1 + len(controls))
  if e.p_value is not None and e.p_value <= e.alpha:
    return CAUSAL, f"changes the metric as predicted ({ci}), more than random neurons (p = {e.p_value:.3g})"
  if beyond_all and floor > e.alpha:
    return SUGGESTIVE, (f"changes the metric as predicted ({ci}), more than all {len(controls)} random "
                        f"controls, but p = {floor:.3g} is the smallest possible with {len(controls)} controls "
                        f"(run {int(round(1 / e.alpha)) - 1} or more for a test at alpha {e.alpha:g})")
  p = float("nan") if e.p_value is None else e.p_value
  return NOT_SPECIFIC, (f"changes the metric ({ci}), but random neurons with the same per-layer counts do as "
                        f"much (p = {p:.3g})")
