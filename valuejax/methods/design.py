"""The pre-declared design of an intervene run: the grid of steering settings, the controls of each edit,
and the primary test, all fixed by the config before any score exists, and the arithmetic that reads the
primary test and the grid back from the scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import ml_collections as mlc
import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.methods.types import Experiment
from valuejax.workdir.results import EffectRecord, GridPoint, PooledResult, PrimaryEdit, PrimaryResult, UnitResult


def grid_points(config: mlc.ConfigDict) -> list[dict[str, Any]]:
  """The steering settings to evaluate: `intervene.grid` ("size=0.005,gamma=2,steer=p", ...), else every
  gamma at the one located size and steer value."""
  c = config.intervene
  if not c.grid:
    return [{"gamma": float(g)} for g in c.gamma]
  return [parse_point(p) for p in c.grid]


def parse_point(spec: str) -> dict[str, Any]:
  """"size=0.005,gamma=2,steer=p" -> {"size": "0.005", "gamma": 2.0, "steer": "p"}: one grid point."""
  out: dict[str, Any] = {}
  for part in spec.split(","):
    key, sep, value = part.strip().partition("=")
    if not sep or key not in ("size", "gamma", "steer") or key in out:
      raise ValueJaxError(f"grid point {spec!r} is not 'size=S,gamma=G,steer=p|v95'", "--config.intervene.grid",
                          "write each point as size=<fraction, count or paper>,gamma=<number>,steer=<p or v95>")
    out[key] = value.strip()
  missing = {"size", "gamma", "steer"} - set(out)
  if missing:
    raise ValueJaxError(f"grid point {spec!r} lacks {', '.join(sorted(missing))}", "--config.intervene.grid",
                        "name size, gamma and steer in every point")
  try:
    out["gamma"] = float(out["gamma"])
  except ValueError:
    raise ValueJaxError(f"gamma in grid point {spec!r} is not a number", "--config.intervene.grid",
                        "e.g. gamma=2") from None
  if out["steer"] not in ("p", "v95"):
    raise ValueJaxError(f"steer in grid point {spec!r} must be p or v95", "--config.intervene.grid", "steer=p")
  return out


def with_controls(config: mlc.ConfigDict, exps: list[Experiment], offset: int = 0,
                  activity: dict[str, np.ndarray] | None = None) -> list[Experiment]:
  """Random controls for every experiment, or only for the strongest gamma of each mode.

  `exps` is one control family: a unit's experiments, or several units' sharing neurons (see
  Experiment.family). `intervene.controls`:
  - "mirrored" (default): replicate r is one random counterpart of the whole family, seeded by
    (control_seed + offset, r), so enhance r and reverse r use the same two random sets with roles swapped,
    as the located pair does, and the pooled null varies the family the way the located family varies.
  - "independent": each experiment's controls drawn on their own (seed control_seed + offset + i), as runs
    before mirrored controls did; kept so their numbers can be reproduced.
  `intervene.control_match`: "p" (default) or "mean" draws each replacement from the located neuron's
  quantile bin of that activity in its layer (`activity`, from record/stats.npz), so a control is not a set
  of quiet neurons; "layer" matches the layer only. "independent" with "layer" is the old behaviour exactly.
  With `activity`, each experiment's `control_activity` records the located and control neurons' activity.
  """
  from valuejax.intervene import ControlFamily, activity_summary, control_edits
  c = config.intervene
  strongest = max(c.gamma) if "gamma" in c else None
  mode, match = c.controls, c.control_match
  counts = []
  for e in exps:
    at_all = c.controls_at == "all"
    # Edits of the declared primary test get at least primary_controls (so that p can reach its floor); the parts of
    # an edit taken apart get intervene.decompose_controls, so that a grid can go without controls while they keep some.
    if e.params.get("part", "full") != "full":
      n = c.decompose_controls
    else:
      n = max(c.n_controls, c.primary_controls) if primary_params(c, e.params, e.pair) else c.n_controls
    counts.append(n if n and (at_all or e.params.get("gamma", strongest) == strongest) else 0)
  if not any(counts):
    return exps
  if match != "layer" and (activity is None or match not in activity):
    raise ValueJaxError(f"controls matched on activity ({match!r}) need the recorded statistics", "record/stats.npz",
                        "run the record stage for this config, or set intervene.control_match='layer'")
  bins_of = None if match == "layer" else activity[match]
  fallbacks = [0] * len(exps)
  if mode == "independent":
    for i, (e, n) in enumerate(zip(exps, counts)):
      if not n:
        continue
      seed = c.control_seed + offset + i
      if bins_of is None:
        e.controls = control_edits(e.edit, n, seed=seed)
      else:
        ctrl, fb = ControlFamily.of([e.edit], seed, bins_of).controls([e.edit], [n])
        e.controls, fallbacks[i] = ctrl[0], fb[0]
  else:
    # Every experiment's neurons are located neurons of the family, excluded from every control.
    ctrl, fallbacks = ControlFamily.of([e.edit for e in exps], c.control_seed + offset, bins_of).controls(
        [e.edit for e in exps], counts)
    for e, cs in zip(exps, ctrl):
      e.controls = cs
  for e, fb in zip(exps, fallbacks):
    if e.controls:
      masks = [x.edited_mask() for x in e.controls]
      measures = {k: activity_summary(v, e.edit.edited_mask(), masks) for k, v in (activity or {}).items()}
      e.control_activity = {"controls": mode, "match": match, "fallbacks": fb, **measures}
  return exps


def declared_primary(config: mlc.ConfigDict) -> str:
  """The primary test as the config fixes it before any score exists, in words (printed atop the report)."""
  c = config.intervene
  at = (f" at {c.primary_point}" if c.primary_point else
        f" at gamma {c.primary_gamma:g}" if c.primary_gamma else "")
  if c.primary_pairs:
    at += f" of {', '.join(c.primary_pairs)}"
  if c.primary_test == "pooled":
    what = (f"one pooled test: the mean over the located edits{at} of each edit's mean change, counted + in its "
            "predicted direction, against the same mean over control replicates")
  else:
    what = f"one test per located edit{at}, Holm-corrected across them"
  n = max(c.n_controls, c.primary_controls)
  h = c.sequential_h
  reps = (f"up to {n} random controls per edit, stopping once {h} replicates reach the located effect "
          "(sequential p)" if h else f"{n} random controls per edit")
  return (f"{what}; one-sided, alpha {c.alpha:g}; {reps} with the located set's per-layer counts; every other "
          "edit is exploratory")


def primary_params(c: mlc.ConfigDict, params: dict[str, Any], pair: str | None = None) -> bool:
  """Whether an edit with these parameters (of this pair or target, when given) belongs to the declared
  primary family. `intervene.primary_pairs` (a tuple of pair names; () = all) narrows the family to those
  units, declared before any score, e.g. where controls for every unit do not fit the budget. A part of an
  edit taken apart (params "part": push or clamp) is never in the family: the decomposition is exploratory."""
  if params.get("part", "full") != "full":
    return False
  if c.primary_pairs and pair is not None and pair not in tuple(c.primary_pairs):
    return False
  if c.primary_point:
    return all(params.get(k) == v for k, v in parse_point(c.primary_point).items())
  return not c.primary_gamma or params.get("gamma") == c.primary_gamma


def in_primary(c: mlc.ConfigDict, e: EffectRecord) -> bool:
  return bool(e.control_effects) and primary_params(c, e.params, e.unit)


def primary(config: mlc.ConfigDict, results: Sequence[UnitResult]) -> PrimaryResult | None:
  """The declared primary test over the located edits it names (None when the config declares none)."""
  from valuejax.evaluate import holm, mirror_correlation, pooled_test
  c = config.intervene
  if not c.primary_test:
    return None
  family = [(r, e) for r in results for e in r.effects if in_primary(c, e)]
  out = PrimaryResult(c.primary_test, declared_primary(config), c.alpha, [f"{r.unit}, {e.edit}" for r, e in family])
  if not family:
    return out
  # How the mirrored edits' replicates move together, beside the located edits' items (the report prints it).
  up = next((e.edit for _, e in family if e.expected == "greater"), "")
  down = next((e.edit for _, e in family if e.expected != "greater"), "")
  mirror = {**mirror_correlation(pooled_edits(family)).to_dict(), "edits": [up, down]}
  out = dataclasses.replace(out, extra={**out.extra, "mirror": mirror})
  if c.primary_test == "pooled":
    # With intervene.sequential_h the p is the sequential one, over the replicates in the order they were
    # scored, at most the fewest any primary edit had planned (R_max).
    h = int(c.sequential_h)
    r_max = min(e.controls_planned if e.controls_planned is not None else len(e.control_scores) for _, e in family)
    # h above R_max never stops early: the rule looks at every replicate (h = R_max, the fixed-R rank p).
    t = pooled_test(pooled_edits(family), alpha=c.alpha, n_boot=c.n_boot, seed=config.seed,
                    sequential_h=min(h, r_max) if r_max else h, r_max=r_max if h else None)
    return dataclasses.replace(out, pooled=PooledResult.from_json(t.to_dict()))
  adjusted = holm([e.p_value for _, e in family])
  return dataclasses.replace(out, each=[
      PrimaryEdit(f"{r.unit}, {e.edit}", e.mean, e.ci_low, e.ci_high, e.p_value, float(a),
                  bool(a <= c.alpha and toward(e)), bool(toward(e)), e.sequential)
      for (r, e), a in zip(family, adjusted)])


def grid_summary(config: mlc.ConfigDict, results: Sequence[UnitResult]) -> list[GridPoint] | None:
  """Per grid point: the pooled signed effect over every pair and mode (and per pair over its two modes),
  with its CI, the 5-95% band of its control replicates and a p-value, exploratory except at the primary
  point. None without a grid."""
  from valuejax.evaluate import pooled_test
  c = config.intervene
  if not c.grid:
    return None
  out = []
  for point in grid_points(config):
    at = [(r, e) for r in results for e in r.effects
          if all(e.params.get(k) == v for k, v in point.items()) and e.control_scores
          and e.params.get("part", "full") == "full"]
    if not at:
      continue
    summaries: dict[str, PooledResult] = {}
    groups = [("all", at)] + [(r.unit, [(rr, e) for rr, e in at if rr.unit == r.unit]) for r in results]
    for name, family in groups:
      if not family:
        continue
      t = pooled_test(pooled_edits(family), alpha=c.alpha, n_boot=c.n_boot, seed=config.seed)
      band = np.quantile(t.control_effects, [0.05, 0.95]).tolist() if t.control_effects else [None, None]
      summary = {**t.to_dict(), "control_band": band, "n_neurons": int(np.mean([e.n_neurons for _, e in family]))}
      summary.pop("control_effects")
      summaries[name] = PooledResult.from_json(summary)
    out.append(GridPoint(str(point["size"]), float(point["gamma"]), str(point["steer"]), primary_params(c, point),
                         summaries.pop("all"), summaries))
  return out


def pooled_edits(family: Sequence[tuple[UnitResult, EffectRecord]]) -> list[Any]:
  """(unit result, effect) pairs as pooled_test's edits: per-item scores (null = NaN), the sign of the
  predicted direction, the unit as the stratum of shared items."""
  from valuejax.evaluate import PooledEdit
  arr = lambda v: np.asarray([np.nan if x is None else x for x in v], np.float64)
  return [PooledEdit(arr(r.baseline), arr(e.scores), np.stack([arr(x) for x in e.control_scores]),
                     1.0 if e.expected == "greater" else -1.0, r.unit) for r, e in family]


def toward(e: EffectRecord) -> bool:
  """The effect itself lies in the predicted direction (a rank p can be small for a tiny effect)."""
  return e.mean > 0 if e.expected == "greater" else e.mean < 0


# -- the edit taken apart, and the dose-response fit (exploratory, outside the primary family) ------------------

def decomposition(config: mlc.ConfigDict, results: Sequence[UnitResult]) -> dict[str, Any] | None:
  """The decomposed edits (intervene.decompose) beside their full edits: per part (full, push, clamp), every
  (unit, mode)'s mean change with its CI and p among its controls, and the pooled signed effect over the
  units and modes against the same pooled mean over control replicates (valuejax.evaluate.pooled_test), with
  its CI and p. Exploratory; None when nothing was taken apart."""
  from valuejax.evaluate import pooled_test
  c = config.intervene
  taken = {(r.unit, e.params.get("mode")) for r in results for e in r.effects if e.params.get("part")}
  if not taken:
    return None
  out: dict[str, Any] = {"parts": {}}
  for part in ("full", "push", "clamp"):
    family = [(r, e) for r in results for e in r.effects if (r.unit, e.params.get("mode")) in taken
              and e.params.get("part", "full") == part and (part != "full" or primary_params(c, e.params, e.unit))]
    rows = [{"unit": r.unit, "edit": e.edit, "mode": e.params.get("mode"), "expected": e.expected, "mean": e.mean,
             "ci": [e.ci_low, e.ci_high], "p": e.p_value, "n_controls": len(e.control_effects)} for r, e in family]
    pooled = None
    with_controls = [(r, e) for r, e in family if e.control_scores]
    if with_controls:
      t = pooled_test(pooled_edits(with_controls), alpha=c.alpha, n_boot=c.n_boot, seed=config.seed)
      pooled = {"mean": t.mean, "ci": [t.ci_low, t.ci_high], "p": t.p_value, "replicates": len(t.control_effects),
                "edits": len(with_controls)}
    out["parts"][part] = {"edits": rows, "pooled": pooled}
  return out


def dose_response(config: mlc.ConfigDict, results: Sequence[UnitResult]) -> list[dict[str, Any]] | None:
  """effect = a + b * gamma per set size, over the located (full) edits of every unit and mode at that size
  and the run's steer value, each signed in its predicted direction, with paired-bootstrap CIs for a and b
  (valuejax.evaluate.stats.dose_response_fit: one draw of items per unit, the same for every gamma). The grid
  points carry the fit, not a test of their own: exploratory. None when no size has two gammas."""
  from valuejax.evaluate.stats import DoseEdit, dose_response_fit
  c = config.intervene
  steered = [(r, e) for r in results for e in r.effects
             if "gamma" in e.params and e.params.get("part", "full") == "full"]
  if not steered:
    return None  # no steering edits (ValueExploration, LAPE): nothing to fit
  # Only steering runs get here, and their configs (configs/valuelocate.py) declare both entries.
  steer = config.locate.steer_value
  arr = lambda v: np.asarray([np.nan if x is None else x for x in v], np.float64)
  by_size: dict[str, list[Any]] = {}
  for r, e in steered:
    if e.params.get("steer", steer) != steer:
      continue
    size = str(e.params.get("size", config.locate.size))
    by_size.setdefault(size, []).append(DoseEdit(float(e.params["gamma"]), arr(r.baseline), arr(e.scores),
                                                 1.0 if e.expected == "greater" else -1.0, r.unit))
  out = []
  for size, edits in by_size.items():
    if len({e.gamma for e in edits}) < 2:
      continue
    out.append({"size": size, "steer": steer, **dose_response_fit(edits, n_boot=c.n_boot, seed=config.seed)})
  return out or None
