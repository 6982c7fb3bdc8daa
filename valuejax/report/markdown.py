"""report.md from a finished workdir: what ran, where the value neurons are, whether editing them moves
value orientation more than random neurons do, a few answers before/after editing, and stage times.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from valuejax import io as vio
from valuejax.data.schema import REVERSED_SUFFIX
from valuejax.methods.valuelocate import CONTRAST_WORDS
from valuejax.report import plots
from valuejax.evaluate.stats import holm
from valuejax.workdir import layout
from valuejax.report.verdict import CAUSAL, SUGGESTIVE, pooled_label, verdict

def write_report(workdir: str) -> str:
  """Writes <workdir>/report.md (and its figures under <workdir>/report/); returns the report's path."""
  root = os.path.abspath(workdir)
  cfg = layout.read(root, layout.CONFIG) or {}
  config = cfg.get("config", {})
  metrics = layout.read(root, layout.METRICS)
  parts = [f"# valuejax report: {config.get('method', '?')} on {config.get('model', '?')}", ""]
  parts += _manipulation(root, cfg)
  parts += _headline(metrics)
  parts += _positive_control(root, config)
  parts += _what_ran(root, cfg)
  parts += _neurons(root, layout.read(root, layout.LOCATE_SUMMARY))
  parts += _grid(root, metrics)
  parts += _effects(root, metrics)
  parts += _profiles(root, metrics)
  parts += _examples(layout.read(root, layout.EXAMPLES))
  parts += _timings(layout.read(root, layout.TIMINGS) or {})
  path = os.path.join(root, layout.REPORT)
  vio.write_text(path, "\n".join(parts).rstrip() + "\n")
  return path


def _manipulation(root: str, cfg: dict[str, Any]) -> list[str]:
  """The persona manipulation check (ValueExploration), before any neuron result: do the support and conflict
  prompts the groups were recorded with change the unedited model's choices? If not, the contrast is empty."""
  from valuejax.workdir.outputs import read_manipulation
  check = read_manipulation(root)  # None too when made for another config of this workdir
  if check is None:
    if cfg.get("config", {}).get("method") != "valueexploration":
      return []
    return ["## Do the support and conflict personas change the model's choices?", "",
            "The manipulation check has not run (it runs at the start of the intervene stage): nothing here says "
            "whether the support/conflict contrast differs at all on this model.", ""]
  fmt = lambda r: f"{r['mean_diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
  pooled, level = check["pooled"], check.get("level", 0.95)
  persona = {"anti_value": "one raised to revere the dilemma's anti-value",
             "value_holder": "the value's holder, told the dilemma pits it against its anti-value"}.get(
                 check.get("conflict_persona"), check.get("conflict_persona", "?"))
  lines = ["## Do the support and conflict personas change the model's choices?", ""]
  if check["separates"]:
    lines.append(f"**Yes: the personas separate the model's choices.** Pooled over {len(check['values'])} value(s) "
                 f"and {pooled['n']} locate dilemmas, P(value-aligned action) is {pooled['mean_support']:.3f} after "
                 f"the support prompt and {pooled['mean_conflict']:.3f} after the conflict prompt: support - conflict "
                 f"{fmt(pooled)} ({level:.0%} CI), above 0. The recorded groups differ in what the model chooses, so "
                 "the located sets can carry that difference.")
  else:
    where = "lies below 0: the personas move the choices against the prediction" if pooled["ci_high"] < 0 \
        else "covers 0"
    lines.append(f"**The support/conflict contrast is empty on this model: the personas do not separate its "
                 f"choices**, so the located sets cannot carry the value difference, and no neuron result below "
                 f"can be read as one about values. Pooled over {len(check['values'])} value(s) and {pooled['n']} "
                 f"locate dilemmas, P(value-aligned action) is {pooled['mean_support']:.3f} after the support "
                 f"prompt and {pooled['mean_conflict']:.3f} after the conflict prompt: support - conflict "
                 f"{fmt(pooled)} ({level:.0%} CI), which {where}.")
  lines += ["", "| value | items | P(aligned), support | P(aligned), conflict | support - conflict [CI] |",
            "|---|---:|---:|---:|---|"]
  for value, r in check["values"].items():
    lines.append(f"| {value} | {r['n']} | {r['mean_support']:.3f} | {r['mean_conflict']:.3f} | {fmt(r)} |")
  lines.append(f"| **pooled** | {pooled['n']} | {pooled['mean_support']:.3f} | {pooled['mean_conflict']:.3f} | "
               f"{fmt(pooled)} |")
  lines += ["", f"Declared reading: the personas separate the choices when the pooled CI lies above 0. Support prompt: "
            f"one raised to revere the value; conflict prompt: {persona}; both exactly as recorded "
            f"({check.get('lang', '?')}{', chat' if check.get('chat') else ''}), unedited model. Score: "
            f"{check.get('metric', 'P(value-aligned action)')}; paired per dilemma, bootstrap CI over dilemmas "
            "(`intervene/manipulation.json`).", ""]
  return lines


