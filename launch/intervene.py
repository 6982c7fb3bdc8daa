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
    "choice_protocol": "support (0-1) for the value-aligned option stated in a generated 'Option A: x% Option B: "
                       "y%' verdict (ValueExploration's protocol); effects over items parsed before and after",
    "language_nll": "negative log-likelihood per token (nats) of a held-out text in the target language minus "
                    "that of the same text in the other language(s)",
}
# What the metric of each method measures, in the words of the report's headline.
EFFECT_OF = {"language_nll": "the target language's loss (relative to the other language's)"}
# Fewer paired items than this and an effect (or a control's effect) is reported as not computable: a mean
# and a bootstrap CI of one difference say nothing.
MIN_PAIRED = 2


@dataclasses.dataclass
class Experiment:
  """One located edit, the direction the method predicts it moves the metric, and its controls."""
  pair: str
  edit: Any  # valuejax.intervene.Edit
  alternative: str  # "greater" or "less"
  params: dict[str, Any]
  controls: list[Any]


@dataclasses.dataclass(frozen=True)
class ProtocolItem:
  """One dilemma (or situation) as a choice-protocol prompt; `aligned` is the letter of the value-aligned
  option, which differs per item because half of the items list their options in reverse."""
  item_id: str
  question: str
  aligned: str


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
    generated: list[Any] = []
    results = _evaluate(config, model, plan, generated)
    examples = _examples(config, model, dataset, plan) + generated
    _write(config, wd, results, examples, primary(config, results))
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
  if c.metric not in METRIC_NAMES:
    raise ValueJaxError(f"unknown intervene.metric {c.metric!r}", "--config.intervene.metric",
                        f"use one of {', '.join(METRIC_NAMES)}")
  if c.metric == "choice_protocol" and config.method == "lape":
    raise ValueJaxError("LAPE scores held-out descriptions, which have no options to choose between",
                        "--config.intervene.metric", "use text_likelihood for LAPE")
  if config.method == "languages":
    return _languages(config, dataset, sets["lape"])
  if config.method == "lape":
    ns = sets["lape"]
    held_out = inputs.held_out_texts(config, dataset)
    for g in ns.names:
      exp = _with_controls(config, [_deactivate(ns, g)])
      plan.append({"pair": g, "items": held_out.get(g, []), "experiments": exp, "example_prompts": []})
    return plan
  for i, pair in enumerate(inputs.pairs(config, dataset)):
    if config.method == "valuelocate":
      exps = _steering(config, sets, pair)
    else:
      exps = _exploration(config, sets, pair)
    items = inputs.forced_choice_items(config, dataset, pair)
    if c.metric == "choice_protocol":
      items = _protocol_items(config, dataset, pair, items)
    plan.append({"pair": pair.name, "items": items,
                 "experiments": _with_controls(config, exps, offset=1000 * i),
                 "example_prompts": inputs.example_prompts(config, dataset, pair, c.examples)})
  return plan


@dataclasses.dataclass(frozen=True)
class LanguagePairItem:
  """One held-out dilemma as the text in the target language and the same text in the other language(s)."""
  item_id: str
  target: str
  others: tuple[str, ...]


def _languages(config: mlc.ConfigDict, dataset, ns) -> list[dict[str, Any]]:
  """The positive control: deactivate the neurons of one language that no other language's set holds; it
  should raise that language's loss far more than the other's, and more than random neurons do."""
  from valuejax.intervene import deactivate
  c = config.intervene
  items = inputs.language_items(config, dataset, c.eval_split, c.eval_items)
  plan = []
  for i, target in enumerate(c.targets):
    if target not in ns.names:
      raise ValueJaxError(f"intervene.targets names {target!r}, which is not a recorded language",
                          "--config.intervene.targets", f"use languages of data.langs: {', '.join(ns.names)}")
    others = [g for g in ns.names if g != target]
    only = ns.mask(target) & ~np.any([ns.mask(g) for g in others], axis=0)
    if not only.any():
      raise ValueJaxError(f"every {target} neuron is also a neuron of {', '.join(others)}: nothing to deactivate",
                          "locate", "record more text per language or raise the LAPE top rate")
    edit = deactivate(only, name=f"deactivate {target}-only neurons")
    exp = Experiment(target, edit, "greater", {"group": target}, [])
    pair_items = [LanguagePairItem(x.item_id, x.texts[target], tuple(x.texts[g] for g in others)) for x in items]
    plan.append({"pair": target, "items": pair_items, "experiments": _with_controls(config, [exp], offset=1000 * i),
                 "example_prompts": []})
  return plan


