"""report.md from a finished workdir: what ran, where the value neurons are, whether editing them moves
value orientation more than random neurons do, a few answers before/after editing, and stage times.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from valuejax import fileio as vio
from valuejax.data.schema import REVERSED_SUFFIX
from valuejax.methods.valuelocate import CONTRAST_WORDS
from valuejax.errors import ValueJaxError
from valuejax.report import plots
from valuejax.evaluate.stats import holm
from valuejax.workdir import layout
from valuejax.workdir.outputs import read_intervene
from valuejax.workdir.results import EffectRecord, InterveneResults
from valuejax.report.verdict import CAUSAL, SUGGESTIVE, verdict

def write_report(workdir: str) -> str:
  """Writes <workdir>/report.md (and its figures under <workdir>/report/); returns the report's path."""
  root = os.path.abspath(workdir)
  cfg = layout.read(root, layout.CONFIG) or {}
  config = cfg.get("config", {})
  results = read_intervene(root)
  parts = [f"# valuejax report: {config.get('method', '?')} on {config.get('model', '?')}", ""]
  parts += _manipulation(root, cfg)
  parts += _headline(results)
  parts += _positive_control(root, config)
  parts += _placebo(results)
  parts += _what_ran(root, cfg)
  parts += _neurons(root, layout.read(root, layout.LOCATE_SUMMARY))
  parts += _stability(root, config, layout.read(root, layout.LOCATE_SUMMARY))
  parts += _grid(root, results)
  parts += _effects(root, results)
  parts += _yardsticks(results)
  parts += _decomposition(results)
  parts += _dose_response(results)
  parts += _controls(results)
  parts += metric_section(results, root)
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


def _missing(results: InterveneResults | None) -> list[str]:
  """Edits whose metric could not be read (e.g. answers that never state the asked-for percentages)."""
  return [f"- {e.unit}: **not computable** - {e.describe}" for e in (results.not_computable() if results else [])]


def metric_note(results: InterveneResults) -> list[str]:
  """The paragraph under the result that says what the metric, the change, the CI and p are."""
  # The controls each tested edit really has (the config's n_controls is only the exploratory points' number: the
  # primary edits have more, the parts taken apart their own, a sequential test stops early).
  counts = sorted({len(e.control_effects) for e in results.effects() if e.control_effects})
  per = (f"{counts[0]} per tested edit" if len(counts) == 1 else
         f"{counts[0]} to {counts[-1]} per tested edit" if counts else "no edit had controls")
  return [f"Metric: {results.metric_description or results.metric}. Change = edited minus unedited, averaged over "
          "items; 95% bootstrap CI over items; p = rank of the located effect among the random controls' effects "
          f"({per}), one-sided in the predicted direction.", ""]


def _headline(results: InterveneResults | None) -> list[str]:
  effects = results.effects() if results else []
  missing = _missing(results)
  if not effects:
    if missing:
      return ["## Result", "", "**No measurement: no edit has enough items whose answers could be scored.**", "",
              *missing, ""]
    return ["**Result:** no edits were evaluated (the intervene stage has not run).", ""]
  what = results.effect_of
  if results.primary is not None:
    return _primary(results, effects, missing, what)
  tested = [e for e in effects if e.control_effects]
  causal = [e for e in tested if verdict(e)[0] == CAUSAL]
  suggestive = [e for e in tested if verdict(e)[0] == SUGGESTIVE]
  # Several edits tested at once: a finding counts only if it survives a family-wise (Holm) correction.
  alpha = tested[0].alpha if tested else 0.05
  adjusted = dict(zip((id(e) for e in tested), holm([e.p_value for e in tested]))) if tested else {}
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
    lines.append(f"- {e.unit}, {e.edit}: **{label}** - {why}")
  lines += missing
  if causal and len(tested) > 1:
    lines += ["", f"Correcting for {len(tested)} tests (Holm): {len(kept)} of the {len(causal)} causal findings "
              f"keep p <= {alpha:g} (" + "; ".join(f"{e.unit}, {e.edit}: adjusted p = {adjusted[id(e)]:.3g}"
                                                  for e in causal) + ")."]
  return lines + [""] + metric_note(results)


