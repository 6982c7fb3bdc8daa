"""What the stages write into a workdir and read back from it: neuron sets, the record summary, the intervene
stage's metrics.json (typed: `valuejax.workdir.results`), its CSVs and example answers."""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Sequence

import numpy as np

from valuejax import fileio as vio
from valuejax.workdir import layout
from valuejax.workdir.results import InterveneResults, UnitResult
from valuejax.workdir.state import Workdir


# The statistics of each group's two halves (record.halves): groups "<group>#a" and "<group>#b", of the same
# tokens as record/stats.npz, which holds their sums (valuejax.engine.record.join_halves).
RECORD_HALVES = os.path.join("record", "halves.npz")


def write_record(wd: Workdir, state: Any, generated: bool, halves: bool = False) -> list[str]:
  """The statistics the locators read (of generated tokens, or of every input token when teacher-forced),
  the prompt statistics, the generated texts and a summary; returns the files (relative paths).

  With `halves` the state holds split-half groups: the halves are stored as they are (RECORD_HALVES) and every
  other file holds each group's own statistics, their sum."""
  out = [layout.RECORD_STATS, layout.PROMPT_STATS, layout.RECORD_TEXTS, layout.RECORD_SUMMARY]
  out += [RECORD_HALVES] if halves else []
  if not wd.writer:
    return out
  from valuejax.evaluate import GenerationRecord, write_records
  stats = state.gen_stats if generated else state.prompt_stats
  prompt_stats = state.prompt_stats
  if halves:
    from valuejax.engine.record import join_halves
    stats.save(wd.path(RECORD_HALVES))
    stats, prompt_stats = join_halves(stats), join_halves(prompt_stats)
  stats.save(wd.path(layout.RECORD_STATS))
  prompt_stats.save(wd.path(layout.PROMPT_STATS))
  records = [GenerationRecord(item_id, "", text, "baseline", 0, {"group": item_id.split("/", 1)[0]})
             for item_id, text in sorted(state.texts.items())]
  write_records(wd.path(layout.RECORD_TEXTS), records)
  vio.write_json(wd.path(layout.RECORD_SUMMARY), {
      "groups": list(stats.group_names), "tokens": stats.tokens.tolist(), "items": stats.items.tolist(),
      "counted": "generated tokens" if generated else "every input token",
      **({"halves": {"file": RECORD_HALVES, "items": state_items(state, generated)}} if halves else {}),
      "batches": state.batches_done, "tokens_processed": state.tokens,
      "engine_seconds": round(state.seconds, 3)})
  return out


def state_items(state: Any, generated: bool) -> dict[str, int]:
  """Items counted per half group of a split-half record state."""
  stats = state.gen_stats if generated else state.prompt_stats
  return {g: int(n) for g, n in zip(stats.group_names, stats.items)}


def read_halves(root: str) -> Any:
  """The split-half statistics of the workdir at `root` (NeuronStats), None when it recorded no halves."""
  path = os.path.join(root, RECORD_HALVES)
  if not os.path.exists(path):
    return None
  from valuejax.engine.stats import NeuronStats
  return NeuronStats.load(path)


def write_sets(wd: Workdir, sets: dict[str, Any], stability: dict[str, Any] | None = None,
               variations: dict[str, dict[str, dict[str, Any]]] | None = None) -> list[str]:
  """Each set as npz (what intervene reads) and JSON (for people), with a per-layer plot, and a summary;
  returns the files (relative paths) whose content the intervene stage depends on.

  In the summary every group also has its Jaccard index with every located group ("overlap"), and, with
  `stability` (valuejax.locate.stability.split_half_stability), its split-half stability ("stability"), and
  each entry of `variations` ({summary key: {set: {group: comparison}}}, e.g. "budget_stability") under its key."""
  out = [layout.LOCATE_SUMMARY] + [layout.neuron_set(n, ext) for n in sets for ext in ("npz", "json")]
  if not wd.writer:
    return out
  from valuejax.locate import plot_counts_per_layer
  from valuejax.locate.stability import set_overlaps
  overlaps = set_overlaps(sets)
  summary = {}
  for name, ns in sets.items():
    ns.save_json(wd.path(layout.neuron_set(name, "json")))
    ns.save_npz(wd.path(layout.neuron_set(name)))
    plot = plot_counts_per_layer(ns, wd.path(layout.LOCATE), f"{name}_per_layer.png",
                                 title=f"{name}: neurons per layer")
    summary[name] = {"method": ns.provenance.get("method"), "num_layers": ns.num_layers,
                     "num_neurons": ns.num_neurons, "plot": os.path.relpath(plot, wd.root),
                     "groups": {g: {"count": len(ns[g]), "per_layer": ns.counts_per_layer(g).tolist(),
                                    "mean_delta": _mean(ns[g].scores.get("delta")),
                                    "overlap": overlaps[f"{name}: {g}"],
                                    **({"stability": _stability_of(stability, name, g)} if stability else {}),
                                    **{k: per_set[name][g] for k, per_set in (variations or {}).items()}}
                                for g in ns.names}}
  vio.write_json(wd.path(layout.LOCATE_SUMMARY), summary)
  return out


def _stability_of(stability: dict[str, Any], name: str, group: str) -> dict[str, Any]:
  """One group's split-half stability, or why it was not measured (stability["unmeasured"])."""
  if "unmeasured" in stability:
    return {"reading": "not measured", "why": stability["unmeasured"]}
  return stability[name][group]


def load_sets(wd: Workdir) -> dict[str, Any]:
  """{name: NeuronSet} of the locate stage, from the npz files its summary lists."""
  from valuejax.locate import NeuronSet
  names = list(layout.read(wd.root, layout.LOCATE_SUMMARY) or {})
  return {n: NeuronSet.load(wd.path(layout.neuron_set(n))) for n in names}


