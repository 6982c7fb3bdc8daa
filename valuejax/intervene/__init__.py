"""Edits as data: the papers' neuron manipulations, random controls, folding into weights, batched runs.

Every edit is a `NeuronEdit` ([L, F] scale / add / clamp_max, keep_prob, key) plus the positions it acts on.
"""

from valuejax.intervene.batch import run_edits
from valuejax.intervene.builders import (LayerSplit, SteerSet, baseline, deactivate, layer_split,
                                         region_layers, restrict_layers, steer_strength, steering,
                                         value_exploration, value_exploration_combined)
from valuejax.intervene.controls import (ControlFamily, activity_bins, activity_summary, control_edits,
                                         neuron_activity, random_controls, transplant)
from valuejax.intervene.edits import (SCOPES, Edit, EditBatch, as_mask, edit_mask_for, make_neuron_edit,
                                      mask_from_indices, values_from_indices)
from valuejax.intervene.fold import fold_edit, fold_reasons, is_foldable

__all__ = [
    "Edit", "EditBatch", "SCOPES", "edit_mask_for", "as_mask", "mask_from_indices", "values_from_indices",
    "make_neuron_edit", "baseline", "deactivate", "SteerSet", "steer_strength", "steering", "LayerSplit",
    "layer_split", "region_layers", "value_exploration", "value_exploration_combined", "restrict_layers",
    "random_controls", "transplant", "control_edits", "ControlFamily", "activity_bins",
    "activity_summary", "neuron_activity", "fold_edit", "fold_reasons", "is_foldable",
    "run_edits",
]