def _primary(results: InterveneResults, effects: list[EffectRecord], missing: list[str], what: str) -> list[str]:
  """The declared primary test first, with its verdict; then every edit, labelled exploratory."""
  pt = results.primary
  lines = ["## Result", "", f"**Primary test** (fixed in the config before the run): {pt.declared}.", ""]
  if not pt.computed:
    lines.append("**Not computable:** no located edit with random controls matches the primary test.")
  elif pt.pooled is not None:
    res = pt.pooled
    ctrl = list(res.control_effects)
    ci = f"{res.mean:+.3g} [{res.ci_low:+.3g}, {res.ci_high:+.3g}]"
    spread = (f"control replicates {np.mean(ctrl):+.3g} +- {np.std(ctrl, ddof=1):.2g} ({len(ctrl)})"
              if len(ctrl) > 1 else f"{len(ctrl)} control replicate(s)")
    p = "-" if res.p_value is None else f"{res.p_value:.3g}"
    label, why = verdict(res, what)
    head = f"**{label[0].upper()}{label[1:]}: {why}**"
    seq = res.sequential
    if seq:
      # The sequential p's own floor is 1 / (R_max + 1), reached only when no replicate stops it early.
      stop = (f"stopped after {seq.looked} of up to {seq.r_max} replicates, {seq.h} of them reaching the "
              "located effect" if seq.stopped == "h reached" else
              f"all {seq.r_max} replicates looked at, {seq.hits} reaching the located effect")
      scored = seq.looked if res.replicates_scored is None else res.replicates_scored
      p += f" (sequential, h = {seq.h}: {stop}; {scored} scored; running count {list(seq.running)})"
    else:
      p += f" (at least {1 / (1 + len(ctrl)):.2g} with {len(ctrl)} replicates)"
    lines.append(f"{head}: pooled signed effect {ci} (95% CI) over {res.n_edits} edits ({'; '.join(pt.edits)});"
                 f" {spread}; p = {p}.")
    if res.excess is not None:
      t_p = "-" if res.t_p is None else f"{res.t_p:.3g}"
      lines.append(f"Beside the rank p: excess over the controls' mean {res.excess:+.3g} "
                   f"[{res.excess_low:+.3g}, {res.excess_high:+.3g}] (95%, the located effect's item SE and "
                   f"the controls' mean's SE); t prediction-interval p = {t_p} (assumes normal replicates)"
                   f"{_normality(res.normality)}.")
  else:
    kept = [r for r in pt.each if r.significant]
    lines.append(f"**{len(kept)} of {len(pt.each)} primary edits move {what} as predicted, further than random "
                 "neurons after the Holm correction" + (":**" if kept else ".**"))
    lines.append("")
    for r in pt.each:
      lines.append(f"- {r.edit}: {r.mean:+.3g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}], p = "
                   f"{r.p_value:.3g}, Holm-adjusted p = {r.adjusted_p:.3g}: "
                   f"**{'significant' if r.significant else 'not significant'}**")
  lines += _mirror(pt.extra.get("mirror"))
  lines += ["", "Every edit on its own (exploratory: uncorrected, read as hypotheses for a new primary test):", ""]
  for e in effects:
    label, why = verdict(e)
    lines.append(f"- {e.unit}, {e.edit}: {label} - {why}")
  lines += missing
  return lines + [""] + metric_note(results)


def _mirror(m: dict[str, Any] | None) -> list[str]:
  """One line: rho over replicates between each pair's mirrored edits (valuejax.evaluate.mirror_correlation),
  beside the located edits' rho over items; nothing when the primary family has no such pair."""
  if not m or not m.get("pairs"):
    return []
  r = lambda v: "-" if v is None else f"{v:.2f}"
  up, down = (m.get("edits") or ["enhance", "reverse"])[:2]
  units = ", ".join(f"{p['stratum']} {r(p['rho'])}" for p in m["pairs"])
  return ["", f"Mirrored replicates: rho = {r(m['rho'])} between {up} and -({down}) over {m['n']} replicates "
              f"(per unit: {units}); the located edits' items: rho = {r(m['item_rho'])} ({m['n_items']} items)."]


