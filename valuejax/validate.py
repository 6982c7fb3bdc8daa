"""Every config value checked before anything loads: one place, so that a bad value fails in seconds with
the key, the value and what it may be, and never after an hour of recording.

The library reads the entries a run needs as they are (`config.locate.size`), with no fallback of its own: each
default is written once, in configs/common.py or the method's config file. What a run needs is declared by the
parts it uses: `BASE_KEYS` (the sections every run has, configs/common.base_config) and the `config_keys` of the
config's method, locator rule, edit kind and metric (`{"intervene.factor": Range(...), "data.lang": None}`: a
key and what its value may be, None for any). `check_config` merges them, checks every value present and then
names every missing entry at once.

Names of methods, locator rules, edit kinds and metrics are checked against their registries (a user's own
`module:name` included), so the valid names are whatever is registered.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Iterable

import ml_collections as mlc

from valuejax.errors import ValueJaxError


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of a few words."""
  words: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Subset:
  """A non-empty tuple of some of a few words."""
  words: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Range:
  """A finite number between `low` and `high` (each end inclusive or not); `what` says it in words."""
  low: float
  high: float
  low_in: bool
  high_in: bool
  what: str


POSITIVE = Range(0, math.inf, False, False, "a positive integer")
NON_NEGATIVE = Range(0, math.inf, True, False, "an integer >= 0")

# The entries every run reads (the launchers, the recorder, the mesh), all set by configs/common.base_config.
BASE_KEYS: dict[str, Any] = {
    "method": None, "model": None, "seed": None, "log_compiles": None, "positive_control": None, "sweep": None,
    "layout": Choice(("auto", "stacked", "decode")),
    "dtype": Choice(("float32", "bfloat16")),
    "mesh.data": None, "mesh.model": None, "mesh.params": Choice(("replicated", "fsdp")), "mesh.rules": None,
    "record.mode": Choice(("generate", "teacher_forced")),
    "record.batch_size": POSITIVE, "record.max_new_tokens": POSITIVE, "record.checkpoint_every": POSITIVE,
    "record.keep_checkpoints": POSITIVE,
    "record.hist": None, "record.halves": None, "record.hist_bins": Choice(("full", "compact")),
    "record.temperature": Range(0.0, math.inf, True, False, "a finite number >= 0 (0 = greedy)"),
    "record.top_p": Range(0.0, 1.0, False, True, "a probability in (0, 1]"),
    "record.repetition_penalty": Range(0.0, math.inf, False, False, "a finite positive number (1 = none)"),
    "locate.rule": None, "intervene.kind": None, "intervene.metric": None,
    "intervene.batch_size": POSITIVE, "intervene.length_buckets": None,
    "intervene.alpha": Range(0.0, 1.0, False, False, "a significance level in (0, 1), e.g. 0.05"),
    "intervene.n_boot": Range(1, math.inf, True, False, "a positive integer"),
}


def declared_keys(part: Any) -> dict[str, Any]:
  """The `config_keys` of a method, rule, edit kind or metric (a class's own and its bases', the subclass's
  entries winning); {} for a part that declares none (a user's own may not)."""
  if inspect.isfunction(part):
    return dict(getattr(part, "config_keys", {}))
  cls = part if isinstance(part, type) else type(part)
  out: dict[str, Any] = {}
  for c in reversed(cls.__mro__):
    out.update(vars(c).get("config_keys", {}))
  return out


def declare(keys: dict[str, Any]):
  """`@declare({"locate.presets": Subset(...)})` above a locator rule or edit kind: the entries it reads."""
  def mark(fn):
    fn.config_keys = dict(keys)
    return fn
  return mark


def require(config: mlc.ConfigDict, keys: Iterable[str], who: str) -> None:
  """Raises one ValueJaxError naming every entry of `keys` the config lacks, for `who` (what reads them)."""
  missing = [k for k in keys if not has_key(config, k)]
  if missing:
    raise ValueJaxError(f"the config has no {', '.join(missing)}, which {who} reads", "the config file (--config)",
                        "add " + ("it" if len(missing) == 1 else "them") + " to the config file: a config built on "
                        "configs/common.base_config has the common entries, and configs/<method>.py ships every "
                        "entry its method reads (a --config.<key> flag sets only an entry the file has)")


