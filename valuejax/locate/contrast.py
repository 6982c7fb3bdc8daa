"""ValueLocate: value neurons as the neurons whose activation probability differs most between two
opposing value aspects, ranked over all layers together; plus probability and histogram helpers.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

# The engine's 301-bin layout; `edges=` takes any other (B bins need B - 1 edges).
from valuejax.engine.histogram import HIST_EDGES
from valuejax.errors import ValueJaxError
from valuejax.locate import checks
from valuejax.locate.neuron_set import GroupNeurons, NeuronSet

def activation_probability(counts, totals, where: str = "activation_probability",
                           counts_bounded: bool = True) -> np.ndarray:
  """`p = C / T`: counts `[G, L, F]` of positive activations over totals `[G]` (tokens or items).

  With `counts_bounded` (tokens), a count above its total is an error: a neuron cannot be positive on
  more tokens than were seen.
  """
  counts = checks.as_array(counts, "counts", 3, where)
  totals = checks.as_array(totals, "totals", 1, where)
  checks.non_negative(counts, "counts", where)
  checks.integral(counts, "counts", where)
  checks.finite(totals, "totals", where)
  if totals.shape[0] != counts.shape[0]:
    raise ValueJaxError(f"`totals` has {totals.shape[0]} groups, `counts` {counts.shape[0]}", where,
                        "pass one total per group, in the order of the counts")
  if np.any(totals <= 0):
    k = int(np.argmax(totals <= 0))
    raise ValueJaxError(f"group {k} has total {totals[k]} (must be > 0)", where,
                        "a group with no tokens/items has no statistics; drop it or collect more data")
  if counts_bounded and np.any(counts > totals[:, None, None]):
    k = int(np.argwhere(counts > totals[:, None, None])[0][0])
    raise ValueJaxError(f"group {k} has counts above its total {totals[k]}", where,
                        "pass the token count of the same statistics (or denominator='items')")
  return counts.astype(np.float64) / totals.astype(np.float64)[:, None, None]

def hist_quantile(hist, q: float = 0.95, edges=HIST_EDGES, positive_only: bool = False) -> np.ndarray:
  """The `q` quantile of each histogram `[..., B]` (B = len(edges) + 1), as float64 `[...]`.

  Definition: with N the histogram's total and r = q * N, take the first bin whose cumulative count
  reaches r; inside a finite bin (lo, hi] holding n values of which c lie in earlier bins, values are
  taken as spread uniformly, so the quantile is `lo + (hi - lo) * (r - c) / n`. The open bins have no
  width to interpolate over: the lowest, (-inf, edges[0]], gives edges[0] and the highest,
  (edges[-1], inf), gives edges[-1] (a lower bound: 2.99 for the engine's top bin, which also holds
  (2.99, 3]). An empty histogram gives NaN.
  `positive_only` drops bin 0 first, i.e. the quantile of the activations above edges[0] only.
  """
  where = "hist_quantile"
  q = checks.rate(q, "q", where)
  edges = checks.as_array(edges, "edges", 1, where).astype(np.float64)
  if edges.size < 1 or np.any(np.diff(edges) <= 0):
    raise ValueJaxError("`edges` must be strictly increasing and non-empty", where, "pass sorted bin edges")
  hist = checks.as_array(hist, "hist", None, where)
  if hist.ndim < 1 or hist.shape[-1] != edges.size + 1:
    raise ValueJaxError(f"`hist` has {hist.shape[-1] if hist.ndim else 0} bins, the edges give "
                        f"{edges.size + 1} (an underflow bin, {edges.size - 1} finite bins, an overflow bin)",
                        where, "pass `edges` matching the layout the statistics engine used")
  checks.non_negative(hist, "hist", where)
  lo = np.concatenate([[edges[0]], edges])  # bin 0 collapses onto its upper edge
  hi = np.concatenate([edges, [edges[-1]]])  # the overflow bin collapses onto its lower edge
  flat = hist.reshape(-1, hist.shape[-1]).astype(np.float64)
  if positive_only:
    flat = flat.copy()
    flat[:, 0] = 0
  out = np.empty(flat.shape[0])
  chunk = 1 << 15  # bounds the cumsum's memory for [L*F, B] histograms of large models
  for s in range(0, flat.shape[0], chunk):
    h = flat[s:s + chunk]
    cum = np.cumsum(h, axis=1)
    total = cum[:, -1]
    r = q * total
    b = np.argmax(cum >= r[:, None], axis=1)
    rows = np.arange(h.shape[0])
    n = h[rows, b]
    before = cum[rows, b] - n
    frac = np.divide(r - before, n, out=np.zeros_like(r), where=n > 0)
    v = lo[b] + (hi[b] - lo[b]) * frac
    out[s:s + chunk] = np.where(total > 0, v, np.nan)
  return out.reshape(hist.shape[:-1])

# What `size` accepts, for the error messages of every locator that takes a size rule.
SIZE_FORMS = ('"paper" (max(min_count, #{delta >= threshold}), the published rule for 7-9B models), a float '
              'in (0, 1) = that fraction of all L*F neurons (e.g. 0.005), or an int >= 1 = an exact count')

def set_size(size: Any, num_total: int, n_above_threshold: int, min_count: int,
             where: str = "set_size") -> int:
  """How many neurons a group keeps under the size rule `size`, out of `num_total` = L*F neurons.

  - "paper": `max(min(min_count, num_total), n_above_threshold)`, the published rule.
  - a float in (0, 1): `floor(size * num_total + 0.5)` (round half up), at least 1; the threshold adds none.
  - an int >= 1: exactly that many, capped at `num_total`.
  A numeric string ("0.005", "200") counts as its number: command-line config values arrive as strings.
  """
  rule = size
  if isinstance(rule, str) and rule != "paper":
    for parse in (int, float):
      try:
        rule = parse(rule.strip())
        break
      except ValueError:
        pass
  if isinstance(rule, str) and rule == "paper":
    return max(min(int(min_count), int(num_total)), int(n_above_threshold))
  # bool is an int, but True as a size is a slip, not a count of 1.
  if isinstance(rule, (int, np.integer)) and not isinstance(rule, bool) and rule >= 1:
    return min(int(rule), int(num_total))
  if isinstance(rule, (float, np.floating)) and 0.0 < rule < 1.0:  # NaN fails the comparison
    # Round half up written out: Python's round() rounds halves to even.
    return min(max(math.floor(float(rule) * num_total + 0.5), 1), int(num_total))
  raise ValueJaxError(f"`size` = {size!r} is not a size rule", where, f"pass {SIZE_FORMS}")

def valuelocate(p_plus, p_minus, threshold: float = 0.1, min_count: int = 2000, hist_plus=None,
                hist_minus=None, *, group_names: Sequence[str] = ("+", "-"), hist_edges=HIST_EDGES,
                v95_quantile: float = 0.95, provenance: Mapping[str, Any] | None = None,
                size: Any = "paper") -> NeuronSet:
  """ValueLocate neurons of an opposing pair from activation probabilities `[L, F]`.

  Returns a NeuronSet with two groups named `group_names` ("+" first). `hist_plus` / `hist_minus`
  `[L, F, B]` add the `v95` score of the respective group (see `hist_quantile`), binned by `hist_edges`
  (the "full" layout by default; the statistics' own `hist_edges` for a "compact" one).

  Rule (docs/fidelity.md, ValueLocate: each step against the authors' code). `delta = p+ - p-` over `[L, F]`. The "+"
  group keeps the `max(min(min_count, L*F), #{delta >= threshold})` neurons with the largest delta; the "-" group does
  the same with `p- - p+`. Ties in delta are broken by the layer-major flat id `layer * F + index`, lower first (a
  stable sort of the negated delta), so the result never depends on the sort implementation. When `min_count` exceeds
  the number of neurons with a positive contrast, the two groups can share neurons; that is the published rule, kept
  as is. `size` (see `set_size`) replaces that count: "paper" is the rule above; a fraction of all L*F neurons or an
  exact count keeps that many top-delta neurons per group, whatever the threshold (2000 neurons is 0.44% of an 8B
  model but 4.3% of a 135M one).

  Scores stored per neuron: `delta` (the group's own contrast: p+ - p- for "+", p- - p+ for "-"), `p`
  (the group's own activation probability) and, when its histogram is given, `v95` (NPTI variant, see
  `hist_quantile`).
  """
  where = "valuelocate"
  hist_edges = HIST_EDGES if hist_edges is None else hist_edges
  p_plus = checks.non_negative(checks.as_array(p_plus, "p_plus", 2, where), "p_plus", where)
  p_minus = checks.non_negative(checks.as_array(p_minus, "p_minus", 2, where), "p_minus", where)
  if p_plus.shape != p_minus.shape:
    raise ValueJaxError(f"`p_plus` {p_plus.shape} and `p_minus` {p_minus.shape} differ", where,
                        "pass both groups' probabilities over the same [layers, neurons]")
  num_layers, num_neurons = p_plus.shape
  names = checks.group_names(group_names, 2, where)
  try:
    threshold = float(threshold)
  except (TypeError, ValueError):
    raise ValueJaxError(f"`threshold` = {threshold!r} is not a number", where, "pass e.g. 0.1") from None
  if not np.isfinite(threshold):
    raise ValueJaxError(f"`threshold` = {threshold} is not finite", where, "pass e.g. 0.1")
  if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 0:
    raise ValueJaxError(f"`min_count` = {min_count!r} is not a non-negative int", where, "pass e.g. 2000")
  hists = []
  for hname, h in (("hist_plus", hist_plus), ("hist_minus", hist_minus)):
    if h is not None:
      h = checks.as_array(h, hname, 3, where)
      if h.shape[:2] != p_plus.shape:
        raise ValueJaxError(f"`{hname}` covers {h.shape[:2]}, the probabilities {p_plus.shape}", where,
                            "pass the histogram of the same statistics")
    hists.append(h)

  set_size(size, num_layers * num_neurons, 0, int(min_count), where)  # a bad rule fails before any work

  p_plus, p_minus = p_plus.astype(np.float64), p_minus.astype(np.float64)
  groups, kept = {}, {}
  for name, p_own, p_other, hist in ((names[0], p_plus, p_minus, hists[0]),
                                     (names[1], p_minus, p_plus, hists[1])):
    delta = (p_own - p_other).ravel()
    above = int(np.count_nonzero(delta >= threshold))
    n = set_size(size, num_layers * num_neurons, above, int(min_count), where)
    # Stable sort of -delta: equal deltas keep ascending flat id, independent of the platform's sort.
    chosen = np.argsort(-delta, kind="stable")[:n]
    scores = {"delta": delta[chosen], "p": p_own.ravel()[chosen]}
    if hist is not None:
      layer, index = np.divmod(chosen, num_neurons)
      scores["v95"] = hist_quantile(hist[layer, index], v95_quantile, hist_edges)
    groups[name] = GroupNeurons.from_flat(chosen, num_layers, num_neurons, scores)
    kept[name] = {"above_threshold": above, "kept": n}

  prov = dict(provenance or {})
  prov["method"] = "valuelocate"
  prov["parameters"] = {
      "threshold": threshold, "min_count": int(min_count), "pair": list(names),
      "tie_break": "ascending layer-major flat id", "counts": kept,
      "size": size, "size_count": {name: c["kept"] for name, c in kept.items()},
      "v95": ({"quantile": v95_quantile, "interpolation": "linear within bin",
               "edges": [float(hist_edges[0]), float(hist_edges[-1]), len(hist_edges)]}
              if any(h is not None for h in hists) else None),
  }
  return NeuronSet(groups, prov)

def valuelocate_pair(counts, tokens, group_names: Sequence[str], plus: str, minus: str, hist=None, *,
                     size: Any = "paper", **kwargs: Any) -> NeuronSet:
  """ValueLocate on engine statistics `counts [G, L, F]`, `tokens [G]`, picking the pair by name.

  `size` and `kwargs` (threshold, min_count, provenance, ...) go to `valuelocate`.
  """
  where = "valuelocate_pair"
  counts = checks.as_array(counts, "counts", 3, where)
  names = checks.group_names(group_names, counts.shape[0], where)
  i, j = checks.group_index(names, plus, where), checks.group_index(names, minus, where)
  if i == j:
    raise ValueJaxError(f"`plus` and `minus` are both {plus!r}", where, "name two different groups")
  p = activation_probability(counts, tokens, where)
  hp = hm = None
  if hist is not None:
    hist = checks.as_array(hist, "hist", 4, where)
    if hist.shape[:3] != counts.shape:
      raise ValueJaxError(f"`hist` covers {hist.shape[:3]}, `counts` {counts.shape}", where,
                          "pass the histogram of the same statistics")
    hp, hm = hist[i], hist[j]
  return valuelocate(p[i], p[j], hist_plus=hp, hist_minus=hm, group_names=(plus, minus), size=size,
                     **kwargs)