def metric_section(results: InterveneResults | None, root: str) -> list[str]:
  """The run's metric's own section (`Metric.report_section`), e.g. pvq's value profiles; nothing when the
  intervene stage has not run. A metric that cannot be loaded here (a user's module gone) is named, not fatal:
  every other section of the report still reads."""
  if results is None or not results.metric:
    return []
  from valuejax.metrics import METRICS
  try:
    metric = METRICS.get(results.metric)()
  except ValueJaxError as e:
    return [f"(The metric `{results.metric}` cannot be loaded here, so its own section is left out: {e}.)", ""]
  return list(metric.report_section(results, root))


def _positive_control(root: str, config: dict[str, Any]) -> list[str]:
  """Whether a known, replicating effect (LAPE language neurons) shows on the same model through the same
  pipeline: without it a null result cannot be told from a pipeline that sees nothing. What each effect was
  is the control's metric's own section (language_nll's, its headings one level down); the answer is here."""
  if not config.get("positive_control"):
    return []
  sub = os.path.join(root, layout.POSITIVE_CONTROL)
  results = read_intervene(sub)
  effects = results.effects() if results else []
  lines = ["## Can this run see an effect?", ""]
  if not effects:
    return lines + [f"The positive control (`{config['positive_control']}`) has not run: nothing here says whether "
                    "this pipeline could have seen an effect.", ""]
  lines += [f"Positive control: the same model and pipeline on a known effect ([full report]"
            f"({layout.POSITIVE_CONTROL}/{layout.REPORT})).", ""]
  lines += ["#" + x if x.startswith("#") else x for x in metric_section(results, sub)]
  if lines[-1]:
    lines.append("")
  if all(verdict(e)[0] == CAUSAL for e in effects):
    lines.append("Yes: record, locate, intervene and evaluate detect a real causal effect on this model, far beyond "
                 "random neurons of the same shape. This shows the machinery works here; it does not show that the "
                 "value metric above is as sensitive as a language's loss.")
  else:
    lines.append("**No: the positive control did not come out as a causal effect beyond random neurons, so a null "
                 "result above says nothing about the value neurons.** Check the control's own report.")
  lines.append("")
  return lines


def _placebo(results: InterveneResults | None) -> list[str]:
  """Whether the test can say no: a set located by the same rule and sizes between two random halves of one
  group's items (no value difference), edited and tested as the primary test is, must come out null."""
  pl = results.placebo if results is not None else None
  if not pl:
    return []
  from valuejax.workdir.results import PrimaryResult
  test = PrimaryResult.from_json(pl.get("primary"))
  lines = ["## Can it say no? (placebo)", "",
           f"Placebo: the same rule and sizes locate a set between two random halves of `{pl['group']}`'s recording "
           f"items (unit `{pl['unit']}`, nothing but chance between them), edited with the same edits, controls and "
           f"pooled test as the primary test, on the eval items of {pl['pair']}. Pre-declared: it must come out null. "
           "It is not part of the primary test.", ""]
  res = test.pooled if test is not None else None
  if res is None:
    why = pl.get("why") or "no placebo edit with controls at the primary test's setting"
    return lines + [f"**Not computable** ({why}): this run does not show that its test can say no.", ""]
  p = "-" if res.p_value is None else f"{res.p_value:.3g}"
  lines.append(f"Pooled signed effect {res.mean:+.3g} [{res.ci_low:+.3g}, {res.ci_high:+.3g}] (95% CI) over "
               f"{res.n_edits} edits, p = {p} against {len(res.control_effects)} control replicates.")
  lines.append("")
  if res.significant:
    lines.append("**No: the placebo came out significant.** A contrast without any value difference passed the "
                 "test, so a significant primary result above cannot be read as evidence for value neurons.")
  else:
    lines.append(f"Yes: the placebo is null ({verdict(res)[0]}), as it must be; the test does not call every "
                 "located set an effect.")
  return lines + [""]


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


