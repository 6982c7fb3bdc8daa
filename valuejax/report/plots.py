"""Figures for the report (PNG via matplotlib's Agg canvas): each edit's effect with its 95% CI beside the
effects of its random controls, and the located neurons per layer of every group.
"""

from __future__ import annotations

import io
import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from valuejax import fileio as vio
from valuejax.workdir.results import EffectRecord, GridPoint


def _save(fig: Figure, path: str) -> str:
  FigureCanvasAgg(fig)  # headless, without touching pyplot's global backend
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  vio.write_bytes(path, buf.getvalue())
  return path


def plot_effects(effects: Sequence[EffectRecord], path: str, metric: str) -> str:
  """One row per edit: the located effect (dot, 95% CI bar) and its controls' effects (grey ticks)."""
  n = len(effects)
  fig = Figure(figsize=(8, 1.2 + 0.42 * n))
  ax = fig.add_subplot()
  for i, e in enumerate(effects):
    y = n - 1 - i
    ctrl = list(e.control_effects)
    if ctrl:
      ax.scatter(ctrl, [y] * len(ctrl), marker="|", s=120, color="0.6", zorder=1,
                 label="random controls" if i == 0 or not any(x.control_effects for x in effects[:i]) else None)
    color = "tab:blue" if e.expected == "greater" else "tab:red"
    ax.errorbar([e.mean], [y], xerr=[[e.mean - e.ci_low], [e.ci_high - e.mean]], fmt="o", color=color, capsize=3,
                zorder=2)
  ax.axvline(0.0, color="k", lw=0.8)
  ax.set_yticks(range(n), [f"{e.unit}: {e.edit}" for e in reversed(effects)], fontsize=7)
  ax.set_xlabel(f"change vs unedited model ({metric})")
  ax.set_title("Effect of each edit (95% CI; blue: predicted up, red: predicted down)", fontsize=9)
  if any(e.control_effects for e in effects):
    ax.legend(fontsize=7, loc="best")
  ax.grid(axis="x", alpha=0.3)
  return _save(fig, path)


def plot_profiles(pair: str, profiles: Sequence[tuple[str, Mapping[str, float]]], path: str) -> str:
  """A value profile (centred score per value) as grouped bars: the unedited model, then each edit."""
  values = list(profiles[0][1])
  width = 0.8 / len(profiles)
  fig = Figure(figsize=(max(6.0, 0.9 * len(values)), 3.6))
  ax = fig.add_subplot()
  x = np.arange(len(values))
  for k, (name, prof) in enumerate(profiles):
    ax.bar(x - 0.4 + width * (k + 0.5), [prof[v] for v in values], width, label=name,
           color="0.55" if k == 0 else None)
  ax.axhline(0.0, color="k", lw=0.8)
  ax.set_xticks(x, values, rotation=30, ha="right", fontsize=7)
  ax.set_ylabel("centred score (1-6 scale)")
  ax.set_title(f"{pair}: value profile before and after each edit", fontsize=9)
  ax.legend(fontsize=6, ncol=2)
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def plot_neurons_per_layer(counts: Mapping[str, Sequence[int]], path: str) -> str:
  """One line per (set, group) of located neurons per layer."""
  fig = Figure(figsize=(8, 4))
  ax = fig.add_subplot()
  for name, c in counts.items():
    c = np.asarray(c)
    ax.plot(np.arange(len(c)), c, marker="o", markersize=2.5, lw=1, label=f"{name} ({int(c.sum())})")
  ax.set_xlabel("layer")
  ax.set_ylabel("located neurons")
  ax.legend(fontsize=6, ncol=2)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def relpath(path: str, start: str) -> str:
  return os.path.relpath(path, start).replace(os.sep, "/")


def plot_grid(grid: Sequence[GridPoint], path: str, metric: str) -> str:
  """The pooled signed effect against gamma, one line per set size (steer value p; v95 points as open
  markers), with the 5-95% band of the matched controls' replicates at each point."""
  fig = Figure(figsize=(7.5, 4.2))
  ax = fig.add_subplot()
  sizes = list(dict.fromkeys(str(g.size) for g in grid))
  for k, size in enumerate(sizes):
    color = f"C{k}"
    for steer, marker, ls in (("p", "o", "-"), ("v95", "s", ":")):
      pts = sorted((g for g in grid if str(g.size) == size and g.steer == steer), key=lambda g: g.gamma)
      if not pts:
        continue
      x = np.array([g.gamma for g in pts])
      y = np.array([g.summary.mean for g in pts])
      err = np.array([[g.summary.mean - g.summary.ci_low for g in pts],
                      [g.summary.ci_high - g.summary.mean for g in pts]])
      label = f"size {size}" + (f", steer {steer}" if steer != "p" else "") + f" ({pts[0].summary.n_neurons} neurons)"
      ax.errorbar(x, y, yerr=err, marker=marker, ls=ls, color=color, capsize=3, label=label,
                  mfc="none" if steer == "v95" else color)
      band = [(g.gamma, *g.summary.control_band) for g in pts
              if g.summary.control_band and g.summary.control_band[0] is not None]
      if band:
        b = np.array(band)
        ax.fill_between(b[:, 0], b[:, 1], b[:, 2], color=color, alpha=0.15, lw=0)
  ax.axhline(0.0, color="k", lw=0.8)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("gamma (steering strength)")
  ax.set_ylabel(f"pooled signed change ({metric})")
  ax.set_title("Effect against gamma per set size (95% CI); shaded: 5-95% of matched random controls", fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  return _save(fig, path)