def _mean(v: Any) -> float | None:
  if v is None or not len(v):
    return None
  v = np.asarray(v)[np.isfinite(v)]
  return float(v.mean()) if v.size else None


def write_intervene(wd: Workdir, results: InterveneResults, examples: list[Any]) -> list[str]:
  """metrics.json (`results.to_json()`: every unit as `valuejax.metrics.effects.evaluate` returns them, the
  primary test, the grid), the per-item scores in long format, one row per edit, and the example answers;
  returns the files."""
  out = [layout.METRICS, layout.METRICS_CSV, layout.EFFECTS_CSV, layout.EXAMPLES]
  if not wd.writer:
    return out
  from valuejax.evaluate import write_records
  vio.write_json(wd.path(layout.METRICS), results.to_json())
  vio.write_text(wd.path(layout.METRICS_CSV), long_csv(results.units))
  vio.write_text(wd.path(layout.EFFECTS_CSV), effects_csv(results.units))
  write_records(wd.path(layout.EXAMPLES), examples)
  return out


def read_intervene(root: str) -> InterveneResults | None:
  """The intervene results of the workdir (or positive-control sub-workdir) at `root`, None when the stage has
  not written them; a layout this code cannot read is refused with what to do (rerun the stage)."""
  d = layout.read(root, layout.METRICS)
  if d is None:
    return None
  return InterveneResults.from_json(d, os.path.join(root, layout.METRICS))


# The persona manipulation check of a method that has one (ValueExploration): written by the intervene stage
# before any edit is scored, read by the report before any neuron result.
MANIPULATION = os.path.join("intervene", "manipulation.json")


def write_manipulation(wd: Workdir, result: dict[str, Any]) -> list[str]:
  """The manipulation check, atomically, stamped with the intervene stage's config fingerprint so that a rerun
  of an unfinished intervene stage reuses it (`read_manipulation`); returns the files (relative paths)."""
  if wd.writer:
    from valuejax.workdir.state import fingerprint
    vio.write_json(wd.path(MANIPULATION), {**result, "fingerprint": fingerprint(wd.config, "intervene")})
  return [MANIPULATION]


def read_manipulation(root: str, config: Any = None) -> dict[str, Any] | None:
  """The stored manipulation check, or None. With `config`, only a check computed for that config's intervene
  stage; without, only one computed for the run that config.json describes (the report and results pages read
  a finished run; a check left by another config of the workdir is not its)."""
  result = layout.read(root, MANIPULATION)
  if result is None:
    return None
  if config is not None:
    from valuejax.workdir.state import fingerprint
    stamp = fingerprint(config, "intervene")
  else:
    stamp = ((layout.read(root, layout.CONFIG) or {}).get("fingerprints") or {}).get("intervene")
  return result if stamp is None or result.get("fingerprint") == stamp else None


_PARAMS = ("mode", "gamma", "size", "steer", "region", "toward", "factor", "group")


def _cell(s: float | None) -> str:
  # An unparsed answer is an empty cell (pandas reads NaN), not the string "None".
  return "" if s is None else repr(s)


def long_csv(units: Sequence[UnitResult]) -> str:
  """One row per (edit, item): pandas.read_csv gives a tidy frame to group and plot."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["pair", "edit", "role", "control", *_PARAMS, "item_id", "score"])
  for r in units:
    for item, s in zip(r.item_ids, r.baseline):
      w.writerow([r.unit, "baseline", "baseline", "", *[""] * len(_PARAMS), item, _cell(s)])
    for e in r.edits:
      params = [e.params.get(k, "") for k in _PARAMS]
      for item, s in zip(r.item_ids, e.scores):
        w.writerow([r.unit, e.edit, "located", "", *params, item, _cell(s)])
      for k, scores in enumerate(e.control_scores):
        for item, s in zip(r.item_ids, scores):
          w.writerow([r.unit, e.edit, "control", k, *params, item, _cell(s)])
  return buf.getvalue()


_EFFECT_COLS = ("n_neurons", "computable", "n", "n_dropped", "mean", "ci_low", "ci_high", "control_mean",
                "control_sd", "n_controls", "p_value", "alternative", "significant")


def effects_csv(units: Sequence[UnitResult]) -> str:
  """One row per located edit (computable or not): its parameters and its effect."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["pair", "edit", *_PARAMS, *_EFFECT_COLS])
  for r in units:
    for e in r.edits:
      row = [e.unit, e.edit, *[e.params.get(k) for k in _PARAMS], *[getattr(e, k) for k in _EFFECT_COLS]]
      w.writerow(["" if v is None else v for v in row])
  return buf.getvalue()


class RunResults:
  """A finished run's intervene results (metrics.json), as tables: `to_dataframe("effects")` one row per
  located edit, `to_dataframe("scores")` one row per (edit or control, item) (pandas, an optional extra).
  `results` is the typed whole (InterveneResults)."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    results = read_intervene(self.root)
    if results is None:
      from valuejax.errors import ValueJaxError
      raise ValueJaxError("no intervene results here", self.root, "run the intervene stage first")
    self.results: InterveneResults = results

  def to_dataframe(self, kind: str = "effects"):
    from valuejax.fileio import pandas
    pd = pandas()
    if kind == "effects":
      return pd.read_csv(io.StringIO(effects_csv(self.results.units)))
    if kind == "scores":
      return pd.read_csv(io.StringIO(long_csv(self.results.units)))
    from valuejax.errors import ValueJaxError
    raise ValueJaxError(f"unknown table {kind!r}", "RunResults.to_dataframe", "use 'effects' or 'scores'")