# The locate summary's variations of the recording (launch/locate.py VARIATIONS): key, what it is, its label.
_VARIATIONS = (("budget_stability", "each answer's first {} generated tokens alone (record.budget_tokens), from "
                "the same generation", "tokens"),
               ("pairing_stability", "a second recording with the items paired under data.seed = {} "
                "(record.pairing_seed2)", "seed"))


def _variation_rows(rows: list, factor: Any) -> list[str]:
  """Each set located again, same rule and sizes, on a shorter token budget and on a second item pairing,
  against the run's own sets (Jaccard vs chance, the same declared reading as the halves'); [] when the run
  recorded neither."""
  lines = []
  for key, what, label in _VARIATIONS:
    got = [(name, g, info[key]) for name, g, info in rows if key in info]
    if not got:
      continue
    lines += [f"Each set located again on {what.format(got[0][2].get(label))}, against the run's own sets; "
              f"**stable** when their Jaccard index exceeds {factor:g}x chance.", "",
              "| set | group | neurons (run, variation) | Jaccard | chance | ratio | reading |",
              "|---|---|---:|---:|---:|---:|---|"]
    for name, g, st in got:
      if "why" in st:
        lines.append(f"| {name} | {g} | - | - | - | - | not measured: {st['why']} |")
      else:
        lines.append(f"| {name} | {g} | {st['a']}, {st['b']} | {_fmt(st['jaccard'])} | {_fmt(st['chance'])} | "
                     f"{_fmt(st['ratio'], '.1f')} | {st['reading']} |")
    lines.append("")
  return lines


def _normality(check: Any) -> str:
  """The normality of the replicates behind the t p, and the declared reading of that p ("" in runs from
  before the check)."""
  from valuejax.evaluate.stats import NORMALITY_ALPHA, NORMALITY_MIN_N
  if check is None:
    return ""
  if check.w is None:
    return f"; {check.reading}"
  kurt = "-" if check.excess_kurtosis is None else f"{check.excess_kurtosis:+.2f}"
  return (f"; normality of the {check.n} replicates: Shapiro-Wilk W = {check.w:.3f}, p = {check.p:.3g}, skewness "
          f"{check.skew:+.2f}, excess kurtosis {kurt}: **{check.reading}** (trusted only when Shapiro-Wilk does "
          f"not reject at {NORMALITY_ALPHA:g} with at least {NORMALITY_MIN_N} replicates)")


