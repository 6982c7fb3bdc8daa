"""The activation histogram's bin layout, shared by the engine (which fills it) and the locators (which read it).

Bin 0 holds a <= 0, bin k (1..300) holds 0.01 (k-1) < a <= 0.01 k, and values above 3.0 are clipped into the
top bin, so the top bin reads "(2.99, inf)". Numpy only, so readers need not import jax.
"""

import numpy as np

HIST_BINS = 301
HIST_WIDTH = 0.01
# The HIST_BINS - 1 boundaries between consecutive bins: 0, 0.01, ..., 2.99.
HIST_EDGES = np.round(np.arange(HIST_BINS - 1) * HIST_WIDTH, 2)
