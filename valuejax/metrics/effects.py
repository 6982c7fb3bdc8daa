"""Effects of a plan's edits: every edit of a unit and its controls scored in one call, each located edit's
paired change against the unedited model, its CI, and its p-value as a rank among its controls.

The result (a list of `valuejax.workdir.results.UnitResult`) is what `intervene/metrics.json` holds under
"units"; the report reads it back through `valuejax.workdir.read_intervene`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import ml_collections as mlc
import numpy as np

from valuejax.metrics.base import Metric, Scored, item_ids
from valuejax.workdir.results import DirectionYardstick, EffectRecord, SequentialLook, UnitResult

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


def _concat(parts: list[Scored]) -> Scored:
  """Scored of several calls on the same items, their edits in call order."""
  if len(parts) == 1:
    return parts[0]
  cat = lambda vs: np.concatenate([np.asarray(v) for v in vs]) if isinstance(vs[0], np.ndarray) else sum(
      (list(v) for v in vs), [])
  return Scored(np.concatenate([np.asarray(x.values, np.float64) for x in parts]),
                texts=sum((list(x.texts) for x in parts), []) if all(x.texts for x in parts) else [],
                components={k: cat([x.components[k] for x in parts]) for k in parts[0].components},
                detail={k: cat([x.detail[k] for x in parts]) for k in parts[0].detail})


class _Unit:
  """One unit's scores as they accumulate over calls: rows of the baseline, of each located edit and of
  each of its controls scored so far (in replicate order)."""

  def __init__(self, plan: Any):
    self.plan, self.parts, self.rows = plan, [], 0
    self.edit_row: list[int] = []
    self.control_rows: list[list[int]] = [[] for _ in plan.experiments]

  def add(self, scored: Scored) -> int:
    """Appends one call's scores; returns the row of its first edit."""
    self.parts.append(scored)
    first, self.rows = self.rows, self.rows + len(scored.values)
    self._scored = None
    return first

  @property
  def scored(self) -> Scored:
    if getattr(self, "_scored", None) is None:
      self._scored = _concat(self.parts)
      self.parts = [self._scored]
    return self._scored


def sequential_groups(config: mlc.ConfigDict, plan: list[Any]) -> list[list[tuple[int, int]]]:
  """The (unit, experiment) indices whose controls run under the sequential rule, grouped by test: one group
  for a pooled primary test (its replicate r is control r of every edit), one per edit for "each". Empty when
  `intervene.sequential_h` is 0 or no primary test is declared."""
  from valuejax.methods.design import primary_params
  c = config.intervene
  if not c.sequential_h or not c.primary_test:
    return []
  family = [(u, i) for u, p in enumerate(plan) if p.items for i, e in enumerate(p.experiments)
            if e.controls and primary_params(c, e.params, e.pair)]
  if not family:
    return []
  return [family] if c.primary_test == "pooled" else [[x] for x in family]


