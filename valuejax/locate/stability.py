"""How stable located sets are: each set located again on each half of the recording items (split-half
statistics), the two halves' sets compared by Jaccard index against the Jaccard of two random sets of the same
sizes, and the overlap between different sets. The same comparison reads two more variations of the recording
(`compare_located`): a shorter token budget (the first record.budget_tokens generated tokens of the same
answers) and a second item pairing (record.pairing_seed2), each set located on them against the run's own.
"""

from __future__ import annotations

import math
from typing import Any

from valuejax.errors import ValueJaxError
from valuejax.locate.analysis import jaccard
from valuejax.locate.neuron_set import NeuronSet


def chance_jaccard(a: int, b: int, n: int) -> float:
  """The expected Jaccard index of two random sets of sizes a and b among n neurons, to first order:
  E|A & B| = ab / n, so E J ~ (ab / n) / (a + b - ab / n). NaN when both are empty."""
  if n < 1 or not (0 <= a <= n and 0 <= b <= n):
    raise ValueJaxError(f"set sizes {a} and {b} among {n} neurons", "chance_jaccard",
                        "give sizes between 0 and the number of neurons")
  shared = a * b / n
  union = a + b - shared
  return shared / union if union > 0 else float("nan")


def reading(j: float, chance: float, factor: float) -> str:
  """The pre-declared reading of a split-half Jaccard: "stable" above `factor` times chance, else "unstable";
  "empty" when a half located no neuron."""
  if math.isnan(j) or math.isnan(chance):
    return "empty"
  return "stable" if j > factor * chance else "unstable"


def split_half_stability(sets_a: dict[str, NeuronSet], sets_b: dict[str, NeuronSet], factor: float
                         ) -> dict[str, dict[str, dict[str, Any]]]:
  """{set: {group: {"jaccard", "chance", "ratio", "a", "b", "reading"}}}: each group's neurons located on half
  a against those located on half b (same rule and size), with the chance value of sets of those sizes."""
  return compare_located(sets_a, sets_b, factor, "the halves")


def compare_located(sets_a: dict[str, NeuronSet], sets_b: dict[str, NeuronSet], factor: float,
                    what: str = "the two recordings") -> dict[str, dict[str, dict[str, Any]]]:
  """{set: {group: {"jaccard", "chance", "ratio", "a", "b", "reading"}}}: each group's neurons located on one
  recording (a: the run's own, or half a) against those located by the same rule and sizes on another (b), with
  the chance Jaccard of random sets of those sizes and the pre-declared reading (`reading`, `factor`)."""
  if sets_a.keys() != sets_b.keys() or any(sets_a[n].names != sets_b[n].names for n in sets_a):
    raise ValueJaxError(f"{what} located different sets: {sorted(sets_a)} and {sorted(sets_b)}",
                        "compare_located", "locate both with the same config")
  out: dict[str, dict[str, dict[str, Any]]] = {}
  for name, a in sets_a.items():
    b = sets_b[name]
    n = a.num_layers * a.num_neurons
    out[name] = {}
    for g in a.names:
      j = jaccard(a[g], b[g])
      chance = chance_jaccard(len(a[g]), len(b[g]), n)
      out[name][g] = {"jaccard": _num(j), "chance": _num(chance),
                      "ratio": _num(j / chance) if chance and not math.isnan(j) else None,
                      "a": len(a[g]), "b": len(b[g]), "reading": reading(j, chance, factor)}
  return out


def set_overlaps(sets: dict[str, NeuronSet]) -> dict[str, dict[str, float | None]]:
  """{"set: group": {"set: group": Jaccard}} over every located group of every set (the diagonal is 1)."""
  groups = {f"{name}: {g}": ns[g] for name, ns in sets.items() for g in ns.names}
  return {r: {c: _num(jaccard(groups[r], groups[c])) for c in groups} for r in groups}


def cross_overlaps(sets: dict[str, NeuronSet], others: dict[str, NeuronSet]) -> dict[str, dict[str, float | None]]:
  """{"set: group": {"other set: group": Jaccard}}: the located groups against another run's (e.g. the positive
  control's language sets on the same model); sets of another shape are left out."""
  rows = {f"{name}: {g}": ns[g] for name, ns in sets.items() for g in ns.names}
  shape = {(ns.num_layers, ns.num_neurons) for ns in sets.values()}
  cols = {f"{name}: {g}": ns[g] for name, ns in others.items() for g in ns.names
          if (ns.num_layers, ns.num_neurons) in shape}
  return {r: {c: _num(jaccard(rows[r], cols[c])) for c in cols} for r in rows}


def _num(x: float) -> float | None:
  """A JSON-safe number: NaN (no evidence) as None."""
  return None if x is None or math.isnan(x) else float(x)