def _protocol_items(config: mlc.ConfigDict, dataset, pair: inputs.Pair, items: list[Any]) -> list[ProtocolItem]:
  """The same eval items as forced_choice, as choice-protocol prompts (so both metrics score one item set)."""
  from valuejax import data as vdata
  ids = set(inputs.names(items))
  if config.method == "valuelocate":
    sources = [s for s in dataset.situations if s.id in ids]
    aligned_label = pair.plus
  else:
    sources = [x for x in dataset.dilemmas if x.id in ids]
    aligned_label = "aligned"
  by_id = {p.item_id: p for p in vdata.choice_protocol_prompts(sources, lang=config.data.lang,
                                                                taxonomy=dataset.taxonomy)}
  out = []
  for i in inputs.names(items):
    p = by_id[i]
    out.append(ProtocolItem(i, p.text, "A" if p.meta["labels"][0] == aligned_label else "B"))
  return out


def grid_points(config: mlc.ConfigDict) -> list[dict[str, Any]]:
  """The steering settings to evaluate: `intervene.grid` ("size=0.005,gamma=2,steer=p", ...), else every
  gamma at the one located size and steer value."""
  c = config.intervene
  if not c.get("grid"):
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


def set_name(pair: str, size: str | None) -> str:
  """The neuron set of a pair, per size rule when the locate stage ran several (locate.sizes)."""
  return pair if size is None else f"{pair}@{size}"