def _not_computable(metrics: Any) -> list[dict[str, Any]]:
  """Edits whose metric could not be read (e.g. answers that never state the asked-for percentages)."""
  return [{**e, "pair": e.get("pair", p.get("pair", ""))} for p in (metrics or {}).get("pairs", [])
          for e in p.get("not_computable", [])]


def _headline(metrics: Any) -> list[str]:
  effects = layout.effects_of(metrics)
  missing = [f"- {e['pair']}: **not computable** - {e.get('describe', '')}" for e in _not_computable(metrics)]
  if not effects:
    if missing:
      return ["## Result", "", "**No measurement: no edit has enough items whose answers could be scored.**", "",
              *missing, ""]
    return ["**Result:** no edits were evaluated (the intervene stage has not run).", ""]
  what = metrics.get("effect_of", "value orientation")
  if metrics.get("primary"):
    return _primary(metrics, effects, missing, what)
  tested = [e for e in effects if e.get("control_effects")]
  causal = [e for e in tested if verdict(e)[0] == CAUSAL]
  suggestive = [e for e in tested if verdict(e)[0] == SUGGESTIVE]
  # Several edits tested at once: a finding counts only if it survives a family-wise (Holm) correction.
  alpha = tested[0].get("alpha", 0.05) if tested else 0.05
  adjusted = dict(zip((id(e) for e in tested), holm([e["p_value"] for e in tested]))) if tested else {}
  kept = [e for e in causal if len(tested) == 1 or adjusted[id(e)] <= alpha]
  lines = ["## Result", ""]
  if not tested:
    lines.append("No random controls ran, so no edit can be told apart from editing any neurons.")
  elif kept:
    lines.append(f"**{len(kept)} of {len(tested)} edits tested against random controls move {what} "
                 "as predicted and significantly further than random neurons with the same "
                 "per-layer counts" + (" (after correcting for the number of tests)" if len(tested) > 1 else "")
                 + ":**")
  elif causal:
    lines.append(f"**No effect survives correction for {len(tested)} tests: {len(causal)} of {len(tested)} edits "
                 f"move {what} further than random neurons at p <= {alpha:g} on their own, but none "
                 "after the Holm correction:**")
  elif suggestive:
    lines.append(f"**No significant effect; {len(suggestive)} of {len(tested)} edits move {what} as "
                 "predicted and further than every random control, but there are too few controls for a "
                 "significant p-value:**")
  else:
    lines.append(f"**No effect: none of the {len(tested)} edits tested against random controls moves {what} "
                 "as predicted and further than random neurons with the same per-layer counts.**")
  lines.append("")
  for e in tested:
    label, why = verdict(e)
    lines.append(f"- {e['pair']}, {e['edit']}: **{label}** - {why}")
  lines += missing
  if causal and len(tested) > 1:
    lines += ["", f"Correcting for {len(tested)} tests (Holm): {len(kept)} of the {len(causal)} causal findings "
              f"keep p <= {alpha:g} (" + "; ".join(f"{e['pair']}, {e['edit']}: adjusted p = {adjusted[id(e)]:.3g}"
                                                  for e in causal) + ")."]
  lines += ["", f"Metric: {metrics.get('metric_description', metrics.get('metric'))}. Change = edited minus "
            "unedited, averaged over items; 95% bootstrap CI over items; p = rank of the located effect among "
            f"the random controls' effects ({metrics.get('n_controls')} per tested edit), one-sided in the "
            "predicted direction.", ""]
  return lines