def evaluate(config: mlc.ConfigDict, model: Any, plan: list[Any], metric: Metric,
             generated: list[Any] | None = None) -> list[UnitResult]:
  """Scores of every edit per unit and their effects; `generated` collects the answers of the baseline and
  the located edits when the metric generates (controls are many and only enter the null distribution).

  With `intervene.sequential_h` = h > 0 the controls of the declared primary edits are scored after the
  baseline and every located edit, in blocks of h replicates (replicate r of every primary edit of every unit
  in one call per unit), and the Besag-Clifford rule is checked after each block in replicate order: once a
  test is decided its remaining replicates are never scored. Control i is the same edit however many run, so
  an early stop only leaves the tail out. Every other edit's controls are scored in full with the edits.
  """
  from valuejax.evaluate import permutation_p, sequential_p, summarize_effect
  c = config.intervene
  h = int(c.sequential_h)
  groups = sequential_groups(config, plan)
  seq = {x for g in groups for x in g}
  total = sum(1 + sum(1 + len(e.controls) for e in p.experiments) for p in plan if p.items)
  done, start = 0, time.perf_counter()

  def timed(items: list[Any], edits: list[Any], what: str) -> Scored:
    nonlocal done
    scored = metric.score(config, model, items, edits)
    scored.values = np.asarray(scored.values, np.float64)
    done += len(edits)
    eta = (time.perf_counter() - start) / done * (total - done)
    log.info("intervene: %d/%d evaluations at most (%s), ETA %.0f s at most", done, total, what, eta)
    return scored

  units: dict[int, _Unit] = {}
  for u, p in enumerate(plan):
    if not p.items:
      log.warning("intervene: %s has no evaluation items; skipped", p.name)
      continue
    unit = units[u] = _Unit(p)
    edits, k = [None], 1
    for i, e in enumerate(p.experiments):
      later = (u, i) in seq
      unit.edit_row.append(k)
      unit.control_rows[i] = [] if later else list(range(k + 1, k + 1 + len(e.controls)))
      edits += [e.edit] + ([] if later else list(e.controls))
      k = len(edits)
    unit.add(timed(p.items, edits, f"{p.name}: baseline, {len(edits) - 1} edits and controls"))

  looks = _sequential(config, metric, units, groups, h, timed, sequential_p)

  results = []
  for u, unit in units.items():
    p, items, scored = unit.plan, unit.plan.items, unit.scored
    all_scores = scored.values
    pair = lambda k: metric.paired(config, scored, items, 0, k)
    base = all_scores[0]
    if generated is not None:
      generated += metric.records(p.name, items, scored, 0, "baseline", {})
    effects, not_computable = [], []
    for i, e in enumerate(p.experiments):
      ek, ctrl_ks = unit.edit_row[i], unit.control_rows[i]
      edited = all_scores[ek]
      if generated is not None:
        generated += metric.records(p.name, items, scored, ek, e.edit.name, _plain(e.params))
      b, x, dropped = pair(ek)
      # Each control pairs with the baseline on its own parsed items, as the located edit does.
      ctrl = [pair(j) for j in ctrl_ks]
      usable = [(cb, cx) for cb, cx, _ in ctrl if cb.size >= MIN_PAIRED]
      control_effects = [float((cx - cb).mean()) for cb, cx in usable]
      components = control_components = detail = None
      if scored.components:
        # The terms of the score, each as a mean change against the baseline (e.g. the target language's
        # loss and the other's), for the located edit and every control.
        change = lambda v, j: float(np.nanmean(v[j] - v[0]))
        components = {name: change(v, ek) for name, v in scored.components.items()}
        control_components = {name: [change(v, j) for j in ctrl_ks] for name, v in scored.components.items()}
      if scored.detail:
        detail = {name: v[ek] for name, v in scored.detail.items()}
      common = dict(unit=p.name, edit=e.edit.name, params=dict(e.params), expected=e.alternative,
                    n_neurons=_n_edited(e.edit), n_dropped=dropped, control_n_dropped=[d for _, _, d in ctrl],
                    scores=json_scores(edited), control_scores=[json_scores(all_scores[j]) for j in ctrl_ks],
                    # Controls this edit had planned (the sequential rule's R_max) and those scored.
                    controls_planned=len(e.controls), controls_scored=len(ctrl_ks), components=components,
                    control_components=control_components, detail=detail,
                    control_activity=getattr(e, "control_activity", None))
      if b.size < MIN_PAIRED:
        # Not a 0 effect and not 50/50: there is nothing to compare.
        not_computable.append(EffectRecord(**common, computable=False, n=int(b.size),
                                           describe=f"{e.edit.name}: not computable, {b.size} item(s) parsed "
                                                    f"under both the baseline and the edit ({dropped} dropped)"))
        continue
      summary = summarize_effect(x, b, name=e.edit.name, alternative=e.alternative, alpha=c.alpha,
                                 n_boot=c.n_boot, seed=config.seed)
      look = looks.get((u, i))
      if control_effects:
        # The null distribution: each control's mean paired change (as summarize_effect computes it when
        # no item is missing), here over that control's own paired items.
        if c.primary_test == "each" and (u, i) in seq:
          # The edit's own sequential p over its controls in order (an unusable control is skipped).
          ordered = [float((cx - cb).mean()) if cb.size >= MIN_PAIRED else np.nan for cb, cx, _ in ctrl]
          sp = sequential_p(summary.mean, ordered, h, len(e.controls), e.alternative)
          look = SequentialLook.from_json(sp.to_dict())
          p_value = sp.p_value
        else:
          p_value = permutation_p(summary.mean, control_effects, e.alternative)
        summary = dataclasses.replace(summary, p_value=p_value, n_controls=len(control_effects),
                                      control_mean=float(np.mean(control_effects)))
      if getattr(metric, "probability", False) and c.yardsticks:
        common["yardsticks"] = effect_yardsticks(base, edited, [all_scores[j] for j in ctrl_ks], n_boot=c.n_boot,
                                                 level=summary.level, seed=config.seed)
      effects.append(EffectRecord(
          **common, computable=True, n=summary.n, mean=summary.mean, ci_low=summary.ci_low,
          ci_high=summary.ci_high, level=summary.level, p_value=summary.p_value, n_controls=summary.n_controls,
          alternative=summary.alternative, alpha=summary.alpha, control_mean=summary.control_mean,
          significant=summary.significant, sequential=look, control_effects=control_effects,
          control_sd=float(np.std(control_effects, ddof=1)) if len(control_effects) > 1 else None,
          controls_not_computable=len(ctrl) - len(usable), describe=summary.describe()))
    parsed = np.isfinite(base)
    results.append(UnitResult(
        unit=p.name, item_ids=item_ids(items), baseline=json_scores(base),
        baseline_mean=float(base[parsed].mean()) if parsed.any() else None, baseline_parsed=int(parsed.sum()),
        # Kept apart from `effects`, whose entries all carry a mean and a CI for the report.
        effects=effects, not_computable=not_computable,
        evaluations=1 + sum(1 + len(r) for r in unit.control_rows),
        detail={name: v[0] for name, v in scored.detail.items()} if scored.detail else None))
  return results


