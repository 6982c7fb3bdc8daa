"""Intervene stage: edit the located neurons and measure value orientation against the unedited model and
against random neuron sets with the same per-layer counts (the controls).

Writes intervene/metrics.json (effects with CIs and p-values), metrics.csv (every per-item score, long
format), effects.csv (one row per edit) and examples.jsonl (answers generated before and after editing).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from typing import Any

from absl import flags, logging
import ml_collections as mlc
import numpy as np

from launch import cli, inputs, locate as locate_stage, runtime
from launch.workdir import Timer, Workdir
from valuejax import io as vio
from valuejax.errors import ValueJaxError

METRICS = os.path.join("intervene", "metrics.json")
EXAMPLES = os.path.join("intervene", "examples.jsonl")
METRIC_NAMES = {
    "forced_choice": "P(value-aligned action) in a forced choice, from length-normalised log-likelihoods",
    "text_likelihood": "mean log-probability per token of held-out texts of the group",
}


@dataclasses.dataclass
class Experiment:
  """One located edit, the direction the method predicts it moves the metric, and its controls."""
  pair: str
  edit: Any  # valuejax.intervene.Edit
  alternative: str  # "greater" or "less"
  params: dict[str, Any]
  controls: list[Any]


def intervene(config: mlc.ConfigDict, wd: Workdir, force: bool = False, model=None) -> None:
  if wd.should_skip("intervene", force):
    return
  if wd.done("locate") is None:
    raise ValueJaxError("no neuron sets for this config in the workdir", wd.path("locate"),
                        "run the locate stage first (python -m launch.locate with the same flags)")
  with Timer() as t:
    model = model or runtime.load_model(config)
    dataset = inputs.load_dataset(config)
    sets = _load_sets(wd)
    plan = _plan(config, dataset, sets)
    results = _evaluate(config, model, plan)
    examples = _examples(config, model, dataset, plan)
    _write(config, wd, results, examples)
  wd.mark_done("intervene", t.seconds)
  wd.add_timing("intervene", t.seconds, evaluations=sum(r["evaluations"] for r in results))


def _load_sets(wd: Workdir) -> dict[str, Any]:
  from valuejax.locate import NeuronSet
  with open(wd.path(locate_stage.SUMMARY), encoding="utf-8") as f:
    names = list(json.load(f))
  return {n: NeuronSet.load(wd.path("locate", f"{n}.npz")) for n in names}


# -- what to run ------------------------------------------------------------------------------------

def _plan(config: mlc.ConfigDict, dataset, sets: dict[str, Any]) -> list[dict[str, Any]]:
  """Per pair (or LAPE group): its eval items and experiments."""
  c = config.intervene
  plan = []
  if config.method == "lape":
    ns = sets["lape"]
    held_out = inputs.held_out_texts(config, dataset)
    for g in ns.names:
      exp = _with_controls(config, [_deactivate(ns, g)])
      plan.append({"pair": g, "items": held_out.get(g, []), "experiments": exp, "example_prompts": []})
    return plan
  for i, pair in enumerate(inputs.pairs(config, dataset)):
    if config.method == "valuelocate":
      exps = _steering(config, sets[pair.name], pair)
    else:
      exps = _exploration(config, sets, pair)
    plan.append({"pair": pair.name, "items": inputs.forced_choice_items(config, dataset, pair),
                 "experiments": _with_controls(config, exps, offset=1000 * i),
                 "example_prompts": inputs.example_prompts(config, dataset, pair, c.examples)})
  return plan


def _steering(config: mlc.ConfigDict, ns, pair: inputs.Pair) -> list[Experiment]:
  from valuejax.intervene import SteerSet, steering
  c = config.intervene
  shape = (ns.num_layers, ns.num_neurons)
  v = config.locate.steer_value
  side = lambda g: SteerSet.from_arrays(ns.mask(g), ns[g].score_map(v), ns[g].score_map("delta"), shape)
  plus, minus = side(pair.plus), side(pair.minus)
  out = []
  for mode in c.modes:
    for gamma in c.gamma:
      edit = steering(plus, minus, gamma, mode=mode, keep_prob=c.keep_prob, seed=config.seed,
                      name=f"{mode} gamma={gamma:g}")
      out.append(Experiment(pair.name, edit, "greater" if mode == "enhance" else "less",
                            {"mode": mode, "gamma": float(gamma)}, []))
  return out


def _exploration(config: mlc.ConfigDict, sets: dict[str, Any], pair: inputs.Pair) -> list[Experiment]:
  from valuejax.intervene import layer_split, value_exploration, value_exploration_combined
  c = config.intervene
  found = {p: sets.get(f"{pair.name}-{p}") for p in ("semantic", "decision")}
  out = []
  for region in c.regions:
    needed = ("semantic", "decision") if region == "combined" else (region,)
    missing = [p for p in needed if found[p] is None]
    if missing:
      raise ValueJaxError(f"region {region!r} needs the {' and '.join(missing)} neuron sets",
                          "--config.locate.presets", f"add {', '.join(missing)} to locate.presets")
    ns = found[needed[0]]
    masks = lambda s: (s.mask(pair.plus), s.mask(pair.minus))
    split = layer_split(ns.num_layers)
    for toward in c.directions:
      name = f"{region} toward {toward} x{c.factor:g}"
      if region == "combined":
        edit = value_exploration_combined(masks(found["semantic"]), masks(found["decision"]), toward=toward,
                                          factor=c.factor, split=split, name=name)
      else:
        edit = value_exploration(*masks(ns), toward=toward, region=region, factor=c.factor, split=split,
                                 name=name)
      out.append(Experiment(pair.name, edit, "greater" if toward == "support" else "less",
                            {"region": region, "toward": toward, "factor": float(c.factor)}, []))
  return out


def _deactivate(ns, group: str) -> Experiment:
  from valuejax.intervene import deactivate
  return Experiment(group, deactivate(ns.mask(group), name=f"deactivate {group}"), "less",
                    {"group": group}, [])


def _with_controls(config: mlc.ConfigDict, exps: list[Experiment], offset: int = 0) -> list[Experiment]:
  """Random controls for every experiment, or only for the strongest gamma of each mode."""
  from valuejax.intervene import control_edits
  c = config.intervene
  strongest = max(c.gamma) if "gamma" in c else None
  for i, e in enumerate(exps):
    at_all = c.get("controls_at", "all") == "all"
    if c.n_controls and (at_all or e.params.get("gamma", strongest) == strongest):
      e.controls = control_edits(e.edit, c.n_controls, seed=c.control_seed + offset + i)
  return exps


# -- measuring --------------------------------------------------------------------------------------

# Edits vmapped per compiled call. On CPU the continuation pass is already one large matrix product per
# layer, so bigger chunks buy little speed; they cost memory (each holds its own copy of the prompt cache).
EDIT_CHUNK = 8


class _Scorer:
  """Per-item scores of one metric under a list of edits (None = the unedited model): [E, N].

  All edits of a pair go through one call, so edits of the generated tokens (steering and its controls)
  share a single pass over the prompts and pay only for their continuations.
  """

  def __init__(self, config: mlc.ConfigDict, model):
    self.config, self.model = config, model
    template = config.intervene.get("choice_template", "{question}")
    self.template = inputs.chat_template(model.tokenizer, template, config.data.chat)

  def __call__(self, items: list[Any], edits: list[Any]) -> np.ndarray:
    c, m = self.config.intervene, self.model
    kw = dict(batch_size=c.batch_size, buckets=tuple(c.length_buckets) or None, chunk=EDIT_CHUNK)
    if c.metric == "forced_choice":
      from valuejax.evaluate import forced_choice_many
      results = forced_choice_many(m.params, m.config, m.tokenizer, items, edits, lettered=False,
                                   direct_template=self.template, **kw)
      return np.stack([r.p_aligned_norm for r in results])
    from valuejax.evaluate import continuation_logprobs_many
    scores = continuation_logprobs_many(m.params, m.config, m.tokenizer, [c.text_prefix] * len(items),
                                        [" " + x.text for x in items], edits, **kw)
    return np.stack([s.mean_logprob for s in scores])


def _evaluate(config: mlc.ConfigDict, model, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
  from valuejax.evaluate import summarize_effect
  c = config.intervene
  score = _Scorer(config, model)
  total = sum(1 + sum(1 + len(e.controls) for e in p["experiments"]) for p in plan if p["items"])
  done, start = 0, time.perf_counter()

  def timed(items, edits, what: str) -> np.ndarray:
    nonlocal done
    out = np.asarray(score(items, edits), np.float64)
    done += len(edits)
    eta = (time.perf_counter() - start) / done * (total - done)
    logging.info("intervene: %d/%d evaluations (%s), ETA %.0f s", done, total, what, eta)
    return out

  results = []
  for p in plan:
    if not p["items"]:
      logging.warning("intervene: %s has no evaluation items; skipped", p["pair"])
      continue
    edits = [None] + [x for e in p["experiments"] for x in (e.edit, *e.controls)]
    scores = iter(timed(p["items"], edits, f"{p['pair']}: baseline, {len(edits) - 1} edits and controls"))
    base = next(scores)
    effects = []
    for e in p["experiments"]:
      edited = next(scores)
      ctrl = [next(scores) for _ in e.controls]
      summary = summarize_effect(edited, base, controls=np.stack(ctrl) if ctrl else None, name=e.edit.name,
                                 alternative=e.alternative, alpha=c.alpha, n_boot=c.n_boot, seed=config.seed)
      control_effects = [float((x - base).mean()) for x in ctrl]
      effects.append({"pair": p["pair"], "edit": e.edit.name, **e.params, **summary.to_dict(),
                      "expected": e.alternative, "n_neurons": _n_edited(e.edit),
                      "control_effects": control_effects,
                      "control_sd": float(np.std(control_effects, ddof=1)) if len(ctrl) > 1 else None,
                      "describe": summary.describe(), "scores": edited.tolist(),
                      "control_scores": [x.tolist() for x in ctrl]})
    results.append({"pair": p["pair"], "item_ids": inputs.names(p["items"]), "baseline": base.tolist(),
                    "baseline_mean": float(base.mean()), "effects": effects,
                    "evaluations": 1 + sum(1 + len(e.controls) for e in p["experiments"])})
  return results


def _n_edited(edit) -> int:
  return int(edit.edited_mask().sum())


# -- examples ---------------------------------------------------------------------------------------

def _examples(config: mlc.ConfigDict, model, dataset, plan: list[dict[str, Any]]) -> list[Any]:
  """Answers to a few eval questions from the unedited model and under each located edit at full strength."""
  import valuejax
  from valuejax.engine.generate import Sampling
  from valuejax.engine.record import encode_prompt
  from valuejax.evaluate import GenerationRecord
  from valuejax.intervene import baseline
  c, tok, cfg = config.intervene, model.tokenizer, model.config
  pad = tok.pad_token_id if tok.pad_token_id is not None else (cfg.pad_token_id or 0)
  eos = sorted(set(cfg.eos_token_ids) | ({int(tok.eos_token_id)} if tok.eos_token_id is not None else set()))
  out = []
  for p in plan:
    prompts = p["example_prompts"]
    if not prompts or not p["experiments"]:
      continue
    strongest = max((e.params.get("gamma", 0.0) for e in p["experiments"]), default=0.0)
    edits = [e.edit for e in p["experiments"] if e.params.get("gamma", 0.0) == strongest]
    edits.insert(0, dataclasses.replace(baseline(edits[0].shape), scope=edits[0].scope))
    rows = [encode_prompt(tok, q) for q in prompts]
    ids = np.full((len(rows), max(map(len, rows))), pad, np.int32)
    mask = np.zeros(ids.shape, np.int32)
    for i, r in enumerate(rows):
      ids[i, :len(r)], mask[i, :len(r)] = r, 1
    for e in edits:
      g = valuejax.generate(model.params, cfg, ids, mask, c.example_max_new_tokens,
                            sampling=Sampling(repetition_penalty=config.record.repetition_penalty),
                            seed=config.seed, edit=e.neurons, edit_scope=e.scope, pad_id=pad, eos_ids=eos)
      for q, row, n in zip(prompts, g.tokens, g.lengths):
        question = q.messages[0]["content"] if q.messages else q.text
        meta = {k: v for k, v in e.metadata.items() if isinstance(v, (int, float, str, bool))}
        out.append(GenerationRecord(q.id, question, tok.decode(row[:n].tolist(), skip_special_tokens=True),
                                    e.name, 0, {"pair": p["pair"], **meta}))
  return out


# -- files ------------------------------------------------------------------------------------------

def _write(config: mlc.ConfigDict, wd: Workdir, results: list[dict[str, Any]], examples: list[Any]) -> None:
  if not wd.writer:
    return
  from valuejax.evaluate import write_records
  c = config.intervene
  vio.write_json(wd.path(METRICS), {
      "method": config.method, "metric": c.metric, "metric_description": METRIC_NAMES[c.metric],
      "alpha": c.alpha, "n_controls": c.n_controls, "pairs": results})
  vio.write_text(wd.path("intervene", "metrics.csv"), _long_csv(results))
  vio.write_text(wd.path("intervene", "effects.csv"), _effects_csv(results))
  write_records(wd.path(EXAMPLES), examples)


_PARAMS = ("mode", "gamma", "region", "toward", "factor", "group")


def _long_csv(results: list[dict[str, Any]]) -> str:
  """One row per (edit, item): pandas.read_csv gives a tidy frame to group and plot."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["pair", "edit", "role", "control", *_PARAMS, "item_id", "score"])
  for r in results:
    for item, s in zip(r["item_ids"], r["baseline"]):
      w.writerow([r["pair"], "baseline", "baseline", "", *[""] * len(_PARAMS), item, repr(s)])
    for e in r["effects"]:
      params = [e.get(k, "") for k in _PARAMS]
      for item, s in zip(r["item_ids"], e["scores"]):
        w.writerow([r["pair"], e["edit"], "located", "", *params, item, repr(s)])
      for k, scores in enumerate(e["control_scores"]):
        for item, s in zip(r["item_ids"], scores):
          w.writerow([r["pair"], e["edit"], "control", k, *params, item, repr(s)])
  return buf.getvalue()


def _effects_csv(results: list[dict[str, Any]]) -> str:
  buf = io.StringIO()
  cols = ["pair", "edit", *_PARAMS, "n_neurons", "n", "mean", "ci_low", "ci_high", "control_mean",
          "control_sd", "n_controls", "p_value", "alternative", "significant"]
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(cols)
  for r in results:
    for e in r["effects"]:
      w.writerow(["" if e.get(k) is None else e.get(k) for k in cols])
  return buf.getvalue()


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  runtime.setup(config)
  wd.write_config()
  intervene(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