def _steering(config: mlc.ConfigDict, sets: dict[str, Any], pair: inputs.Pair) -> list[Experiment]:
  from valuejax.intervene import SteerSet, steering
  c = config.intervene
  out = []
  for mode in c.modes:
    for point in grid_points(config):
      ns = sets[set_name(pair.name, point.get("size"))]
      shape = (ns.num_layers, ns.num_neurons)
      v = point.get("steer", config.locate.steer_value)
      side = lambda g: SteerSet.from_arrays(ns.mask(g), ns[g].score_map(v), ns[g].score_map("delta"), shape)
      gamma = point["gamma"]
      name = f"{mode} gamma={gamma:g}" + (f" size={point['size']} steer={v}" if "size" in point else "")
      edit = steering(side(pair.plus), side(pair.minus), gamma, mode=mode, keep_prob=c.keep_prob,
                      seed=config.seed, name=name)
      out.append(Experiment(pair.name, edit, "greater" if mode == "enhance" else "less",
                            {"mode": mode, **point}, []))
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
    # Edits of the declared primary test get at least primary_controls (so that p can reach its floor).
    n = max(c.n_controls, c.get("primary_controls", 0)) if _primary_params(c, e.params) else c.n_controls
    if n and (at_all or e.params.get("gamma", strongest) == strongest):
      e.controls = control_edits(e.edit, n, seed=c.control_seed + offset + i)
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

  def __init__(self, config: mlc.ConfigDict, model, generator=None):
    self.config, self.model = config, model
    template = config.intervene.get("choice_template", "{question}")
    self.template = inputs.chat_template(model.tokenizer, template, config.data.chat)
    # choice_protocol: the prompt is the whole filled protocol template, so only the chat turn wraps it.
    self.protocol_template = inputs.chat_template(model.tokenizer, "{question}", config.data.chat)
    self._generator = generator
    self.texts: list[list[str]] = []  # choice_protocol: the answers of the last call, [E][N]
    self.components: dict[str, np.ndarray] = {}  # language_nll: the terms of the last call's scores, [E, N]

  def __call__(self, items: list[Any], edits: list[Any]) -> np.ndarray:
    c, m = self.config.intervene, self.model
    if c.metric == "choice_protocol":
      return self._protocol(items, edits)
    kw = dict(batch_size=c.batch_size, buckets=tuple(c.length_buckets) or None, chunk=EDIT_CHUNK)
    if c.metric == "forced_choice":
      from valuejax.evaluate import forced_choice_many
      results = forced_choice_many(m.params, m.config, m.tokenizer, items, edits, lettered=False,
                                   direct_template=self.template, **kw)
      return np.stack([r.p_aligned_norm for r in results])
    from valuejax.evaluate import continuation_logprobs_many
    if c.metric == "language_nll":
      return self._language_nll(items, edits, kw)
    scores = continuation_logprobs_many(m.params, m.config, m.tokenizer, [c.text_prefix] * len(items),
                                        [" " + x.text for x in items], edits, **kw)
    return np.stack([s.mean_logprob for s in scores])

  def _language_nll(self, items: list[LanguagePairItem], edits: list[Any], kw: dict[str, Any]) -> np.ndarray:
    """NLL per token of each target text minus the mean NLL per token of its other-language versions."""
    from valuejax.evaluate import continuation_logprobs_many
    m, n = self.model, len(items)
    texts = [x.target for x in items] + [t for x in items for t in x.others]
    c = self.config.intervene
    scores = continuation_logprobs_many(m.params, m.config, m.tokenizer, [c.text_prefix] * len(texts), texts, edits,
                                        max_tokens=c.get("max_text_tokens") or None, **kw)
    nll = -np.stack([s.mean_logprob for s in scores])  # [E, texts]
    target = nll[:, :n]
    other = nll[:, n:].reshape(len(edits), n, -1).mean(-1)
    self.components = {"target_nll": target, "other_nll": other}
    return target - other

  @property
  def generator(self):
    # One Generator for every pair and edit: it keeps one compiled executable per shape bucket, and the
    # edit is an argument of that executable, so edits of one shape never recompile. Every batch runs as
    # batch_size rows, a short last one included.
    if self._generator is None:
      from valuejax.engine.generate import Generator
      self._generator = Generator(self.model.params, self.model.config, pad_id=self.pad_id, eos_ids=self.eos_ids,
                                  batch_buckets=(self.config.intervene.batch_size,))
    return self._generator

  @property
  def pad_id(self) -> int:
    tok, cfg = self.model.tokenizer, self.model.config
    return int(tok.pad_token_id if tok.pad_token_id is not None else (cfg.pad_token_id or 0))

  @property
  def eos_ids(self) -> list[int]:
    tok, cfg = self.model.tokenizer, self.model.config
    return sorted(set(cfg.eos_token_ids) | ({int(tok.eos_token_id)} if tok.eos_token_id is not None else set()))

  def _protocol(self, items: list[ProtocolItem], edits: list[Any]) -> np.ndarray:
    """Greedy answers under each edit, parsed to support for the aligned option in [0, 1]; NaN = unparsed."""
    from valuejax.engine.generate import Sampling
    from valuejax.evaluate import parse_option_support
    c, tok = self.config.intervene, self.model.tokenizer
    rows = [list(tok(self.protocol_template.format(question=x.question), add_special_tokens=False)["input_ids"])
            for x in items]
    sampling = Sampling(repetition_penalty=self.config.record.repetition_penalty)
    scores, self.texts = np.full((len(edits), len(items)), np.nan), []
    for k, e in enumerate(edits):
      kw = {} if e is None else e.generate_kwargs()
      texts = []
      for s in range(0, len(rows), c.batch_size):
        batch = rows[s:s + c.batch_size]
        ids = np.full((len(batch), max(map(len, batch))), self.pad_id, np.int32)
        mask = np.zeros(ids.shape, np.int32)
        for i, r in enumerate(batch):
          ids[i, :len(r)], mask[i, :len(r)] = r, 1
        g = self.generator(ids, mask, c.get("max_new_tokens", 96), sampling=sampling, seed=self.config.seed, **kw)
        texts += [tok.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(g.tokens, g.lengths)]
      for i, (x, t) in enumerate(zip(items, texts)):
        r = parse_option_support(t, x.aligned)
        if r.parsed:
          scores[k, i] = r.aligned / 100.0
      self.texts.append(texts)
    return scores


