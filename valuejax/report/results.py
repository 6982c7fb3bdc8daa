"""A results page from finished workdirs: one summary table, then each run's own report, figures copied
beside the page. Every number on it comes from the runs' outputs; nothing is typed by hand.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
from typing import Any, Sequence

from valuejax import fileio as vio
from valuejax.errors import ValueJaxError
from valuejax.evaluate.stats import holm
from valuejax.report import markdown
from valuejax.report.verdict import verdict
from valuejax.workdir import layout
from valuejax.workdir.outputs import read_intervene, read_manipulation
from valuejax.workdir.results import InterveneResults


def _primary_cell(results: InterveneResults | None) -> str:
  pt = results.primary if results else None
  if pt is None or not pt.computed:
    return "not run" if results is None else "no primary test"
  if pt.pooled is not None:
    res = pt.pooled
    p = "-" if res.p_value is None else f"{res.p_value:.3g}"
    return (f"{verdict(res)[0]}: {res.mean:+.3g} [{res.ci_low:+.3g}, {res.ci_high:+.3g}], "
            f"p = {p} ({res.n_controls} replicates)")
  return "; ".join(f"{r.edit}: {r.mean:+.3g} [{r.ci_low:+.3g}, {r.ci_high:+.3g}], Holm p = "
                   f"{r.adjusted_p:.3g}{' (significant)' if r.significant else ''}" for r in pt.each)


def _primary_tests(slug: str, results: InterveneResults | None) -> list[tuple[str, float, bool]]:
  """(name, p, whether the effect lies in the predicted direction) of each primary test of one run, by the
  run's own rule: a pooled test's CI above 0; a per-edit test's mean on the predicted side ("toward"; runs
  written before it was stored give "significant", which is false whenever the direction is wrong and
  cannot turn true in a larger family)."""
  pt = results.primary if results else None
  if pt is None or not pt.computed:
    return []
  if pt.pooled is not None:
    res = pt.pooled
    return [(slug, res.p_value, res.ci_low > 0)] if res.p_value is not None else []
  return [(f"{slug}: {r.edit}", r.p_value, r.significant if r.toward is None else r.toward) for r in pt.each
          if r.p_value is not None]


def family_line(tests: Sequence[tuple[str, float, bool]], alpha: float) -> str:
  """The page's primary tests, (name, p, in the predicted direction), read as one family: Holm-adjusted p over
  all of them, and which survive (adjusted p <= alpha and the effect in the predicted direction, the runs'
  own rule). Empty for fewer than two tests."""
  if len(tests) < 2:
    return ""
  adjusted = holm([p for _, p, _ in tests])
  survive = [name for (name, _, toward), a in zip(tests, adjusted) if a <= alpha and toward]
  cells = "; ".join(f"{name} {p:.3g} -> {a:.3g}" for (name, p, _), a in zip(tests, adjusted))
  outcome = (f"{len(survive)} of {len(tests)} {'survives' if len(survive) == 1 else 'survive'} "
             f"({', '.join(survive)})" if survive else f"none of the {len(tests)} survives")
  return (f"**The page's {len(tests)} primary tests as one family** (each run declares its own at alpha "
          f"{alpha:g}; read together, they are corrected together): Holm-adjusted p: {cells}. At a family-wise "
          f"alpha of {alpha:g}, {outcome}.")


def _control_cell(root: str) -> str:
  results = read_intervene(os.path.join(root, layout.POSITIVE_CONTROL))
  effects = results.effects() if results else []
  if not effects:
    return "-"
  return "; ".join(f"{e.unit}: {e.mean:+.3g}, p = {'-' if e.p_value is None else f'{e.p_value:.3g}'} "
                   f"({verdict(e)[0]})" for e in effects)


def _totals(root: str) -> tuple[float, float | None]:
  """Seconds of every stage of the run at `root` and of its positive control (its sub-workdir), and the
  largest peak RSS of the stages that ran (None if none did)."""
  stages = []
  for d in (root, os.path.join(root, layout.POSITIVE_CONTROL)):
    stages += list((layout.read(d, layout.TIMINGS) or {}).values())
  seconds = sum(t["seconds"] for t in stages)
  rss = max((t["peak_rss_mib"] for t in stages if not t.get("skipped") and t.get("peak_rss_mib") is not None),
            default=None)
  return seconds, rss


def time_line(runs: Sequence[tuple[str, float]]) -> str:
  """(model, seconds) of each run on the page, summed per model in minutes, in the order models first
  appear. Empty for no runs."""
  per: dict[str, list[float]] = {}
  for model, seconds in runs:
    per.setdefault(model, []).append(seconds)
  if not per:
    return ""
  cells = "; ".join(f"`{m}` {sum(s) / 60:.0f} min ({len(s)} run{'s' if len(s) > 1 else ''})"
                    for m, s in per.items())
  return ("**Time per model** (every stage of the page's runs, their positive controls included, each as its "
          f"stage measured it; the machine's other load is not known here): {cells}.")


def manipulation_line(runs: Sequence[tuple[str, dict[str, Any] | None]]) -> str:
  """(run, its stored manipulation check or None) of each ValueExploration run on the page: whether the support
  and conflict personas separate the model's choices there (pooled CI of support - conflict above 0), so that a
  run whose contrast is empty is named before any neuron result is read. Empty when no run has a check."""
  cells = []
  for slug, check in runs:
    if check is None:
      continue
    r = check["pooled"]
    word = "separate" if check["separates"] else "**empty**"
    cells.append(f"{slug} {word} ({r['mean_diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], n = {r['n']})")
  if not cells:
    return ""
  return ("**Persona manipulation check** (P(value-aligned action) after the support prompt minus after the "
          "conflict prompt, unedited model, pooled over each run's values; a run whose CI does not lie above 0 "
          f"has an empty support/conflict contrast and its located sets cannot carry the value difference): "
          f"{'; '.join(cells)}.")


def run_slugs(roots: list[str]) -> list[str]:
  """Each run's name on a page (its section and its figures' folder): the workdir's folder name, with as many
  parent folders before it (joined by "_") as it takes to tell apart runs whose folders share a name, e.g. the
  positive controls `runs/study/model=A/positive_control` and `.../model=B/positive_control`."""
  parts = [r.split(os.sep) for r in roots]
  depth = [1] * len(roots)
  while True:
    slugs = ["_".join(p[-d:]).lstrip("_") for p, d in zip(parts, depth)]
    clashes = [i for i, x in enumerate(slugs) if slugs.count(x) > 1 and depth[i] < len(parts[i])]
    if not clashes:
      return slugs
    for i in clashes:
      depth[i] += 1


def _embedded(root: str, slug: str, out_dir: str) -> list[str]:
  """The run's report.md with headings one level down and its figures copied to `out_dir/slug/`."""
  text = open(markdown.write_report(root), encoding="utf-8").read()
  figures = os.path.join(root, layout.FIGURES)
  if os.path.isdir(figures):
    os.makedirs(os.path.join(out_dir, slug), exist_ok=True)
    for name in sorted(os.listdir(figures)):
      shutil.copyfile(os.path.join(figures, name), os.path.join(out_dir, slug, name))
  text = re.sub(r"\]\(report/", f"]({slug}/", text)
  text = re.sub(r"\[full report\]\([^)]*\)", "full report in the run's workdir", text)
  text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)
  return text.rstrip().split("\n")


