"""VAPE / LAPE: value (or language) neurons as the neurons whose activation probability is
concentrated on few of K groups (low entropy across groups), as the LAPE reference code computes it.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.locate import checks
from valuejax.locate.contrast import activation_probability
from valuejax.locate.neuron_set import GroupNeurons, NeuronSet

# (filter_rate, top_rate, activation_bar_ratio)
PRESETS: dict[str, tuple[float, float, float]] = {
    "lape": (0.95, 0.01, 0.95),
    "semantic": (0.5, 0.01, 0.5),
    "decision": (0.95, 0.01, 0.95),
}


def sorted_quantile(values: np.ndarray, rate: float, where: str = "sorted_quantile") -> float:
  """Element `round(N * rate) - 1` (0-based) of the ascending sort of `values`, N = values.size.

  This is `torch.kthvalue(round(N * rate))` of the reference. `round` is Python's (half to even) applied
  to the float product, exactly as the reference script calls it, so e.g. N=10, rate=0.25 gives
  round(2.5) = 2 -> element 1.
  """
  rate = checks.rate(rate, "rate", where)
  values = np.asarray(values).ravel()
  k = round(values.size * rate)
  if k < 1:
    raise ValueJaxError(f"rate {rate} of {values.size} values selects no element (round(N*rate) = 0)",
                        where, "use a larger rate or more neurons")
  return float(np.partition(values, k - 1)[k - 1])


def vape(counts, totals, filter_rate: float, top_rate: float, activation_bar_ratio: float,
         group_names: Sequence[str] | None = None, *, denominator: Literal["tokens", "items"] = "tokens",
         bar_population: Literal["all", "kept"] = "all", dtype=np.float64,
         provenance: Mapping[str, Any] | None = None) -> NeuronSet:
  """VAPE/LAPE neurons of K >= 2 groups. Returns one NeuronSet group per input group.

  Rule (Tang et al. 2024, identify.py; docs/fidelity.md, LAPE), for counts C [K, L, F] and totals [K]:
   1. `P = C / total[k]`; `P^ = P / sum_k P`, with 0/0 taken as 0 (a neuron never positive in any group).
   2. `H = -sum_k P^ log P^`, 0 log 0 = 0.
   3. `tau` = sorted-element quantile (`sorted_quantile`) of all K*L*F values of P at `filter_rate`;
      a neuron with no `P > tau` in any group gets `H = +inf` (so all-zero neurons are never preferred).
   4. Keep the `round(L*F*top_rate)` neurons with the lowest H: a stable argsort of H flattened
      layer-major over [L*F], so equal H keeps ascending flat id `layer * F + index` (the reference's
      `torch.topk(largest=False)` leaves tie order unspecified; this is the deterministic refinement).
   5. `bar` = sorted-element quantile of P at `activation_bar_ratio`, taken over ALL K*L*F values of P
      (`bar_population="all"`): the reference computes it from `flattened_probs`, the same flattened
      tensor as `tau`, not from the kept neurons' rows. With the presets filter_rate == bar ratio, so
      `bar == tau`. `bar_population="kept"` takes it over the kept neurons' K*n values instead (a
      stricter bar, offered for the reading "quantile of the selected neurons"; it is not the reference).
   6. A kept neuron belongs to every group k with `P[k] > bar` (it may be in several, or in none).

  Scores stored per neuron: `entropy` (H) and `p` (the group's own P).

  `counts` [K, L, F]: positive-activation counts. `totals`: the denominators [K], or a mapping
  {"tokens": T, "items": Q} from which `denominator` picks; "items" (C / Q) reproduces the
  ValueExploration released masks, "tokens" (C / T) is the paper's formula. `dtype=np.float32` mirrors
  the reference's float32 arithmetic when near-equal entropies must order exactly as it did.
  """
  where = "vape"
  if denominator not in ("tokens", "items"):
    raise ValueJaxError(f"`denominator` = {denominator!r}", where, "use 'tokens' or 'items'")
  if bar_population not in ("all", "kept"):
    raise ValueJaxError(f"`bar_population` = {bar_population!r}", where, "use 'all' or 'kept'")
  if isinstance(totals, Mapping):
    if denominator not in totals:
      raise ValueJaxError(f"`totals` has no {denominator!r} entry (has {sorted(totals)})", where,
                          f"pass totals[{denominator!r}] or choose another denominator")
    totals = totals[denominator]
  filter_rate = checks.rate(filter_rate, "filter_rate", where)
  top_rate = checks.rate(top_rate, "top_rate", where)
  activation_bar_ratio = checks.rate(activation_bar_ratio, "activation_bar_ratio", where)
  counts = checks.as_array(counts, "counts", 3, where)
  num_groups, num_layers, num_neurons = counts.shape
  if num_groups < 2:
    raise ValueJaxError(f"VAPE needs at least 2 groups, got {num_groups}", where,
                        "pass the statistics of all contrasted groups, stacked on axis 0")
  names = checks.group_names(group_names, num_groups, where)
  # Items can be fewer than positive tokens, so only a token denominator bounds the counts.
  probs = activation_probability(counts, totals, where, counts_bounded=denominator == "tokens")
  probs = probs.astype(dtype)

  total = probs.sum(axis=0)
  normed = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
  logs = np.log(normed, out=np.zeros_like(normed), where=normed > 0)
  entropy = -(normed * logs).sum(axis=0)  # [L, F]

  tau = sorted_quantile(probs, filter_rate, where)
  entropy = np.where((probs > tau).any(axis=0), entropy, np.inf).astype(dtype)

  num_kept = round(num_layers * num_neurons * top_rate)
  if num_kept < 1:
    raise ValueJaxError(f"top_rate {top_rate} of {num_layers * num_neurons} neurons keeps none", where,
                        "use a larger top_rate")
  flat_h = entropy.ravel()
  kept = np.argsort(flat_h, kind="stable")[:num_kept]
  kept_probs = probs.reshape(num_groups, -1)[:, kept]  # [K, n]
  population = probs if bar_population == "all" else kept_probs
  bar = sorted_quantile(population, activation_bar_ratio, where)

  groups = {}
  for k, name in enumerate(names):
    sel = kept_probs[k] > bar
    groups[name] = GroupNeurons.from_flat(
        kept[sel], num_layers, num_neurons,
        {"entropy": flat_h[kept[sel]], "p": kept_probs[k][sel]})

  prov = dict(provenance or {})
  prov["method"] = "vape"
  prov["parameters"] = {
      "filter_rate": filter_rate, "top_rate": top_rate, "activation_bar_ratio": activation_bar_ratio,
      "denominator": denominator, "bar_population": bar_population, "dtype": np.dtype(dtype).name,
      "tau": tau, "bar": bar, "num_kept": int(num_kept), "num_filtered": int(np.isinf(flat_h).sum()),
      "groups": list(names), "tie_break": "stable argsort of entropy, ascending layer-major flat id",
  }
  return NeuronSet(groups, prov)


def vape_preset(preset: str, counts, totals, group_names: Sequence[str] | None = None,
                top_rate: float | None = None, **kwargs: Any) -> NeuronSet:
  """`vape` with the named rates: "lape", "semantic" or "decision" (see `PRESETS`); `top_rate` replaces
  the preset's share of all neurons kept (e.g. to size the sets for a small model)."""
  if preset not in PRESETS:
    raise ValueJaxError(f"unknown VAPE preset {preset!r}", "vape_preset", f"use one of {sorted(PRESETS)}")
  filter_rate, top, bar = PRESETS[preset]
  ns = vape(counts, totals, filter_rate, top if top_rate is None else top_rate, bar, group_names, **kwargs)
  ns.provenance["parameters"]["preset"] = preset
  return ns


def lape(counts, totals, group_names: Sequence[str] | None = None, **kwargs: Any) -> NeuronSet:
  """LAPE defaults (0.95, 0.01, 0.95)."""
  return vape_preset("lape", counts, totals, group_names, **kwargs)


def semantic(counts, totals, group_names: Sequence[str] | None = None, **kwargs: Any) -> NeuronSet:
  """ValueExploration "semantic" setting (0.5, 0.01, 0.5)."""
  return vape_preset("semantic", counts, totals, group_names, **kwargs)


def decision(counts, totals, group_names: Sequence[str] | None = None, **kwargs: Any) -> NeuronSet:
  """ValueExploration "decision" setting (0.95, 0.01, 0.95)."""
  return vape_preset("decision", counts, totals, group_names, **kwargs)
