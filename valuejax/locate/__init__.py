"""Locating value neurons: contrast (ValueLocate) and entropy (VAPE/LAPE) locators over engine statistics,
the `NeuronSet` they return, and analysis, plots and linear probes of those sets.
"""

from valuejax.locate.analysis import (LayerSplit, Overlap, counts_per_layer, jaccard, layer_split, overlap,
                                      split_by_layers)
from valuejax.locate.contrast import (HIST_EDGES, SIZE_FORMS, activation_probability, hist_quantile, set_size,
                                      valuelocate, valuelocate_pair)
from valuejax.locate.entropy import PRESETS, decision, lape, semantic, sorted_quantile, vape, vape_preset
from valuejax.locate.neuron_set import GroupNeurons, NeuronSet

__all__ = [
    "GroupNeurons", "NeuronSet",
    "HIST_EDGES", "activation_probability", "hist_quantile", "valuelocate", "valuelocate_pair",
    "SIZE_FORMS", "set_size",
    "PRESETS", "sorted_quantile", "vape", "vape_preset", "lape", "semantic", "decision",
    "LayerSplit", "Overlap", "counts_per_layer", "jaccard", "layer_split", "overlap", "split_by_layers",
    "plot_counts_per_layer", "plot_score_distribution", "plot_overlap",
    "ProbeResult", "ProbeComparison", "compare_to_random", "probe_accuracy", "wilson_interval",
]

_LAZY = {  # matplotlib and jax load on first use, so locating neurons needs only numpy
    "plot_counts_per_layer": "valuejax.locate.plots",
    "plot_score_distribution": "valuejax.locate.plots",
    "plot_overlap": "valuejax.locate.plots",
    "ProbeResult": "valuejax.locate.probe",
    "ProbeComparison": "valuejax.locate.probe",
    "compare_to_random": "valuejax.locate.probe",
    "probe_accuracy": "valuejax.locate.probe",
    "wilson_interval": "valuejax.locate.probe",
}


def __getattr__(name):
  if name in _LAZY:
    import importlib
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'valuejax.locate' has no attribute {name!r}")