def reproduce_line(cfg: dict[str, Any]) -> str:
  """How to run a workdir again, from its config.json: the command it recorded and the code's commit; a run
  written before config.json recorded its command says so, and where its whole config is."""
  commit = cfg.get("git_commit") or "not recorded"
  if cfg.get("command"):
    return f"Reproduce: `{cfg['command']}` (code at git commit `{commit}`)."
  return (f"Reproduce: the command was not recorded (the run predates config.json's `command`); its whole config "
          f"is the `config` of its config.json (code at git commit `{commit}`).")


def write_results(workdirs: Sequence[str], out: str, title: str, command: str) -> str:
  """Writes the page `out` (markdown) for `workdirs`, each a finished run; returns its path."""
  if not workdirs:
    raise ValueJaxError("no workdirs given", "--workdirs", "name one or more finished run folders")
  missing = [w for w in workdirs if not os.path.isfile(os.path.join(w, layout.CONFIG))]
  if missing:
    raise ValueJaxError(f"not a valuejax workdir (no config.json): {', '.join(missing)}", "--workdirs",
                        "pass folders written by python -m launch.run")
  out = os.path.abspath(out)
  out_dir = os.path.dirname(out)
  os.makedirs(out_dir, exist_ok=True)
  lines = [f"# {title}", "",
           f"Generated on {datetime.date.today().isoformat()} by `{command}` from the runs' own outputs "
           "(config.json, metrics.json, timings.json); nothing on this page is typed by hand.", "",
           "| run | model | method | primary test | positive control (same model) | time (s, with its control) | "
           "peak RSS (MiB) |",
           "|---|---|---|---|---|---:|---:|"]
  sections, family, alphas, times, checks = [], [], set(), [], []
  roots = [os.path.abspath(w).rstrip(os.sep) for w in workdirs]
  for root, slug in zip(roots, run_slugs(roots)):
    cfg = layout.read(root, layout.CONFIG) or {}
    c = cfg.get("config", {})
    seconds, rss = _totals(root)
    times.append((str(c.get("model")), seconds))
    checks.append((slug, read_manipulation(root) if c.get("method") == "valueexploration" else None))
    results = read_intervene(root)
    family += _primary_tests(slug, results)
    alphas.add(results.primary.alpha if results is not None and results.primary is not None else 0.05)
    kind = markdown.contrast(root, c)
    method = f"{c.get('method')} ({kind} contrast)" if kind else c.get("method")
    lines.append(f"| {slug} | `{c.get('model')}` | {method} | {_primary_cell(results)} | "
                 f"{_control_cell(root)} | {seconds:.0f} | {'' if rss is None else f'{rss:.0f}'} |")
    sections += ["", f"## {slug}", "", reproduce_line(cfg), "", *_embedded(root, slug, out_dir)]
  extra = [x for x in (manipulation_line(checks), time_line(times), family_line(family, min(alphas, default=0.05)))
           if x]
  vio.write_text(out, "\n".join(lines + [y for x in extra for y in ("", x)] + sections).rstrip() + "\n")
  return out