def _sequential(config: mlc.ConfigDict, metric: Metric, units: dict[int, _Unit], groups: list[list[tuple[int, int]]],
                h: int, timed: Any, sequential_p: Any) -> dict[tuple[int, int], SequentialLook]:
  """Scores the sequential groups' controls in blocks of h replicates until each group's rule decides (see
  evaluate). The statistic is the one the primary test reads back: for a pooled group the pooled signed mean
  over the group's edits (valuejax.evaluate.replicate_effects), for one edit its mean paired change. Returns
  the looks per (unit, experiment) of each edit whose group stopped, for the results."""
  from valuejax.evaluate import PooledEdit, replicate_effects
  pooled = config.intervene.primary_test == "pooled"

  def paired_effect(unit: _Unit, row: int) -> float:
    b, x, _ = metric.paired(config, unit.scored, unit.plan.items, 0, row)
    return float((x - b).mean()) if b.size >= MIN_PAIRED else np.nan

  def state(group: list[tuple[int, int]]):
    """(observed, ordered replicate statistics so far, alternative), or None when a located edit is not
    computable (it leaves the family, as in the primary test read back from the results)."""
    live = [(u, i) for u, i in group if np.isfinite(paired_effect(units[u], units[u].edit_row[i]))]
    if not live:
      return None
    if not pooled:
      (u, i), = live
      unit = units[u]
      obs = paired_effect(unit, unit.edit_row[i])
      return obs, [paired_effect(unit, j) for j in unit.control_rows[i]], unit.plan.experiments[i].alternative
    v = lambda u, j: units[u].scored.values[j]
    edits = [PooledEdit(v(u, 0), v(u, units[u].edit_row[i]),
                        np.stack([v(u, j) for j in units[u].control_rows[i]]) if units[u].control_rows[i]
                        else np.zeros((0, v(u, 0).size)),
                        1.0 if units[u].plan.experiments[i].alternative == "greater" else -1.0, units[u].plan.name)
             for u, i in live]
    with np.errstate(all="ignore"):
      obs = float(np.mean([e.sign * np.nanmean(e.edited - e.baseline) for e in edits]))
    return obs, replicate_effects(edits), "greater"

  active = [g for g in groups if state(g) is not None]
  out: dict[tuple[int, int], SequentialLook] = {}
  r = 0
  while active:
    for_unit: dict[int, list[tuple[int, Any]]] = {}
    for g in active:
      for u, i in g:
        for_unit.setdefault(u, []).extend((i, ctl) for ctl in units[u].plan.experiments[i].controls[r:r + h])
    for u, todo in for_unit.items():
      unit = units[u]
      if not todo:
        continue
      first = unit.add(timed(unit.plan.items, [ctl for _, ctl in todo],
                             f"{unit.plan.name}: primary control replicates {r}-{r + h - 1}"))
      for k, (i, _) in enumerate(todo):
        unit.control_rows[i].append(first + k)
    r += h
    still = []
    for g in active:
      obs, stats, alternative = state(g)
      r_max = min(len(units[u].plan.experiments[i].controls) for u, i in g)
      sp = sequential_p(obs, stats, min(h, r_max), r_max, alternative)  # h > R_max: every replicate
      if sp.decided or r >= r_max:
        looked = SequentialLook.from_json({**sp.to_dict(), "replicates_scored": min(len(units[u].control_rows[i])
                                                                                    for u, i in g)})
        log.info("intervene: sequential p %s after %d of %d replicates (%s)", sp.p_value, sp.looked, r_max,
                 sp.stopped)
        for x in g:
          out[x] = looked
      else:
        still.append(g)
    active = still
  return out