def _primary(metrics: dict[str, Any], effects: list[dict[str, Any]], missing: list[str], what: str) -> list[str]:
  """The declared primary test first, with its verdict; then every edit, labelled exploratory."""
  pt = metrics["primary"]
  res = pt.get("result")
  lines = ["## Result", "", f"**Primary test** (fixed in the config before the run): {pt['declared']}.", ""]
  if not res:
    lines.append("**Not computable:** no located edit with random controls matches the primary test.")
  elif pt["test"] == "pooled":
    ctrl = res["control_effects"]
    ci = f"{res['mean']:+.3g} [{res['ci_low']:+.3g}, {res['ci_high']:+.3g}]"
    spread = (f"control replicates {np.mean(ctrl):+.3g} +- {np.std(ctrl, ddof=1):.2g} ({len(ctrl)})"
              if len(ctrl) > 1 else f"{len(ctrl)} control replicate(s)")
    p = "-" if res["p_value"] is None else f"{res['p_value']:.3g}"
    if res["significant"]:
      head = (f"**Causal: the located neurons move {what} as predicted, further than random neurons with the same "
              f"per-layer counts**")
    elif res["ci_high"] < 0:
      head = f"**Opposite: the located edits move {what} against the prediction**"
    elif res["ci_low"] > 0:
      head = f"**Not specific: {what} moves as predicted, but random neurons of the same shape move it as much**"
    else:
      head = f"**No effect: the pooled change of {what} is indistinguishable from 0**"
    seq = res.get("sequential")
    if seq:
      # The sequential p's own floor is 1 / (R_max + 1), reached only when no replicate stops it early.
      why = (f"stopped after {seq['looked']} of up to {seq['r_max']} replicates, {seq['h']} of them reaching the "
             "located effect" if seq["stopped"] == "h reached" else
             f"all {seq['r_max']} replicates looked at, {seq['hits']} reaching the located effect")
      p += (f" (sequential, h = {seq['h']}: {why}; {res.get('replicates_scored', seq['looked'])} scored; running "
            f"count {seq['running']})")
    else:
      p += f" (at least {1 / (1 + len(ctrl)):.2g} with {len(ctrl)} replicates)"
    lines.append(f"{head}: pooled signed effect {ci} (95% CI) over {res['n_edits']} edits ({'; '.join(pt['edits'])});"
                 f" {spread}; p = {p}.")
    if res.get("excess") is not None:
      t_p = "-" if res.get("t_p") is None else f"{res['t_p']:.3g}"
      lines.append(f"Beside the rank p: excess over the controls' mean {res['excess']:+.3g} "
                   f"[{res['excess_low']:+.3g}, {res['excess_high']:+.3g}] (95%, the located effect's item SE and "
                   f"the controls' mean's SE); t prediction-interval p = {t_p} (assumes normal replicates).")
  else:
    kept = [r for r in res if r["significant"]]
    lines.append(f"**{len(kept)} of {len(res)} primary edits move {what} as predicted, further than random "
                 "neurons after the Holm correction" + (":**" if kept else ".**"))
    lines.append("")
    for r in res:
      lines.append(f"- {r['edit']}: {r['mean']:+.3g} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}], p = "
                   f"{r['p_value']:.3g}, Holm-adjusted p = {r['adjusted_p']:.3g}: "
                   f"**{'significant' if r['significant'] else 'not significant'}**")
  lines += ["", "Every edit on its own (exploratory: uncorrected, read as hypotheses for a new primary test):", ""]
  for e in effects:
    label, why = verdict(e)
    lines.append(f"- {e['pair']}, {e['edit']}: {label} - {why}")
  lines += missing
  lines += ["", f"Metric: {metrics.get('metric_description', metrics.get('metric'))}. Change = edited minus "
            "unedited, averaged over items; 95% bootstrap CI over items; p = rank of the located effect among "
            f"the random controls' effects ({metrics.get('n_controls')} per tested edit), one-sided in the "
            "predicted direction.", ""]
  return lines