def _paired(config: mlc.ConfigDict, items: list[Any], scores: np.ndarray, texts: list[list[str]],
            base: int, edited: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(baseline, edited, n_dropped) over the items scored under both: an item unparsed under either answer
  would otherwise enter the mean as a silent 0 or 50/50."""
  if config.intervene.metric == "choice_protocol":
    from valuejax.evaluate import paired_support
    ps = paired_support(texts[base], texts[edited], [x.aligned for x in items])
    return ps.baseline / 100.0, ps.edited / 100.0, ps.n_dropped
  ok = np.isfinite(scores[base]) & np.isfinite(scores[edited])
  return scores[base][ok], scores[edited][ok], int((~ok).sum())


def _json_scores(x: np.ndarray) -> list[float | None]:
  # NaN is not JSON; null marks an unparsed answer.
  return [float(v) if np.isfinite(v) else None for v in np.asarray(x, np.float64)]


def _evaluate(config: mlc.ConfigDict, model, plan: list[dict[str, Any]],
              generated: list[Any] | None = None, scorer: _Scorer | None = None) -> list[dict[str, Any]]:
  """Scores of every edit per pair and their effects; `generated` collects choice_protocol answers of the
  baseline and the located edits (controls are many and only enter the null distribution)."""
  from valuejax.evaluate import permutation_p, summarize_effect
  c = config.intervene
  score = scorer or _Scorer(config, model)
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
    items = p["items"]
    if not items:
      logging.warning("intervene: %s has no evaluation items; skipped", p["pair"])
      continue
    edits = [None] + [x for e in p["experiments"] for x in (e.edit, *e.controls)]
    all_scores = timed(items, edits, f"{p['pair']}: baseline, {len(edits) - 1} edits and controls")
    texts = score.texts if c.metric == "choice_protocol" else []
    pair = lambda k: _paired(config, items, all_scores, texts, 0, k)
    base = all_scores[0]
    if texts and generated is not None:
      generated += _records(p["pair"], items, texts[0], base, "baseline", {})
    effects, not_computable, k = [], [], 1
    for e in p["experiments"]:
      edited, ek = all_scores[k], k
      ctrl_ks = list(range(k + 1, k + 1 + len(e.controls)))
      k += 1 + len(e.controls)
      if texts and generated is not None:
        meta = {x: v for x, v in e.params.items() if isinstance(v, (int, float, str, bool))}
        generated += _records(p["pair"], items, texts[ek], edited, e.edit.name, meta)
      b, x, dropped = pair(ek)
      # Each control pairs with the baseline on its own parsed items, as the located edit does.
      ctrl = [pair(j) for j in ctrl_ks]
      usable = [(cb, cx) for cb, cx, _ in ctrl if cb.size >= MIN_PAIRED]
      control_effects = [float((cx - cb).mean()) for cb, cx in usable]
      common = {"pair": p["pair"], "edit": e.edit.name, **e.params, "expected": e.alternative,
                "n_neurons": _n_edited(e.edit), "n_dropped": dropped,
                "control_n_dropped": [d for _, _, d in ctrl], "scores": _json_scores(edited),
                "control_scores": [_json_scores(all_scores[j]) for j in ctrl_ks]}
      if getattr(score, "components", None):
        # The terms of the score, each as a mean change against the baseline (e.g. the target language's
        # loss and the other's), for the located edit and every control.
        change = lambda v, j: float(np.nanmean(v[j] - v[0]))
        common["components"] = {name: change(v, ek) for name, v in score.components.items()}
        common["control_components"] = {name: [change(v, j) for j in ctrl_ks]
                                        for name, v in score.components.items()}
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
    results.append({"pair": p["pair"], "item_ids": inputs.names(items), "baseline": _json_scores(base),
                    "baseline_mean": float(base[parsed].mean()) if parsed.any() else None,
                    "baseline_parsed": int(parsed.sum()), "effects": effects,
                    # Kept apart from `effects`, whose entries all carry a mean and a CI for the report.
                    "not_computable": not_computable,
                    "evaluations": 1 + sum(1 + len(e.controls) for e in p["experiments"])})
  return results


def _records(pair: str, items: list[ProtocolItem], texts: list[str], scores: np.ndarray, edit: str,
             meta: dict[str, Any]) -> list[Any]:
  from valuejax.evaluate import GenerationRecord
  return [GenerationRecord(x.item_id, x.question, t, edit, 0,
                           {"pair": pair, "metric": "choice_protocol", "aligned": x.aligned,
                            "support_aligned": float(s) if np.isfinite(s) else None, **meta})
          for x, t, s in zip(items, texts, scores)]


def _n_edited(edit) -> int:
  return int(edit.edited_mask().sum())


# -- the primary test -------------------------------------------------------------------------------

def declared_primary(config: mlc.ConfigDict) -> str:
  """The primary test as the config fixes it before any score exists, in words (printed atop the report)."""
  c = config.intervene
  at = (f" at {c.primary_point}" if c.get("primary_point") else
        f" at gamma {c.primary_gamma:g}" if c.get("primary_gamma") else "")
  if c.primary_test == "pooled":
    what = (f"one pooled test: the mean over the located edits{at} of each edit's mean change, counted + in its "
            "predicted direction, against the same mean over control replicates")
  else:
    what = f"one test per located edit{at}, Holm-corrected across them"
  n = max(c.n_controls, c.get("primary_controls", 0))
  return (f"{what}; one-sided, alpha {c.alpha:g}; {n} random controls per edit with the located set's "
          "per-layer counts; every other edit is exploratory")


def _primary_params(c: mlc.ConfigDict, params: dict[str, Any]) -> bool:
  """Whether an edit with these parameters belongs to the declared primary family."""
  if c.get("primary_point"):
    return all(params.get(k) == v for k, v in parse_point(c.primary_point).items())
  return not c.get("primary_gamma") or params.get("gamma") == c.primary_gamma


def _in_primary(c: mlc.ConfigDict, e: dict[str, Any]) -> bool:
  return bool(e.get("control_effects")) and _primary_params(c, e)


def primary(config: mlc.ConfigDict, results: list[dict[str, Any]]) -> dict[str, Any] | None:
  """The declared primary test over the located edits it names (None when the config declares none)."""
  from valuejax.evaluate import holm, pooled_test
  c = config.intervene
  if not c.get("primary_test"):
    return None
  family = [(r, e) for r in results for e in r["effects"] if _in_primary(c, e)]
  out: dict[str, Any] = {"test": c.primary_test, "declared": declared_primary(config), "alpha": c.alpha,
                         "edits": [f"{r['pair']}, {e['edit']}" for r, e in family]}
  if not family:
    return {**out, "result": None}
  if c.primary_test == "pooled":
    return {**out, "result": pooled_test(_pooled_edits(family), alpha=c.alpha, n_boot=c.n_boot,
                                         seed=config.seed).to_dict()}
  adjusted = holm([e["p_value"] for _, e in family])
  return {**out, "result": [{"edit": f"{r['pair']}, {e['edit']}", "mean": e["mean"], "ci_low": e["ci_low"],
                             "ci_high": e["ci_high"], "p_value": e["p_value"], "adjusted_p": float(a),
                             "significant": bool(a <= c.alpha and _toward(e))}
                            for (r, e), a in zip(family, adjusted)]}


def grid_summary(config: mlc.ConfigDict, results: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
  """Per grid point: the pooled signed effect over every pair and mode (and per pair over its two modes),
  with its CI, the 5-95% band of its control replicates and a p-value, exploratory except at the primary
  point. None without a grid."""
  from valuejax.evaluate import pooled_test
  c = config.intervene
  if not c.get("grid"):
    return None
  out = []
  for point in grid_points(config):
    at = [(r, e) for r in results for e in r["effects"]
          if all(e.get(k) == v for k, v in point.items()) and e.get("control_scores")]
    if not at:
      continue
    row: dict[str, Any] = {**point, "primary": _primary_params(c, point), "pairs": {}}
    groups = [("all", at)] + [(r["pair"], [(rr, e) for rr, e in at if rr["pair"] == r["pair"]]) for r in results]
    for name, family in groups:
      if not family:
        continue
      t = pooled_test(_pooled_edits(family), alpha=c.alpha, n_boot=c.n_boot, seed=config.seed)
      band = np.quantile(t.control_effects, [0.05, 0.95]).tolist() if t.control_effects else [None, None]
      summary = {**t.to_dict(), "control_band": band, "n_neurons": int(np.mean([e["n_neurons"] for _, e in family]))}
      summary.pop("control_effects")
      if name == "all":
        row.update(summary)
      else:
        row["pairs"][name] = summary
    out.append(row)
  return out


def _pooled_edits(family: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[Any]:
  """(pair result, effect) pairs as pooled_test's edits: per-item scores (null = NaN), the sign of the
  predicted direction, the pair as the stratum of shared items."""
  from valuejax.evaluate import PooledEdit
  arr = lambda v: np.asarray([np.nan if x is None else x for x in v], np.float64)
  return [PooledEdit(arr(r["baseline"]), arr(e["scores"]), np.stack([arr(x) for x in e["control_scores"]]),
                     1.0 if e["expected"] == "greater" else -1.0, r["pair"]) for r, e in family]


def _toward(e: dict[str, Any]) -> bool:
  """The effect itself lies in the predicted direction (a rank p can be small for a tiny effect)."""
  return e["mean"] > 0 if e["expected"] == "greater" else e["mean"] < 0


# -- examples ---------------------------------------------------------------------------------------

def _examples(config: mlc.ConfigDict, model, dataset, plan: list[dict[str, Any]]) -> list[Any]:
  """Answers to a few eval questions from the unedited model and under each located edit at full strength."""
  import valuejax
  from valuejax.engine.generate import Sampling
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
    rows = example_rows(model, prompts)
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


def example_rows(model, prompts: list[Any]) -> list[list[int]]:
  """Token ids of the example prompts, encoded as the record stage encodes them: a model that needs <bos>
  without a chat template (Gemma) gets it, or its answers are garbage."""
  from valuejax.engine.record import encode_prompt, prompt_bos
  return [encode_prompt(model.tokenizer, q, prompt_bos(model.config)) for q in prompts]


# -- files ------------------------------------------------------------------------------------------

def _write(config: mlc.ConfigDict, wd: Workdir, results: list[dict[str, Any]], examples: list[Any],
           primary_test: dict[str, Any] | None = None) -> None:
  if not wd.writer:
    return
  from valuejax.evaluate import write_records
  c = config.intervene
  vio.write_json(wd.path(METRICS), {
      "primary": primary_test, "grid": grid_summary(config, results),
      "method": config.method, "metric": c.metric, "metric_description": METRIC_NAMES[c.metric],
      "effect_of": EFFECT_OF.get(c.metric, "value orientation"),
      "alpha": c.alpha, "n_controls": c.n_controls, "pairs": results})
  vio.write_text(wd.path("intervene", "metrics.csv"), _long_csv(results))
  vio.write_text(wd.path("intervene", "effects.csv"), _effects_csv(results))
  write_records(wd.path(EXAMPLES), examples)


_PARAMS = ("mode", "gamma", "size", "steer", "region", "toward", "factor", "group")


def _cell(s: float | None) -> str:
  # An unparsed answer is an empty cell (pandas reads NaN), not the string "None".
  return "" if s is None else repr(s)


def _long_csv(results: list[dict[str, Any]]) -> str:
  """One row per (edit, item): pandas.read_csv gives a tidy frame to group and plot."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["pair", "edit", "role", "control", *_PARAMS, "item_id", "score"])
  for r in results:
    for item, s in zip(r["item_ids"], r["baseline"]):
      w.writerow([r["pair"], "baseline", "baseline", "", *[""] * len(_PARAMS), item, _cell(s)])
    for e in r["effects"] + r.get("not_computable", []):
      params = [e.get(k, "") for k in _PARAMS]
      for item, s in zip(r["item_ids"], e["scores"]):
        w.writerow([r["pair"], e["edit"], "located", "", *params, item, _cell(s)])
      for k, scores in enumerate(e["control_scores"]):
        for item, s in zip(r["item_ids"], scores):
          w.writerow([r["pair"], e["edit"], "control", k, *params, item, _cell(s)])
  return buf.getvalue()


def _effects_csv(results: list[dict[str, Any]]) -> str:
  buf = io.StringIO()
  cols = ["pair", "edit", *_PARAMS, "n_neurons", "computable", "n", "n_dropped", "mean", "ci_low", "ci_high",
          "control_mean", "control_sd", "n_controls", "p_value", "alternative", "significant"]
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(cols)
  for r in results:
    for e in r["effects"] + r.get("not_computable", []):
      w.writerow(["" if e.get(k) is None else e.get(k) for k in cols])
  return buf.getvalue()


def main(config: mlc.ConfigDict) -> None:
  wd = Workdir(cli.require_workdir(), config)
  runtime.setup(config)
  wd.write_config()
  intervene(config, wd, flags.FLAGS.force)


if __name__ == "__main__":
  cli.run(main)