def _stability(root: str, config: dict[str, Any], located: Any) -> list[str]:
  """Are the located sets stable? Each set located again on each half of the recording items, the halves'
  Jaccard against chance (the config's pre-declared reading), and the overlap between the located groups (and
  with the positive control's language sets, when that run has located them)."""
  if not located:
    return []
  rows = [(name, g, info) for name, s in located.items() for g, info in s["groups"].items()]
  lines = ["## Are the located sets stable?", ""]
  factor = config.get("locate", {}).get("stable_factor")
  if any("stability" in info for _, _, info in rows):
    lines += [f"Each set located again on each random half of the recording items alone (same rule and size); "
              f"read as declared before any set existed: **stable** when the halves' Jaccard index exceeds "
              f"{factor:g}x the Jaccard of two random sets of the same sizes.", "",
              "| set | group | neurons (half a, b) | Jaccard a vs b | chance | ratio | reading |",
              "|---|---|---:|---:|---:|---:|---|"]
    for name, g, info in rows:
      st = info.get("stability")
      if st and "why" in st:
        lines.append(f"| {name} | {g} | - | - | - | - | not measured: {st['why']} |")
      elif st:
        lines.append(f"| {name} | {g} | {st['a']}, {st['b']} | {_fmt(st['jaccard'])} | {_fmt(st['chance'])} | "
                     f"{_fmt(st['ratio'], '.1f')} | {st['reading']} |")
  else:
    lines.append("The run recorded no halves (record.halves = False): the stability of the sets is not measured.")
  lines.append("")
  lines += _variation_rows(rows, factor)
  names = [f"{name}: {g}" for name, g, _ in rows]
  if len(names) > 1 and all("overlap" in info for _, _, info in rows):
    lines += ["Overlap between the located groups (Jaccard index):", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r, (_, _, info) in zip(names, rows):
      lines.append(f"| {r} | " + " | ".join(_fmt(info["overlap"].get(c)) for c in names) + " |")
    lines.append("")
  lines += _language_overlap(root, located)
  return lines


def _language_overlap(root: str, located: Any) -> list[str]:
  """The located groups' Jaccard with the positive control's language sets on the same model, when both sets
  are readable; nothing otherwise."""
  from valuejax.locate import NeuronSet
  from valuejax.locate.stability import cross_overlaps
  sub = os.path.join(root, layout.POSITIVE_CONTROL)
  theirs = layout.read(sub, layout.LOCATE_SUMMARY)
  if not theirs:
    return []
  try:
    load = lambda base, names: {n: NeuronSet.load(os.path.join(base, layout.neuron_set(n))) for n in names}
    table = cross_overlaps(load(root, located), load(sub, theirs))
  except (OSError, ValueError, KeyError, ValueJaxError):
    return []
  cols = sorted({c for row in table.values() for c in row})
  if not cols:
    return []
  lines = ["Overlap with the positive control's language neurons (Jaccard index):", "",
           "| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
  lines += [f"| {r} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |" for r, row in table.items()]
  return lines + [""]


def _fmt(v: Any, fmt: str = ".3f") -> str:
  return "-" if v is None else format(v, fmt)


def _grid(root: str, results: InterveneResults | None) -> list[str]:
  """A study's grid: every point's pooled effect against its matched controls, a figure, and per pair."""
  grid = results.grid if results else None
  if not grid:
    return []
  fmt = lambda g: f"{g.mean:+.3g} [{g.ci_low:+.3g}, {g.ci_high:+.3g}]"
  band = lambda g: "-" if not g.control_band or g.control_band[0] is None else \
      f"{g.control_band[0]:+.3g} to {g.control_band[1]:+.3g}"
  lines = ["## Every grid point", "",
           "Pooled signed change (predicted direction counted +) over every pair and both modes; controls: 5-95% of "
           "the control replicates with the same per-layer counts. Only the primary point is a confirmatory test.", "",
           "| size | neurons | gamma | steer | pooled change [95% CI] | controls 5-95% | p | replicates | role |",
           "|---|---:|---:|---|---|---|---:|---:|---|"]
  for g in grid:
    s = g.summary
    p = "-" if s.p_value is None else f"{s.p_value:.3g}"
    lines.append(f"| {g.size} | {s.n_neurons} | {g.gamma:g} | {g.steer} | {fmt(s)} | {band(s)} | {p} | "
                 f"{s.n_controls} | {'primary' if g.primary else 'exploratory'} |")
  path = plots.plot_grid(grid, os.path.join(root, layout.FIGURES, "grid.png"), results.metric)
  lines += ["", f"![effect against gamma]({plots.relpath(path, root)})", "", "Per pair (both modes pooled):", "",
            "| pair | size | gamma | steer | change [95% CI] | controls 5-95% | p | verdict |",
            "|---|---|---:|---|---|---|---:|---|"]
  for g in grid:
    for unit, r in g.units.items():
      p = "-" if r.p_value is None else f"{r.p_value:.3g}"
      lines.append(f"| {unit} | {g.size} | {g.gamma:g} | {g.steer} | {fmt(r)} | {band(r)} | {p} | {verdict(r)[0]} |")
  lines.append("")
  return lines


def _effects(root: str, results: InterveneResults | None) -> list[str]:
  effects = results.effects() if results else []
  if not effects:
    return []
  lines = ["## Effect of each edit", "",
           "| pair | edit | neurons | baseline | change [95% CI] | controls: mean +- sd (n) | p | verdict |",
           "|---|---|---:|---:|---|---|---:|---|"]
  base = {u.unit: u.baseline_mean for u in results.units}
  for e in effects:
    ctrl = e.control_effects
    sd = e.control_sd
    ctrl_s = (f"{e.control_mean:+.3g} +- {sd:.2g} ({len(ctrl)})" if ctrl and sd is not None
              else f"{e.control_mean:+.3g} ({len(ctrl)})" if ctrl else "-")
    p = "-" if e.p_value is None else f"{e.p_value:.3g}"
    b = base[e.unit]
    lines.append(f"| {e.unit} | {e.edit} | {'' if e.n_neurons is None else e.n_neurons} | "
                 f"{'' if b is None else f'{b:.3f}'} | {e.mean:+.3g} [{e.ci_low:+.3g}, {e.ci_high:+.3g}] | "
                 f"{ctrl_s} | {p} | {verdict(e)[0]} |")
  path = plots.plot_effects(effects, os.path.join(root, layout.FIGURES, "effects.png"), results.metric)
  lines += ["", f"![effects]({plots.relpath(path, root)})", "",
            "Per-item scores: `intervene/metrics.csv` (long format); one row per edit: `intervene/effects.csv`.",
            ""]
  return lines


def _num(v: Any, fmt: str = "+.3g") -> str:
  return "-" if v is None else format(v, fmt)


def _interval(bounds: Any) -> str:
  """"[lo, hi]" of a stored (lo, hi) pair, "-" for a bound (or a pair) that is missing."""
  lo, hi = (bounds or [None, None])[:2]
  return f"[{_num(lo)}, {_num(hi)}]"


def _yardsticks(results: InterveneResults | None) -> list[str]:
  """How big each located effect is on other scales: flips, log-odds, the prompt yardstick, the neutral loss."""
  effects = [e for e in (results.effects() if results else []) if e.yardsticks]
  if not effects:
    return []
  lines = ["## How big is each effect?", "",
           "Yardsticks for a change in a probability: the share of items whose preferred action flips (P(aligned) "
           "crossing 0.5) under the edit and, on average, under its controls; the mean change in log-odds "
           "[95% CI] beside the controls' mean; the effect as a fraction of the prompt yardstick (the unedited "
           "model told the value in one sentence; signed in the predicted direction: 1 = as far as telling it; n/a "
           "where that change is missing or its CI includes 0); "
           "and the loss per token on neutral text under the edit minus the unedited model's (nats; an edit that "
           "breaks the model shows here).", "",
           "| pair | edit | change | flips | controls' flips | log-odds [95% CI] | controls' log-odds | "
           "share of prompt yardstick | neutral loss change |",
           "|---|---|---:|---:|---:|---|---:|---:|---:|"]
  for e in effects:
    y = e.yardsticks
    lo, hi = (y.get("logodds_ci") or [None, None])[:2]
    ci = f" [{_num(lo)}, {_num(hi)}]" if lo is not None else ""
    flips = lambda v: "-" if v is None else f"{v:.0%}"
    share = "n/a" if y.get("prompt_fraction") is None else format(y["prompt_fraction"], ".2g")
    lines.append(f"| {e.unit} | {e.edit} | {e.mean:+.3g} | {flips(y.get('flips'))} | {flips(y.get('control_flips'))} "
                 f"| {_num(y.get('logodds'))}{ci} | {_num(y.get('control_logodds'))} | "
                 f"{share} | {_num(y.get('neutral_change'))} |")
  lines += _directions(effects)
  told = [u for u in results.units if u.prompt_yardstick]
  if told:
    lines += ["", "The prompt yardstick: the same forced choice on the unedited model with one sentence stating the "
              "value before each question (how far the metric moves when the model is *told* the value):", "",
              "| pair | sentence | change in P(aligned) [95% CI] | log-odds | flips | items |",
              "|---|---|---|---:|---:|---:|"]
    for u in told:
      t = u.prompt_yardstick
      lines.append(f"| {u.unit} | {t.get('sentence', '')} | {_num(t.get('mean'))} {_interval(t.get('ci'))} | "
                   f"{_num(t.get('logodds'))} | {'-' if t.get('flips') is None else format(t['flips'], '.0%')} | "
                   f"{t.get('n', '')} |")
  if results.neutral_loss:
    n = results.neutral_loss
    lines += ["", f"Neutral text: {n.get('sentences')} plain sentences (`data/neutral_text.jsonl` unless "
              f"`intervene.neutral_text` names another file); the unedited model's loss is "
              f"{_num(n.get('baseline'), '.4g')} nats per token."]
  lines.append("")
  return lines


def _directions(effects: list[Any]) -> list[str]:
  """The primary edits beside a diff-in-means edit and random directions of their own size (EffectRecord's
  `directions`); nothing when no effect carries them."""
  rows = [e for e in effects if e.directions is not None]
  if not rows:
    return []
  k = max(e.directions.random_k for e in rows)
  lines = ["", "Directions of the same size: each primary edit's expected change to the mean activation vector has "
           "an L2 norm (its push and its clamp, the clamp taken at the mean activation); the same items are scored "
           "with a vector of that norm added to every MLP neuron of the edited layers at the edit's positions: "
           "the diff-in-means of the pair's two recorded groups (mean activation of the first minus the second, "
           "added for an edit predicted to raise the metric, subtracted otherwise), and "
           f"{k} seeded random Gaussian direction{'s' if k != 1 else ''} (their mean change ± sd). A located effect "
           "no larger than the random directions' says little about *which* neurons were pushed.", "",
           "| pair | edit | change | norm (push, clamp) | neurons | diff-in-means change | random directions' change |",
           "|---|---|---:|---|---:|---:|---|"]
  for e in rows:
    d = e.directions
    rand = "-" if d.random_mean is None else _num(d.random_mean) + (
        "" if d.random_sd is None else f" ± {d.random_sd:.2g}") + f" ({d.random_k})"
    lines.append(f"| {e.unit} | {e.edit} | {e.mean:+.3g} | {d.norm:.3g} ({d.push_norm:.3g}, {d.clamp_norm:.3g}) | "
                 f"{d.n_neurons} | {_num(d.mean)} | {rand} |")
  return lines


def _decomposition(results: InterveneResults | None) -> list[str]:
  """The primary edits taken apart: full, push-only and clamp-only, each against its own controls."""
  d = results.decomposition if results else None
  if not d:
    return []
  lines = ["## The edit taken apart", "",
           "Each primary edit run whole, with its push alone (the opposite set left unclamped) and with its clamp "
           "alone (no push), each against its own random controls (the same mirrored family: a part's control "
           "is that part of the full edit's control). Exploratory: outside the primary test and uncorrected. "
           "Pooled = the mean change over the pairs and modes, signed in the predicted direction, against the "
           "same mean over control replicates.", "",
           "| part | edits | pooled signed change [95% CI] | p vs controls | replicates |", "|---|---:|---|---:|---:|"]
  label = {"full": "full edit", "push": "push only", "clamp": "clamp only"}
  for part, v in d.get("parts", {}).items():
    pooled = v.get("pooled") or {}
    lines.append(f"| {label.get(part, part)} | {len(v.get('edits', []))} | {_num(pooled.get('mean'))} "
                 f"{_interval(pooled.get('ci'))} | {_num(pooled.get('p'), '.3g')} | {pooled.get('replicates', '-')} |")
  lines += ["", "Per edit:", "", "| pair | mode | part | change [95% CI] | p | controls |",
            "|---|---|---|---|---:|---:|"]
  for part, v in d.get("parts", {}).items():
    for e in v.get("edits", []):
      lines.append(f"| {e['unit']} | {e.get('mode')} | {label.get(part, part)} | {_num(e.get('mean'))} "
                   f"{_interval(e.get('ci'))} | {_num(e.get('p'), '.3g')} | {e.get('n_controls', 0)} |")
  lines.append("")
  return lines


def _dose_response(results: InterveneResults | None) -> list[str]:
  """effect = a + b * gamma per set size, with paired-bootstrap CIs."""
  fits = results.dose_response if results else None
  if not fits:
    return []
  lines = ["## Dose-response", "",
           "effect = a + b * gamma per set size, by least squares over the located edits of every pair and mode "
           "(each signed in its predicted direction), with paired-bootstrap CIs (the items of each pair resampled "
           "once per replicate, the same draw for every gamma). a is what the edit does without any push (the "
           "clamp's share), b what each unit of push adds. The grid points carry no controls of their own for "
           "this: their role is the dose-response, exploratory.", "",
           "| size | steer | gammas | mean signed change per gamma | a [95% CI] | b [95% CI] | edits |",
           "|---|---|---|---|---|---|---:|"]
  for f in fits:
    lines.append(f"| {f.get('size')} | {f.get('steer')} | {', '.join(f'{g:g}' for g in f.get('gammas', []))} | "
                 f"{', '.join(_num(m) for m in f.get('means', []))} | {_num(f.get('a'))} {_interval(f.get('a_ci'))} | "
                 f"{_num(f.get('b'))} {_interval(f.get('b_ci'))} | {f.get('n_edits')} |")
  lines.append("")
  return lines


_MATCHING = {"p": "the located neuron's decile of activation probability (p = C / T) within its layer",
             "mean": "the located neuron's decile of mean activation (S1 / T) within its layer",
             "layer": "the layer only (any neuron of the same layer)"}


def _controls(results: InterveneResults | None) -> list[str]:
  """How the controls were drawn (mirrored or independent, what they were matched on) and, per located edit
  of the primary family (every tested edit without one), the activation probability of its neurons beside
  its controls' neurons: 10/50/90% quantiles, the share of silent neurons and the fallbacks out of their bin."""
  effects = [e for e in (results.effects() if results else []) if e.control_effects and e.control_activity]
  if results is not None and results.primary is not None and results.primary.edits:
    family = set(results.primary.edits)
    effects = [e for e in effects if f"{e.unit}, {e.edit}" in family] or effects
  if not effects:
    return []
  first = effects[0].control_activity
  mode, match = first.get("controls", "independent"), first.get("match", "layer")
  how = ("mirrored: replicate r is one random counterpart of a unit's whole family of located edits, so its "
         "edits (enhance and reverse, or toward support and toward conflict) act on the same two random sets "
         "with roles swapped, as the located edits do" if mode == "mirrored" else
         "independent: each edit's controls drawn on their own")
  lines = ["## Controls: how they were drawn", "",
           f"Controls are {how}. Each located neuron is replaced by a random neuron outside the located sets, from "
           f"{_MATCHING.get(match, match)}; a fallback is a replacement taken from the nearest bin with room.", ""]
  if not any("p" in e.control_activity for e in effects):
    return lines + ["No activation statistics were recorded, so the activity of the neurons is not shown.", ""]
  lines += ["Activation probability p of the located neurons and of the controls' neurons (pooled over replicates):",
            "", "| edit | neurons | p 10% | p 50% | p 90% | silent (p < 0.01) | fallbacks |",
            "|---|---|---:|---:|---:|---:|---:|"]
  fmt = lambda v: "-" if v is None else f"{v:.3g}"
  for e in effects:
    act = e.control_activity
    summary, silent = act.get("p") or {}, act.get("silent") or {}
    qs = list(summary.get("quantiles") or [])
    pick = lambda vals: [fmt(vals[qs.index(q)]) if vals and q in qs else "-" for q in (0.1, 0.5, 0.9)]
    share = lambda v: "-" if v is None else f"{v:.0%}"
    for who, key, fb in (("located", "located", ""), ("controls", "control", str(act.get("fallbacks", "-")))):
      name = f"{e.unit}, {e.edit}" if key == "located" else ""
      lines.append(f"| {name} | {who} | " + " | ".join(pick(summary.get(key))) + f" | {share(silent.get(key))} | "
                   f"{fb} |")
  return lines + [""]


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
  lines = ["## Time per stage", "", "| stage | seconds | peak RSS (MiB, process so far) | note |",
           "|---|---:|---:|---|"]
  for stage, t in timings.items():
    note = "skipped (outputs reused; time of the run that made them)" if t.get("skipped") else ""
    if t.get("tokens"):
      note = (note + "; " if note else "") + f"{t['tokens']} tokens"
    rss = t.get("peak_rss_mib")
    lines.append(f"| {stage} | {t['seconds']:.1f} | {'' if rss is None else f'{rss:.0f}'} | {note} |")
  lines.append("")
  return lines