def _positive_control(root: str, config: dict[str, Any]) -> list[str]:
  """Whether a known, replicating effect (LAPE language neurons) shows on the same model through the same
  pipeline: without it a null result cannot be told from a pipeline that sees nothing."""
  if not config.get("positive_control"):
    return []
  sub = os.path.join(root, layout.POSITIVE_CONTROL)
  metrics = layout.read(sub, layout.METRICS)
  lines = ["## Can this run see an effect?", ""]
  effects = layout.effects_of(metrics)
  if not effects:
    return lines + [f"The positive control (`{config['positive_control']}`) has not run: nothing here says whether "
                    "this pipeline could have seen an effect.", ""]
  sub_cfg = (layout.read(sub, layout.CONFIG) or {}).get("config", {})
  located = layout.read(sub, layout.LOCATE_SUMMARY) or {}
  total = next((s["num_layers"] * s["num_neurons"] for s in located.values()), None)
  lines.append(f"Positive control: language neurons (LAPE) of the same model, `{sub_cfg.get('model', '?')}`, found "
               f"from teacher-forced statistics of {' and '.join(sub_cfg.get('data', {}).get('langs', []))} texts "
               "and deactivated (a = 0) where only the target language's set holds them. Effect = change in held-out "
               "loss (nats per token) of the target language minus that of the same texts in the other language; "
               "p = rank among random neuron sets with the same per-layer counts "
               f"([full report]({layout.POSITIVE_CONTROL}/{layout.REPORT})).")
  lines.append("")
  ok = True
  for e in effects:
    comp, ctrl = e.get("components") or {}, e.get("control_effects") or []
    label, _ = verdict(e)
    ok = ok and label == CAUSAL
    share = f" ({e['n_neurons'] / total:.2%} of the model)" if total else ""
    p = "-" if e.get("p_value") is None else f"{e['p_value']:.3g}"
    floor = f", the smallest possible with {len(ctrl)} controls" if ctrl and e.get("p_value") == 1 / (1 + len(ctrl)) else ""
    lines.append(f"- **{e['pair']}**: deactivating {e['n_neurons']} neurons{share} changed the target language's "
                 f"loss by {comp.get('target_nll', float('nan')):+.3g} and the other's by "
                 f"{comp.get('other_nll', float('nan')):+.3g} nats per token: effect {e['mean']:+.3g} "
                 f"[{e['ci_low']:+.3g}, {e['ci_high']:+.3g}] over {e['n']} texts; random controls "
                 + (f"{min(ctrl):+.3g} to {max(ctrl):+.3g} ({len(ctrl)}); p = {p}{floor}. **{label}**"
                    if ctrl else "none ran. **untested**"))
  lines.append("")
  if ok:
    lines.append("Yes: record, locate, intervene and evaluate detect a real causal effect on this model, far beyond "
                 "random neurons of the same shape. This shows the machinery works here; it does not show that the "
                 "value metric above is as sensitive as a language's loss.")
  else:
    lines.append("**No: the positive control did not come out as a causal effect beyond random neurons, so a null "
                 "result above says nothing about the value neurons.** Check the control's own report.")
  lines.append("")
  return lines


def contrast(root: str, config: dict[str, Any]) -> str | None:
  """ValueLocate's contrast as the run recorded it ("reversed" or "aspects"; None for other methods), read off
  the recorded groups, so that runs made before `locate.contrast` existed (all "aspects") are named right."""
  if config.get("method") != "valuelocate":
    return None
  groups = (layout.read(root, layout.RECORD_SUMMARY) or {}).get("groups")
  if groups is None:
    return config.get("locate", {}).get("contrast", "aspects")
  return "reversed" if any(g.endswith(REVERSED_SUFFIX) for g in groups) else "aspects"


