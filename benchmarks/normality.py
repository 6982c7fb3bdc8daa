"""The normality of stored runs' control replicates: for each primary pooled test whose metrics.json keeps its
replicates' effects, n, Shapiro-Wilk W and p, skewness, excess kurtosis and the declared reading of the t
prediction p (valuejax.evaluate.stats.normality_check), written as a markdown page.

  python benchmarks/normality.py                                  # docs/results -> docs/results/normality.md
  python benchmarks/normality.py runs/study docs/results --out docs/results/normality.md

Every metrics.json (intervene/metrics.json of a workdir, or one copied beside a results page) under the given
folders is read; a folder with none is named as such, so the page says when the runs did not store replicates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from valuejax import fileio as vio  # noqa: E402
from valuejax.evaluate.stats import NORMALITY_ALPHA, NORMALITY_MIN_N, normality_check  # noqa: E402


def find_metrics(roots: Sequence[str]) -> dict[str, list[str]]:
  """{root: [metrics.json paths under it, sorted]}."""
  out = {}
  for root in roots:
    found = []
    for folder, _, files in os.walk(root):
      found += [os.path.join(folder, f) for f in files if f == "metrics.json"]
    out[root] = sorted(found)
  return out


def rows_of(path: str) -> list[str]:
  """One table row per primary pooled test of the metrics.json at `path` (its positive control's too, which
  sits in a file of its own); a test without stored replicates says so."""
  from valuejax.workdir.results import InterveneResults
  with open(path, encoding="utf-8") as f:
    results = InterveneResults.from_json(json.load(f))
  test = results.primary
  if test is None or test.pooled is None:
    return [f"| `{path}` | - | - | - | - | - | - | no pooled primary test |"]
  effects = test.pooled.control_effects
  if not effects:
    return [f"| `{path}` | 0 | - | - | - | - | - | the replicates' effects are not stored |"]
  c = normality_check(effects)
  num = lambda x, f: "-" if x is None else format(x, f)
  return [f"| `{path}` | {c.n} | {num(c.w, '.3f')} | {num(c.p, '.3g')} | {num(c.skew, '+.2f')} | "
          f"{num(c.excess_kurtosis, '+.2f')} | {num(test.pooled.t_p, '.3g')} | {c.reading} |"]


def page(roots: Sequence[str]) -> str:
  found = find_metrics(roots)
  lines = ["# Normality of the control replicates", "",
           "Written by `benchmarks/normality.py` from the stored runs' metrics.json; not edited by hand.", "",
           "The t prediction p of a primary test assumes its control replicates' effects are normal. Read as "
           f"declared: the t p is **trusted** only when Shapiro-Wilk does not reject at {NORMALITY_ALPHA:g} and "
           f"there are at least {NORMALITY_MIN_N} replicates; otherwise read the Monte Carlo (rank or sequential) "
           "p. Skewness and excess kurtosis are the bias-corrected sample values.", ""]
  rows = [r for paths in found.values() for p in paths for r in rows_of(p)]
  if rows:
    lines += ["| metrics.json | replicates | W | Shapiro-Wilk p | skewness | excess kurtosis | t p | reading |",
              "|---|---:|---:|---:|---:|---:|---:|---|", *rows, ""]
  empty = [r for r, paths in found.items() if not paths]
  if empty:
    lines += ["No metrics.json is stored under " + ", ".join(f"`{r}`" for r in empty) + ": the results pages "
              "there keep each primary test's p, the replicates' mean and sd, but not the replicates' effects, so "
              "their normality cannot be checked from them. Run this script on the runs' workdirs (each keeps "
              "intervene/metrics.json with the replicates' effects) to fill this table.", ""]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("roots", nargs="*", default=["docs/results"], help="folders searched for metrics.json")
  ap.add_argument("--out", default="docs/results/normality.md")
  args = ap.parse_args(argv)
  vio.write_text(args.out, page(args.roots))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