# Config entries that name one registered object.
REGISTERED = {"method": "METHODS", "locate.rule": "RULES", "intervene.kind": "EDITS", "intervene.metric": "METRICS"}


def _check_registered(config: mlc.ConfigDict) -> dict[str, Any]:
  """{config entry: the registered object it names}, for each of method, rule, edit kind and metric present."""
  from valuejax import methods, metrics
  registries = {"METHODS": methods.METHODS, "RULES": methods.RULES, "EDITS": methods.EDITS,
                "METRICS": metrics.METRICS}
  found = {}
  for key, registry in REGISTERED.items():
    if has_key(config, key):
      found[key] = registries[registry].get(get_key(config, key))  # raises, listing the registered names
  if "method" in found and "intervene.metric" in found:
    found["intervene.metric"]().check(config, found["method"])  # e.g. a metric of choices for a method of texts
  return found


def needed_keys(config: mlc.ConfigDict, found: dict[str, Any] | None = None) -> dict[str, Any]:
  """{entry: what it may be} for everything this config's run reads: the base entries and those its method,
  rule, edit kind and metric declare."""
  found = _check_registered(config) if found is None else found
  out = dict(BASE_KEYS)
  for key in REGISTERED:
    if key in found:
      out.update(declared_keys(found[key]))
  return out


def _check_value(key: str, spec: Any, v: Any) -> None:
  if isinstance(spec, Choice) and v not in spec.words:
    _bad_value(key, v, f"one of {', '.join(spec.words)}")
  if isinstance(spec, Subset) and (not v or any(x not in spec.words for x in v)):
    _bad_value(key, v, f"a non-empty tuple of {', '.join(spec.words)}")
  if isinstance(spec, Range):
    ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
          and (v >= spec.low if spec.low_in else v > spec.low) and (v <= spec.high if spec.high_in else v < spec.high))
    if not ok:
      _bad_value(key, v, spec.what)


def check_config(config: mlc.ConfigDict) -> None:
  """Raises ValueJaxError naming the key and the valid choices for the first invalid value, then naming every
  entry the run reads that the config lacks."""
  found = _check_registered(config)
  needed = needed_keys(config, found)
  for key, spec in needed.items():
    if spec is not None and has_key(config, key):
      _check_value(key, spec, get_key(config, key))
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
    # An h above the replicates (e.g. --config.intervene.n_controls lowered below a config's h) can never stop
    # early: the test looks at every replicate with h = R_max, and its p is the fixed-R rank p.
    if not (isinstance(h, int) and not isinstance(h, bool) and h >= 0):
      _bad_value("intervene.sequential_h", h, "an integer >= 0 (0 = every primary replicate, the fixed-R p)")
  if has_key(config, "intervene.primary_gamma") and get_key(config, "intervene.primary_gamma"):
    pg = get_key(config, "intervene.primary_gamma")
    gamma = tuple(get_key(config, "intervene.gamma")) if has_key(config, "intervene.gamma") else ()
    strongest_only = (has_key(config, "intervene.controls_at")
                      and get_key(config, "intervene.controls_at") == "strongest")
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
  parts = [f"{k} {get_key(config, k)!r}" for k in ("method", "locate.rule", "intervene.kind", "intervene.metric")
           if has_key(config, k)]
  require(config, needed, "the run (" + (", ".join(parts) or "the base sections") + ")")


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
  if has_key(config, "model"):
    from valuejax.models.loading import check_hub_id
    check_hub_id(str(config.model))  # an id the hub cache cannot give fails here, before the devices start
  if hasattr(metric, "preflight"):
    metric.preflight(config)  # a service the metric needs (the LLM judge) answers, before any model loads
