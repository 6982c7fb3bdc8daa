"""The activation histograms' bin layouts, shared by the engine (which fills them) and the locators (which
read them). Numpy only, so readers need not import jax.

"full" (NPTI's): bin 0 holds a <= 0, bin k (1..300) holds 0.01 (k-1) < a <= 0.01 k, and values above 3.0
are clipped into the top bin, so the top bin reads "(2.99, inf)". 301 bins: [G, L, F, 301] int32 on device
is 1,204 bytes per neuron and group, about 66 GB for Llama-3-70B's 80 x 28,672 neurons and 24 groups.

"compact": 32 bins, for a v95 estimate at about 1/9 of the memory. Bin 0 holds a <= 0, then 30 bins with
geometric edges from 0.02 to 6.0 (each about 22% wider than the one before it) and an overflow bin above
6.0. A quantile interpolated inside a bin is off by at most the bin's width, 22% of its value, and by much
less where a bin holds many tokens (tests/test_scale.py holds it to the "full" histogram's v95).
"""

import numpy as np

HIST_BINS = 301
HIST_WIDTH = 0.01
# The HIST_BINS - 1 boundaries between consecutive bins: 0, 0.01, ..., 2.99.
HIST_EDGES = np.round(np.arange(HIST_BINS - 1) * HIST_WIDTH, 2)
COMPACT_EDGES = np.round(np.concatenate([[0.0], np.geomspace(0.02, 6.0, 30)]), 5)
HIST_KINDS = {"full": HIST_EDGES, "compact": COMPACT_EDGES}


def hist_edges(kind: str = "full") -> np.ndarray:
  """The bin edges of a histogram kind ("full" or "compact"); the histogram has len(edges) + 1 bins."""
  if kind not in HIST_KINDS:
    from valuejax.errors import ValueJaxError
    raise ValueJaxError(f"histogram kind {kind!r} is unknown", "record.hist_bins",
                        f"use one of {', '.join(HIST_KINDS)}")
  return HIST_KINDS[kind]


def hist_kind(edges) -> str:
  """The kind whose edges these are (statistics files store their edges)."""
  edges = np.asarray(edges, np.float64)
  for kind, e in HIST_KINDS.items():
    if edges.shape == e.shape and np.array_equal(edges, e):
      return kind
  return "custom"
