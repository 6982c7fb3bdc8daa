"""Every config value checked before anything loads: one place, so that a bad value fails in seconds with
the key, the value and what it may be, and never after an hour of recording.

Names of methods, locator rules, edit kinds and metrics are checked against their registries (a user's own
`module:name` included), so the valid names are whatever is registered.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections as mlc

from valuejax.errors import ValueJaxError

# Config values that must be one of a few words; keys a config does not have are skipped.
CHOICES: dict[str, tuple[str, ...]] = {
    "record.mode": ("generate", "teacher_forced"),
    "locate.steer_value": ("p", "v95"),
    "locate.denominator": ("tokens", "items"),
    "locate.contrast": ("reversed", "aspects"),
    "intervene.controls_at": ("strongest", "all"),
    "intervene.controls": ("mirrored", "independent"),
    "intervene.control_match": ("p", "mean", "layer"),
    "intervene.primary_test": ("pooled", "each", ""),
    "mesh.params": ("replicated", "fsdp"),
    "layout": ("auto", "stacked", "decode"),
    "dtype": ("float32", "bfloat16"),
    "record.hist_bins": ("full", "compact"),
}
SUBSETS: dict[str, tuple[str, ...]] = {
    "intervene.modes": ("enhance", "reverse"),
    "intervene.directions": ("support", "conflict"),
    "intervene.regions": ("semantic", "decision", "combined"),
    "locate.presets": ("semantic", "decision", "lape"),
}
POSITIVE = ("record.batch_size", "record.max_new_tokens", "record.checkpoint_every",
            "record.keep_checkpoints", "intervene.batch_size")
NON_NEGATIVE = ("intervene.n_controls", "data.items_per_group", "intervene.eval_items", "intervene.examples")
# Numbers that must lie in a range: (low, high, low inclusive, high inclusive, what to write).
RANGES = {
    "locate.threshold": (0.0, 1.0, True, False, "a number in [0, 1): the least difference in activation probability"),
    "locate.top_rate": (0.0, 1.0, True, False, "a share of neurons in [0, 1) (0 = the preset's)"),
    "intervene.keep_prob": (0.0, 1.0, False, True, "a probability in (0, 1]"),
    "intervene.alpha": (0.0, 1.0, False, False, "a significance level in (0, 1), e.g. 0.05"),
    "intervene.factor": (0.0, float("inf"), True, False, "a finite number >= 0"),
    "intervene.n_boot": (1, float("inf"), True, False, "a positive integer"),
    "record.temperature": (0.0, float("inf"), True, False, "a finite number >= 0 (0 = greedy)"),
    "record.top_p": (0.0, 1.0, False, True, "a probability in (0, 1]"),
    "record.repetition_penalty": (0.0, float("inf"), False, False, "a finite positive number (1 = none)"),
    "intervene.primary_controls": (0, float("inf"), True, False, "an integer >= 0"),
    "locate.min_count": (0, float("inf"), True, False, "an integer >= 0"),
}


# Config entries that name one registered object.
REGISTERED = {"method": "METHODS", "locate.rule": "RULES", "intervene.kind": "EDITS", "intervene.metric": "METRICS"}


def _check_registered(config: mlc.ConfigDict) -> None:
  from valuejax import methods, metrics
  registries = {"METHODS": methods.METHODS, "RULES": methods.RULES, "EDITS": methods.EDITS,
                "METRICS": metrics.METRICS}
  found = {}
  for key, registry in REGISTERED.items():
    if has_key(config, key):
      found[key] = registries[registry].get(get_key(config, key))  # raises, listing the registered names
  if "method" in found and "intervene.metric" in found:
    found["intervene.metric"]().check(config, found["method"])  # e.g. a metric of choices for a method of texts


def check_config(config: mlc.ConfigDict) -> None:
  """Raises ValueJaxError naming the key and the valid choices for the first invalid value."""
  _check_registered(config)
  for key, choices in CHOICES.items():
    if has_key(config, key) and get_key(config, key) not in choices:
      _bad_value(key, get_key(config, key), f"one of {', '.join(choices)}")
  for key, choices in SUBSETS.items():
    if has_key(config, key):
      value = get_key(config, key)
      bad = [v for v in value if v not in choices]
      if bad or not value:
        _bad_value(key, value, f"a non-empty tuple of {', '.join(choices)}")
  for key in POSITIVE:
    if has_key(config, key) and not get_key(config, key) > 0:
      _bad_value(key, get_key(config, key), "a positive integer")
  for key in NON_NEGATIVE:
    if has_key(config, key) and not get_key(config, key) >= 0:
      _bad_value(key, get_key(config, key), "an integer >= 0")
  for key, (low, high, low_in, high_in, what) in RANGES.items():
    if has_key(config, key):
      v = get_key(config, key)
      ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v >= low if low_in else v > low) and (v <= high if high_in else v < high))
      if not ok:
        _bad_value(key, v, what)
  if has_key(config, "mesh.data") and has_key(config, "mesh.model"):
    data, model = get_key(config, "mesh.data"), get_key(config, "mesh.model")
    if not (isinstance(model, int) and model >= 1 and isinstance(data, int) and (data == -1 or data >= 1)):
      _bad_value("mesh", (data, model), "mesh.model >= 1 and mesh.data >= 1 or -1 (every device the model axis leaves)")
  if has_key(config, "mesh.rules") and get_key(config, "mesh.rules"):
    from valuejax.engine.sharding import rules_for
    rules_for(get_key(config, "mesh.params"), get_key(config, "mesh.rules"))  # raises, naming the rule
  if has_key(config, "intervene.gamma"):
    gamma = get_key(config, "intervene.gamma")
    if not gamma or any(not isinstance(g, (int, float)) or not math.isfinite(g) or g <= 0 for g in gamma):
      _bad_value("intervene.gamma", gamma, "a non-empty tuple of positive numbers, e.g. '(0.5, 2.0)'")
  if has_key(config, "intervene.sequential_h"):
    h = get_key(config, "intervene.sequential_h")
    r_max = max(get_key(config, "intervene.n_controls") if has_key(config, "intervene.n_controls") else 0,
                get_key(config, "intervene.primary_controls") if has_key(config, "intervene.primary_controls") else 0)
    if not (isinstance(h, int) and not isinstance(h, bool) and h >= 0):
      _bad_value("intervene.sequential_h", h, "an integer >= 0 (0 = every primary replicate, the fixed-R p)")
    if h > r_max:
      _bad_value("intervene.sequential_h", h, f"at most the primary test's replicates ({r_max}: the larger of "
                 "intervene.n_controls and intervene.primary_controls)")
  if has_key(config, "intervene.primary_gamma") and get_key(config, "intervene.primary_gamma"):
    pg, gamma = get_key(config, "intervene.primary_gamma"), tuple(get_key(config, "intervene.gamma"))
    strongest_only = get_key(config, "intervene.controls_at") == "strongest"
    if pg not in gamma or (strongest_only and pg != max(gamma)):
      _bad_value("intervene.primary_gamma", pg, f"one of intervene.gamma {gamma} at which controls run"
                 + (f" (controls_at='strongest': {max(gamma):g})" if strongest_only else ""))
  if has_key(config, "intervene.grid") and get_key(config, "intervene.grid"):
    from valuejax.methods.design import parse_point
    points = [parse_point(x) for x in get_key(config, "intervene.grid")]
    sizes = tuple(get_key(config, "locate.sizes")) if has_key(config, "locate.sizes") else ()
    unlocated = sorted({p["size"] for p in points} - set(sizes))
    if unlocated:
      _bad_value("intervene.grid", get_key(config, "intervene.grid"),
                 f"points whose sizes are all in locate.sizes {sizes} (not located: {', '.join(unlocated)})")
    if has_key(config, "intervene.primary_point") and get_key(config, "intervene.primary_point"):
      if parse_point(get_key(config, "intervene.primary_point")) not in points:
        _bad_value("intervene.primary_point", get_key(config, "intervene.primary_point"), "one of intervene.grid")
  if has_key(config, "locate.rule") and get_key(config, "locate.rule") == "masks":
    import os
    path = get_key(config, "locate.masks") if has_key(config, "locate.masks") else ""
    if not path or not os.path.isfile(path):
      _bad_value("locate.masks", path, "the path of a LAPE mask file (locate.rule = 'masks')")
  if has_key(config, "locate.size"):
    # The locator's own resolver decides, so the launcher accepts exactly what locating accepts (numeric
    # strings from the command line included) and a bad size fails before recording, not after.
    from valuejax.locate.contrast import SIZE_FORMS, set_size
    size = get_key(config, "locate.size")
    try:
      set_size(size, 1, 0, 0)
    except ValueJaxError:
      _bad_value("locate.size", size, SIZE_FORMS)


def _bad_value(key: str, value: Any, expected: str) -> None:
  if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], str) and value[0][:1] in "([":
    value = value[0]  # a tuple the command line could not parse arrives as its one raw string: show that text
    shown = f"{value} (not read as numbers)"
  else:
    shown = repr(value)
  raise ValueJaxError(f"config entry {key} = {shown} is not valid; it must be {expected}", f"--config.{key}",
                      f"set --config.{key}=<value> or change the config file")


def has_key(config: mlc.ConfigDict, key: str) -> bool:
  node = config
  for part in key.split("."):
    if not isinstance(node, mlc.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def get_key(config: mlc.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def check_data(config: mlc.ConfigDict) -> None:
  """The data the whole run needs, checked before any model loads (see `Method.preflight`)."""
  from valuejax import methods, metrics
  if not (has_key(config, "method") and has_key(config, "intervene.metric")):
    return
  metric = metrics.METRICS.get(config.intervene.metric)()
  methods.METHODS.get(config.method).preflight(config, metric)
  if hasattr(metric, "preflight"):
    metric.preflight(config)  # a service the metric needs (the LLM judge) answers, before any model loads
