"""Item counts per group, value and split for a framework folder, as Markdown tables for data/README.md.

Run: `python -m valuejax.data.counts data/schwartz data/cvoice`.
"""

from __future__ import annotations

import collections
import sys

from valuejax.data.readers import load_framework
from valuejax.data.schema import Dataset


def _table(title: str, header: tuple[str, ...], rows: list[tuple]) -> str:
  lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


def counts_markdown(data: Dataset) -> str:
  """Markdown tables of every item kind present in the dataset."""
  tax = data.taxonomy
  out = [f"### {tax.framework}"]
  if data.descriptions:
    c = collections.Counter(d.group for d in data.descriptions)
    out.append(_table("Value descriptions", ("group", "items"), [*sorted(c.items()), ("total", sum(c.values()))]))
  if data.situations:
    c = collections.Counter((s.dimension, s.split) for s in data.situations)
    rows = [(d.id, c[d.id, "locate"], c[d.id, "eval"], c[d.id, "locate"] + c[d.id, "eval"])
            for d in tax.dimensions]
    out.append(_table("Situations", ("dimension", "locate", "eval", "total"), rows))
  if data.portraits:
    c = collections.Counter(p.value for p in data.portraits)
    rows = [(v, c[v]) for v in tax.value_ids] + [("total", sum(c.values()))]
    out.append(_table("Portraits", ("value", "items"), rows))
  if data.dilemmas:
    c = collections.Counter((d.value, d.split) for d in data.dilemmas)
    rows = [(f"{v.id} ({v.label('zh')})", c[v.id, "locate"], c[v.id, "eval"]) for v in tax.values]
    out.append(_table("Dilemmas", ("value", "locate", "eval"), rows + [("total", *(
        sum(n for (_, sp), n in c.items() if sp == s) for s in ("locate", "eval")))]))
  return "\n\n".join(out)


def main(argv: list[str]) -> None:
  for folder in argv or ["data/schwartz"]:
    print(counts_markdown(load_framework(folder)) + "\n")


if __name__ == "__main__":
  main(sys.argv[1:])