def _what_ran(root: str, cfg: dict[str, Any]) -> list[str]:
  c = cfg.get("config", {})
  rec, data = c.get("record", {}), c.get("data", {})
  summary = layout.read(root, layout.RECORD_SUMMARY) or {}
  kind = contrast(root, c)
  lines = ["## What was run", "",
           f"- Method: {c.get('method')}; model: `{c.get('model')}`; seed {c.get('seed')}",
           *([f"- Contrast: {CONTRAST_WORDS[kind]}"] if kind else []),
           f"- Data: `{data.get('framework')}` ({data.get('lang')}), {data.get('items_per_group') or 'all'} "
           f"items per group; groups: {', '.join(summary.get('groups', [])) or '?'}",
           f"- Recording: {rec.get('mode')}, batch {rec.get('batch_size')}, up to {rec.get('max_new_tokens')} new "
           f"tokens, repetition penalty {rec.get('repetition_penalty')}; counted: {summary.get('counted', '?')}"
           f" ({sum(summary.get('tokens', [])) } tokens over {sum(summary.get('items', []))} items)",
           f"- Code: git commit `{cfg.get('git_commit') or 'unknown'}`; full config in `config.json`",
           ""]
  return lines


def _neurons(root: str, located: Any) -> list[str]:
  if not located:
    return ["## Located neurons", "", "The locate stage has not run.", ""]
  lines = ["## Located neurons", ""]
  counts = {}
  for name, s in located.items():
    for g, info in s["groups"].items():
      counts[f"{name}: {g}" if g not in name else g] = info["per_layer"]
  lines.append("| set | group | neurons | share of all | mean contrast |")
  lines.append("|---|---|---:|---:|---:|")
  for name, s in located.items():
    total = s["num_layers"] * s["num_neurons"]
    for g, info in s["groups"].items():
      md = info.get("mean_delta")
      lines.append(f"| {name} | {g} | {info['count']} | {info['count'] / total:.2%} | "
                   f"{'' if md is None else f'{md:.3f}'} |")
  lines.append("")
  names = list(counts)
  num_layers = max(len(v) for v in counts.values())
  lines.append("Neurons per layer:")
  lines.append("")
  lines.append("| layer | " + " | ".join(names) + " |")
  lines.append("|---:|" + "---:|" * len(names))
  for layer in range(num_layers):
    lines.append(f"| {layer} | " + " | ".join(str(counts[n][layer]) for n in names) + " |")
  path = plots.plot_neurons_per_layer(counts, os.path.join(root, layout.FIGURES, "neurons_per_layer.png"))
  lines += ["", f"![neurons per layer]({plots.relpath(path, root)})", ""]
  return lines


def _grid(root: str, metrics: Any) -> list[str]:
  """A study's grid: every point's pooled effect against its matched controls, a figure, and per pair."""
  grid = (metrics or {}).get("grid")
  if not grid:
    return []
  fmt = lambda g: f"{g['mean']:+.3g} [{g['ci_low']:+.3g}, {g['ci_high']:+.3g}]"
  band = lambda g: "-" if g["control_band"][0] is None else f"{g['control_band'][0]:+.3g} to {g['control_band'][1]:+.3g}"
  lines = ["## Every grid point", "",
           "Pooled signed change (predicted direction counted +) over every pair and both modes; controls: 5-95% of "
           "the control replicates with the same per-layer counts. Only the primary point is a confirmatory test.", "",
           "| size | neurons | gamma | steer | pooled change [95% CI] | controls 5-95% | p | replicates | role |",
           "|---|---:|---:|---|---|---|---:|---:|---|"]
  for g in grid:
    p = "-" if g["p_value"] is None else f"{g['p_value']:.3g}"
    lines.append(f"| {g['size']} | {g['n_neurons']} | {g['gamma']:g} | {g['steer']} | {fmt(g)} | {band(g)} | {p} | "
                 f"{g['n_controls']} | {'primary' if g['primary'] else 'exploratory'} |")
  path = plots.plot_grid(grid, os.path.join(root, layout.FIGURES, "grid.png"), metrics.get("metric", ""))
  lines += ["", f"![effect against gamma]({plots.relpath(path, root)})", "", "Per pair (both modes pooled):", "",
            "| pair | size | gamma | steer | change [95% CI] | controls 5-95% | p | verdict |", "|---|---|---:|---|---|---|---:|---|"]
  for g in grid:
    for pair, r in g["pairs"].items():
      label = pooled_label(r)
      p = "-" if r["p_value"] is None else f"{r['p_value']:.3g}"
      lines.append(f"| {pair} | {g['size']} | {g['gamma']:g} | {g['steer']} | {fmt(r)} | {band(r)} | {p} | {label} |")
  lines.append("")
  return lines


