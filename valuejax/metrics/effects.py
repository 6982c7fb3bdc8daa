"""Effects of a plan's edits: every edit of a unit and its controls scored in one call, each located edit's
paired change against the unedited model, its CI, and its p-value as a rank among its controls.

The result (a list of per-unit dicts) is what `intervene/metrics.json` holds under "pairs"; the report
reads it through `valuejax.workdir`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import Metric, Scored, item_ids

log = logging.getLogger("valuejax")

# Fewer paired items than this and an effect (or a control's effect) is reported as not computable: a mean
# and a bootstrap CI of one difference say nothing.
MIN_PAIRED = 2


def json_scores(x: np.ndarray) -> list[float | None]:
  # NaN is not JSON; null marks an unparsed answer.
  return [float(v) if np.isfinite(v) else None for v in np.asarray(x, np.float64)]


def _n_edited(edit: Any) -> int:
  return int(edit.edited_mask().sum())


def _plain(d: dict[str, Any]) -> dict[str, Any]:
  return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool))}


def evaluate(config: mlc.ConfigDict, model: Any, plan: list[Any], metric: Metric,
             generated: list[Any] | None = None) -> list[dict[str, Any]]:
  """Scores of every edit per unit and their effects; `generated` collects the answers of the baseline and
  the located edits when the metric generates (controls are many and only enter the null distribution)."""
  from valuejax.evaluate import permutation_p, summarize_effect
  c = config.intervene
  total = sum(1 + sum(1 + len(e.controls) for e in p.experiments) for p in plan if p.items)
  done, start = 0, time.perf_counter()

  def timed(items: list[Any], edits: list[Any], what: str) -> Scored:
    nonlocal done
    scored = metric.score(config, model, items, edits)
    scored.values = np.asarray(scored.values, np.float64)
    done += len(edits)
    eta = (time.perf_counter() - start) / done * (total - done)
    log.info("intervene: %d/%d evaluations (%s), ETA %.0f s", done, total, what, eta)
    return scored

  results = []
  for p in plan:
    items = p.items
    if not items:
      log.warning("intervene: %s has no evaluation items; skipped", p.name)
      continue
    edits = [None] + [x for e in p.experiments for x in (e.edit, *e.controls)]
    scored = timed(items, edits, f"{p.name}: baseline, {len(edits) - 1} edits and controls")
    all_scores = scored.values
    pair = lambda k: metric.paired(config, scored, items, 0, k)
    base = all_scores[0]
    if generated is not None:
      generated += metric.records(p.name, items, scored, 0, "baseline", {})
    effects, not_computable, k = [], [], 1
    for e in p.experiments:
      edited, ek = all_scores[k], k
      ctrl_ks = list(range(k + 1, k + 1 + len(e.controls)))
      k += 1 + len(e.controls)
      if generated is not None:
        generated += metric.records(p.name, items, scored, ek, e.edit.name, _plain(e.params))
      b, x, dropped = pair(ek)
      # Each control pairs with the baseline on its own parsed items, as the located edit does.
      ctrl = [pair(j) for j in ctrl_ks]
      usable = [(cb, cx) for cb, cx, _ in ctrl if cb.size >= MIN_PAIRED]
      control_effects = [float((cx - cb).mean()) for cb, cx in usable]
      common = {"pair": p.name, "edit": e.edit.name, **e.params, "expected": e.alternative,
                "n_neurons": _n_edited(e.edit), "n_dropped": dropped,
                "control_n_dropped": [d for _, _, d in ctrl], "scores": json_scores(edited),
                "control_scores": [json_scores(all_scores[j]) for j in ctrl_ks]}
      if scored.components:
        # The terms of the score, each as a mean change against the baseline (e.g. the target language's
        # loss and the other's), for the located edit and every control.
        change = lambda v, j: float(np.nanmean(v[j] - v[0]))
        common["components"] = {name: change(v, ek) for name, v in scored.components.items()}
        common["control_components"] = {name: [change(v, j) for j in ctrl_ks]
                                        for name, v in scored.components.items()}
      if scored.detail:
        common["detail"] = {name: v[ek] for name, v in scored.detail.items()}
      if b.size < MIN_PAIRED:
        # Not a 0 effect and not 50/50: there is nothing to compare.
        not_computable.append({**common, "computable": False, "n": int(b.size),
                               "describe": f"{e.edit.name}: not computable, {b.size} item(s) parsed under both "
                                           f"the baseline and the edit ({dropped} dropped)"})
        continue
      summary = summarize_effect(x, b, name=e.edit.name, alternative=e.alternative, alpha=c.alpha,
                                 n_boot=c.n_boot, seed=config.seed)
      if control_effects:
        # The null distribution: each control's mean paired change (as summarize_effect computes it when
        # no item is missing), here over that control's own paired items.
        summary = dataclasses.replace(summary, p_value=permutation_p(summary.mean, control_effects, e.alternative),
                                      n_controls=len(control_effects), control_mean=float(np.mean(control_effects)))
      effects.append({**common, **summary.to_dict(), "computable": True,
                      "control_effects": control_effects,
                      "control_sd": float(np.std(control_effects, ddof=1)) if len(control_effects) > 1 else None,
                      "controls_not_computable": len(ctrl) - len(usable), "describe": summary.describe()})
    parsed = np.isfinite(base)
    result = {"pair": p.name, "item_ids": item_ids(items), "baseline": json_scores(base),
              "baseline_mean": float(base[parsed].mean()) if parsed.any() else None,
              "baseline_parsed": int(parsed.sum()), "effects": effects,
              # Kept apart from `effects`, whose entries all carry a mean and a CI for the report.
              "not_computable": not_computable,
              "evaluations": 1 + sum(1 + len(e.controls) for e in p.experiments)}
    if scored.detail:
      result["detail"] = {name: v[0] for name, v in scored.detail.items()}
    results.append(result)
  return results