# -- yardsticks: how big an effect on a probability is, on other scales --------------------------------------

# P(aligned) is kept this far from 0 and 1 before its log-odds are taken: a forced choice's probability is a
# sigmoid of a log-likelihood difference, which float64 rounds to exactly 0 or 1 beyond about 37 nats; the
# clip bounds a log-odds at +-13.8 (log(1e6)), beyond any difference a scored choice has shown.
LOGIT_EPS = 1e-6


def log_odds(p: np.ndarray) -> np.ndarray:
  """log(p / (1 - p)), elementwise, with p clipped to [LOGIT_EPS, 1 - LOGIT_EPS] (NaN stays NaN)."""
  p = np.clip(np.asarray(p, np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
  return np.log(p) - np.log1p(-p)


def flip_share(baseline: np.ndarray, edited: np.ndarray) -> float | None:
  """The share of items, among those scored under both, whose preferred action changes under the edit:
  P(aligned) above 0.5 on one side and not on the other. None when no item is scored under both."""
  b, x = np.asarray(baseline, np.float64), np.asarray(edited, np.float64)
  ok = np.isfinite(b) & np.isfinite(x)
  if not ok.any():
    return None
  return float(np.mean((b[ok] > 0.5) != (x[ok] > 0.5)))


def effect_yardsticks(baseline: np.ndarray, edited: np.ndarray, controls: list[np.ndarray], *, n_boot: int,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any]:
  """An edit's change in a probability on two more scales: the share of items whose preferred action flips
  (the edit's, and its controls' mean), and the mean change in log-odds with its bootstrap CI (the controls'
  mean beside it). The log-odds CI resamples items as the effect's own CI does."""
  from valuejax.evaluate import bootstrap_ci
  b, x = np.asarray(baseline, np.float64), np.asarray(edited, np.float64)
  ok = np.isfinite(b) & np.isfinite(x)
  d = log_odds(x[ok]) - log_odds(b[ok])
  lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed) if d.size else (None, None)
  ctrl_flips = [f for f in (flip_share(b, c) for c in controls) if f is not None]

  def ctrl_logodds(c: np.ndarray) -> float | None:
    both = np.isfinite(b) & np.isfinite(c)
    return float(np.mean(log_odds(c[both]) - log_odds(b[both]))) if both.any() else None
  ctrl_lo = [v for v in (ctrl_logodds(np.asarray(c, np.float64)) for c in controls) if v is not None]
  return {"flips": flip_share(b, x), "control_flips": float(np.mean(ctrl_flips)) if ctrl_flips else None,
          "logodds": float(d.mean()) if d.size else None, "logodds_ci": [lo, hi],
          "control_logodds": float(np.mean(ctrl_lo)) if ctrl_lo else None,
          "control_logodds_sd": float(np.std(ctrl_lo, ddof=1)) if len(ctrl_lo) > 1 else None}


def prompt_yardstick(config: mlc.ConfigDict, model: Any, metric: Metric, items: list[Any], baseline: np.ndarray,
                     sentence: str) -> dict[str, Any]:
  """The unedited model told the value: the same forced choice with `sentence` before every question, its
  mean change against the unedited scores (`baseline`, the unit's), the CI of that mean, and the told scores.
  How far the metric moves when the model is told the value, the scale a located effect is read against."""
  from valuejax.evaluate import bootstrap_ci
  from valuejax.intervene import baseline as identity
  from valuejax.metrics.forced_choice import told_items
  shape = (model.config.num_layers, model.config.intermediate_size)
  told = np.asarray(metric.score(config, model, told_items(items, sentence), [identity(shape)]).values[0], np.float64)
  b = np.asarray(baseline, np.float64)
  ok = np.isfinite(b) & np.isfinite(told)
  d = told[ok] - b[ok]
  lo, hi = bootstrap_ci(d, n_boot=config.intervene.n_boot, seed=config.seed) if d.size else (None, None)
  return {"sentence": sentence, "n": int(d.size), "mean": float(d.mean()) if d.size else None, "ci": [lo, hi],
          "logodds": float(np.mean(log_odds(told[ok]) - log_odds(b[ok]))) if d.size else None,
          "flips": flip_share(b, told), "scores": json_scores(told)}


# Every neutral sentence is scored as the continuation of this context, so that a steering edit (scope
# "generated") reaches every one of its tokens, as it reaches an answer's. A visible word, not a newline: a
# tokenizer without a BOS token would leave a bare newline with nothing to condition on.
NEUTRAL_PREFIX = "Text:"


def read_neutral_text(config: mlc.ConfigDict) -> list[str]:
  """The neutral sentences of `intervene.neutral_text` ("shipped": data/neutral_text.jsonl; else a path to a
  JSON-lines file of {"id", "lang", "text"}); [] when it is ""."""
  import json
  import os
  from valuejax.data.readers import shipped_data_dir
  from valuejax.errors import ValueJaxError
  where = config.intervene.neutral_text
  if not where:
    return []
  path = str(shipped_data_dir() / "neutral_text.jsonl") if where == "shipped" else where
  if not os.path.isfile(path):
    raise ValueJaxError(f"no neutral text file at {path}", "--config.intervene.neutral_text",
                        "give a JSON-lines file of {\"id\", \"lang\", \"text\"}, 'shipped' or '' (none)")
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  texts = [r.get("text") for r in rows]
  if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
    raise ValueJaxError(f"{path} has no sentences, or a row without a \"text\"", "--config.intervene.neutral_text",
                        "write one {\"id\", \"lang\", \"text\"} object per line")
  return texts


def neutral_losses(config: mlc.ConfigDict, model: Any, texts: list[str], edits: list[Any]) -> tuple[float, list[float]]:
  """Loss per token (nats, all sentences' tokens pooled) of `texts` on the unedited model and under each edit."""
  from valuejax.evaluate import continuation_logprobs_many
  from valuejax.metrics.base import scoring_kwargs
  scores = continuation_logprobs_many(model.params, model.config, model.tokenizer, [NEUTRAL_PREFIX] * len(texts),
                                      texts, [None] + list(edits), **scoring_kwargs(config))
  loss = [float(-np.sum(s.sum_logprob) / np.sum(s.num_tokens)) for s in scores]
  return loss[0], loss[1:]


def prompt_scale(told: dict[str, Any] | None) -> bool:
  """Whether a prompt yardstick can be a scale to read an effect against: it exists and its change is told
  apart from none (its CI excludes 0). A share of a change that may be 0 has no scale: it can be any size and
  either sign, so none is reported (the report prints n/a)."""
  if not told or told.get("mean") is None:
    return False
  lo, hi = (told.get("ci") or [None, None])[:2]
  return lo is not None and hi is not None and (lo > 0 or hi < 0)


def add_yardsticks(config: mlc.ConfigDict, model: Any, metric: Metric, plan: list[Any], results: list[UnitResult],
                   sentences: dict[str, str]) -> tuple[list[UnitResult], dict[str, Any] | None]:
  """The results with each unit's prompt yardstick (`sentences`: {unit: the sentence stating its value}; a
  unit without one gets none), each effect's share of it (signed in the predicted direction: 1 = the edit
  moves the metric as far as telling the model the value does; none where `prompt_scale` says the prompt
  yardstick is no scale), and each located edit's loss on the neutral
  text beside the unedited model's. Returns (results, the neutral text's summary or None)."""
  c = config.intervene
  if not (getattr(metric, "probability", False) and c.yardsticks):
    return results, None
  texts = read_neutral_text(config)
  by_name = {p.name: p for p in plan}
  edits = [(r.unit, e.edit) for r in results for e in r.effects]
  exp_of = {(p.name, e.edit.name): e.edit for p in plan for e in p.experiments}
  base_loss, losses = neutral_losses(config, model, texts, [exp_of[k] for k in edits]) if texts and edits else (
      None, [])
  loss_of = dict(zip(edits, losses))
  out = []
  for r in results:
    told = None
    if r.unit in sentences and r.unit in by_name:
      told = prompt_yardstick(config, model, metric, by_name[r.unit].items, np.asarray(
          [np.nan if v is None else v for v in r.baseline], np.float64), sentences[r.unit])
    effects = []
    for e in r.effects:
      y = dict(e.yardsticks or {})
      if prompt_scale(told):
        sign = 1.0 if e.expected == "greater" else -1.0
        y["prompt_fraction"] = sign * e.mean / told["mean"]
      if (r.unit, e.edit) in loss_of:
        y["neutral_loss"] = loss_of[(r.unit, e.edit)]
        y["neutral_change"] = loss_of[(r.unit, e.edit)] - base_loss
      effects.append(dataclasses.replace(e, yardsticks=y or None))
    out.append(dataclasses.replace(r, effects=effects, prompt_yardstick=told))
  neutral = {"baseline": base_loss, "sentences": len(texts), "prefix": NEUTRAL_PREFIX} if texts else None
  return out, neutral


# -- directions of the located edit's size -------------------------------------------------------------------

def direction_yardsticks(config: mlc.ConfigDict, model: Any, metric: Metric, plan: list[Any],
                         results: list[UnitResult], units: list[Any], stats: Any | None) -> list[UnitResult]:
  """The results with each located primary edit's direction yardstick (`EffectRecord.directions`): the same
  items scored under a diff-in-means edit and under `intervene.random_directions` random Gaussian directions,
  each added to the MLP activations of the located edit's layers at its positions and scaled to the L2 norm
  of the located edit's expected change to the mean activation vector (valuejax.intervene.directions).

  The diff-in-means direction of a pair (plus X, minus Y) is mean activation of X minus that of Y per neuron,
  from the recorded statistics (`stats`, record/stats.npz); the norm is taken on the mean activation of X and
  Y pooled. An edit predicted to raise the metric adds +alpha d, one predicted to lower it -alpha d (enhance
  and reverse); the random directions take the same sign. Only forced-choice-like metrics (`probability`)
  with `intervene.yardsticks` and `intervene.direction_yardstick` on, only units that are pairs of recorded
  groups, and only the primary family's edits (design.in_primary): 1 + K evaluations each, one call per unit.
  """
  from valuejax.intervene import directions as dirs
  from valuejax.methods.design import in_primary
  from valuejax.validate import require
  c = config.intervene
  if not (getattr(metric, "probability", False) and c.yardsticks):
    return results
  require(config, ["intervene.direction_yardstick", "intervene.random_directions"], "the direction yardstick")
  if not c.direction_yardstick or stats is None:
    return results
  k = int(c.random_directions)
  pairs = {u.name: u for u in units if hasattr(u, "plus") and hasattr(u, "minus")}
  by_name = {p.name: p for p in plan}
  exp_of = {(p.name, e.edit.name): e.edit for p in plan for e in p.experiments}
  out = []
  for r in results:
    pair, p = pairs.get(r.unit), by_name.get(r.unit)
    todo = [i for i, e in enumerate(r.effects) if in_primary(c, e) and (r.unit, e.edit) in exp_of]
    if pair is None or p is None or not todo or not all(g in stats.group_names for g in (pair.plus, pair.minus)):
      out.append(r)
      continue
    d = dirs.diff_in_means(stats, pair.plus, pair.minus)
    mean = dirs.group_mean(stats, [pair.plus, pair.minus])
    seed = dirs.direction_seed(config.seed, r.unit)
    randoms = dirs.random_directions(d.shape, k, seed)
    edits, info = [], []
    for i in todo:
      e = r.effects[i]
      located = exp_of[(r.unit, e.edit)]
      layers = dirs.edited_layers(located)
      norm = dirs.edit_norm(located, mean)
      # An edit that changes nothing in expectation (no located neuron, or neurons that are never positive under a
      # clamp), or a recording whose groups do not differ on its layers, has no direction of its size: no yardstick.
      if not (norm["norm"] > 0 and np.linalg.norm(d[layers]) > 0):
        continue
      sign = 1.0 if e.expected == "greater" else -1.0
      made = [dirs.direction_edit(d, layers, norm["norm"], sign=sign, scope=located.scope,
                                  name=f"{e.edit} diff-in-means", kind="diff_in_means")]
      made += [dirs.direction_edit(x, layers, norm["norm"], sign=sign, scope=located.scope,
                                   name=f"{e.edit} random direction {j}", kind="random_direction")
               for j, x in enumerate(randoms)]
      info.append((i, norm, layers, made[0].metadata))
      edits += made
    if not edits:
      out.append(r)
      continue
    scored = metric.score(config, model, p.items, edits)
    base = np.asarray([np.nan if v is None else v for v in r.baseline], np.float64)
    values = np.vstack([base[None], np.asarray(scored.values, np.float64)])
    both = Scored(values)

    def change(row: int) -> tuple[float | None, int]:
      b, x, _ = metric.paired(config, both, p.items, 0, row)
      return (float((x - b).mean()) if b.size >= MIN_PAIRED else None), int(b.size)

    effects = list(r.effects)
    for n, (i, norm, layers, meta) in enumerate(info):
      row = 1 + n * (1 + k)
      dim_mean, dim_n = change(row)
      rand = [change(row + 1 + j)[0] for j in range(k)]
      usable = [v for v in rand if v is not None]
      effects[i] = dataclasses.replace(effects[i], directions=DirectionYardstick(
          norm=norm["norm"], push_norm=norm["push_norm"], clamp_norm=norm["clamp_norm"],
          layers=tuple(int(x) for x in np.flatnonzero(layers)), n_neurons=meta["n_neurons"],
          groups=(pair.plus, pair.minus), sign=meta["sign"], dim_norm=meta["direction_norm"],
          alpha=meta["alpha"], mean=dim_mean, n=dim_n, scores=tuple(json_scores(values[row])), seed=seed,
          random_means=tuple(rand), random_mean=float(np.mean(usable)) if usable else None,
          random_sd=float(np.std(usable, ddof=1)) if len(usable) > 1 else None))
    log.info("intervene: %s: diff-in-means and %d random directions for %d primary edits", r.unit, k, len(info))
    out.append(dataclasses.replace(r, effects=effects))
  return out