def _effects(root: str, metrics: Any) -> list[str]:
  effects = layout.effects_of(metrics)
  if not effects:
    return []
  lines = ["## Effect of each edit", "",
           "| pair | edit | neurons | baseline | change [95% CI] | controls: mean +- sd (n) | p | verdict |",
           "|---|---|---:|---:|---|---|---:|---|"]
  base = {p["pair"]: p["baseline_mean"] for p in metrics["pairs"]}
  for e in effects:
    ctrl = e.get("control_effects") or []
    sd = e.get("control_sd")
    ctrl_s = (f"{e['control_mean']:+.3g} +- {sd:.2g} ({len(ctrl)})" if ctrl and sd is not None
              else f"{e['control_mean']:+.3g} ({len(ctrl)})" if ctrl else "-")
    p = "-" if e.get("p_value") is None else f"{e['p_value']:.3g}"
    lines.append(f"| {e['pair']} | {e['edit']} | {e.get('n_neurons', '')} | {base[e['pair']]:.3f} | "
                 f"{e['mean']:+.3g} [{e['ci_low']:+.3g}, {e['ci_high']:+.3g}] | {ctrl_s} | {p} | "
                 f"{verdict(e)[0]} |")
  path = plots.plot_effects(effects, os.path.join(root, layout.FIGURES, "effects.png"), metrics.get("metric", ""))
  lines += ["", f"![effects]({plots.relpath(path, root)})", "",
            "Per-item scores: `intervene/metrics.csv` (long format); one row per edit: `intervene/effects.csv`.",
            ""]
  return lines


def _profiles(root: str, metrics: Any) -> list[str]:
  """A metric that reads a value profile (pvq) under each edit: the profiles as a figure per pair."""
  lines = []
  for p in (metrics or {}).get("pairs", []):
    base = (p.get("detail") or {}).get("profile")
    edited = [(e["edit"], e["detail"]["profile"]) for e in p["effects"] + p.get("not_computable", [])
              if (e.get("detail") or {}).get("profile")]
    if not base or not edited:
      continue
    if not lines:
      lines = ["## Value profiles", "", "Centred PVQ scores per value (each value's mean answer minus the mean over "
               "all portraits), unedited and under each located edit.", ""]
    path = plots.plot_profiles(p["pair"], [("unedited", base), *edited],
                               os.path.join(root, layout.FIGURES, f"profile_{p['pair']}.png"))
    lines += [f"![{p['pair']} value profile]({plots.relpath(path, root)})", ""]
  return lines


def _examples(examples: Any, per_question: int = 4, max_questions: int = 4) -> list[str]:
  if not examples:
    return []
  lines = ["## Answers before and after editing", ""]
  by_item: dict[str, list[dict[str, Any]]] = {}
  for r in examples:
    by_item.setdefault(r["item_id"], []).append(r)
  for item, recs in list(by_item.items())[:max_questions]:
    lines.append(f"**{recs[0]['metadata'].get('pair', '')}** - {recs[0]['prompt']}")
    lines.append("")
    for r in recs[:per_question]:
      text = " ".join(r["text"].split()) or "(empty)"
      lines.append(f"- *{r['edit']}*: {text}")
    lines.append("")
  return lines


def _timings(timings: dict[str, Any]) -> list[str]:
  if not timings:
    return []
  lines = ["## Time per stage", "", "| stage | seconds | peak RSS (MiB, process so far) | note |", "|---|---:|---:|---|"]
  for stage, t in timings.items():
    note = "skipped (outputs reused; time of the run that made them)" if t.get("skipped") else ""
    if t.get("tokens"):
      note = (note + "; " if note else "") + f"{t['tokens']} tokens"
    rss = t.get("peak_rss_mib")
    lines.append(f"| {stage} | {t['seconds']:.1f} | {'' if rss is None else f'{rss:.0f}'} | {note} |")
  lines.append("")
  return lines
