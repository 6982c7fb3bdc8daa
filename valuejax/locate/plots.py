"""Figures of neuron sets (PNG via matplotlib's Agg canvas): neurons per layer, score distributions,
overlap heatmaps. Each function writes one file atomically into a folder and returns its path.
"""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from valuejax import fileio as vio
from valuejax.errors import ValueJaxError
from valuejax.locate.analysis import Overlap
from valuejax.locate.neuron_set import NeuronSet


def _save(fig: Figure, folder: str, filename: str) -> str:
  # An explicit Agg canvas keeps plotting headless without touching pyplot's global backend.
  FigureCanvasAgg(fig)
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
  path = os.path.join(folder, filename)
  vio.write_bytes(path, buf.getvalue())
  return path


def plot_counts_per_layer(ns: NeuronSet, folder: str, filename: str = "neurons_per_layer.png",
                          title: str | None = None) -> str:
  """One line per group: how many of its neurons sit in each layer."""
  fig = Figure(figsize=(8, 4))
  ax = fig.add_subplot()
  layers = np.arange(ns.num_layers)
  for g in ns.names:
    ax.plot(layers, ns.counts_per_layer(g), marker="o", markersize=3, label=f"{g} ({len(ns[g])})")
  ax.set_xlabel("layer")
  ax.set_ylabel("neurons")
  ax.set_title(title or f"{ns.provenance.get('method', 'neurons')} per layer")
  ax.legend(fontsize="small")
  ax.grid(alpha=0.3)
  return _save(fig, folder, filename)


def plot_score_distribution(ns: NeuronSet, score: str, folder: str, filename: str | None = None,
                            bins: int = 50) -> str:
  """Histogram of one score (`delta`, `entropy`, `p`, `v95`) per group; non-finite values are left out
  and counted in the legend (filtered neurons carry entropy +inf)."""
  fig = Figure(figsize=(7, 4))
  ax = fig.add_subplot()
  plotted = False
  for g in ns.names:
    if score not in ns[g].scores:
      continue
    v = ns[g].scores[score]
    ok = np.isfinite(v)
    extra = f", {int((~ok).sum())} non-finite" if (~ok).any() else ""
    if ok.any():
      ax.hist(v[ok], bins=bins, alpha=0.5, label=f"{g} (n={int(ok.sum())}{extra})")
      plotted = True
  if not plotted:
    raise ValueJaxError(f"no group has finite values of score {score!r}", "plot_score_distribution",
                        "pick a stored score (delta, p, v95 for ValueLocate; entropy, p for VAPE)")
  ax.set_xlabel(score)
  ax.set_ylabel("neurons")
  ax.set_title(f"{score} of selected neurons")
  ax.legend(fontsize="small")
  return _save(fig, folder, filename or f"{score}_distribution.png")


def plot_overlap(ov: Overlap, folder: str, filename: str = "overlap.png", title: str = "Jaccard overlap"
                 ) -> str:
  """Heatmap of Jaccard overlaps, annotated with the shared-neuron counts."""
  rows, cols = len(ov.rows), len(ov.cols)
  fig = Figure(figsize=(1.2 + 0.9 * cols, 1.0 + 0.7 * rows))
  ax = fig.add_subplot()
  im = ax.imshow(np.nan_to_num(ov.jaccard, nan=0.0), vmin=0.0, vmax=1.0, cmap="viridis")
  ax.set_xticks(range(cols), ov.cols, rotation=45, ha="right")
  ax.set_yticks(range(rows), ov.rows)
  for i in range(rows):
    for j in range(cols):
      ax.text(j, i, f"{ov.jaccard[i, j]:.2f}\n{ov.shared[i, j]}", ha="center", va="center",
              fontsize=7, color="w" if ov.jaccard[i, j] < 0.5 else "k")
  fig.colorbar(im, ax=ax)
  ax.set_title(title)
  return _save(fig, folder, filename)
