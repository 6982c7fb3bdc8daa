"""A memory plan: the bytes each device holds for one record run, computed from a model's config.json alone.

`memory_plan(cfg, data=4, model=16, dtype="bfloat16", params="fsdp", ...)` needs no weights and no devices
of the model's size: the weights are abstract (`jax.ShapeDtypeStruct`s) placed by the same sharding rules
the run uses (`valuejax.engine.sharding.param_specs`), and everything else is arithmetic on the shapes the
engine allocates. A plan for a 70B model computes in about a second on a CPU. `python -m launch.plan` (or
`valuejax plan`) prints it.

What is exact and what is estimated:
  weights      exact: every leaf of the chosen layout, split as the rules split it.
  statistics   exact: what the Generator (TeacherForcer) returns per batch, per set [G, L, F] int32 counts
               and float32 sums s1 and s2, split over the model axis where it divides F, plus [G] int32 token
               and item counts; one set for prompt tokens and one for generated tokens.
  histogram    exact: [G, L, F, bins] int32 per set, split like the statistics.
  KV cache     keys and values of every layer for the prompt's bucket plus the answer's slots, in the
               weights' dtype; rows split over the data axis, and heads x head_dim over the model axis as
               the k and v projections' outputs are split (what XLA's sharding propagation does with the
               cache, read from the compiled program on the CPU mesh).
  activations  an estimate: the larger of the prefill (its temporaries, see `activation_bytes`, and the
               per-layer sums it returns) and a decode step (its temporaries, the sums the loop carries and
               the step's new ones: two more sets of statistics and histogram beside the returned ones).
  host         exact: the run's accumulated statistics, int64 counts and float64 sums of every neuron, on
               each host (every process gathers the whole arrays), and the peak while a batch is added.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from valuejax.errors import ValueJaxError
from valuejax.models.config import ModelConfig

GIB = 1 << 30
MIB = 1 << 20
MODES = ("generate", "teacher_forced")
# Kept free of the plan: XLA's own workspace, compiled programs, allocator fragmentation and the small
# arrays the plan leaves out (token ids, masks, RoPE tables).
DEFAULT_HEADROOM = 0.10


def _np_dtype(dtype: str) -> np.dtype:
  from valuejax.models.loading import _np_dtype as load_dtype
  return np.dtype(load_dtype(dtype))  # the loader's: an unsupported dtype is its error


def _itemsize(dtype: str) -> int:
  return _np_dtype(dtype).itemsize


def read_model_config(path: str) -> ModelConfig:
  """The ModelConfig of a `config.json` file, or of a model folder holding one (no weights are read)."""
  from valuejax.models.loading import model_config, read_hf_config
  return model_config(read_hf_config(path), path)


def abstract_params(cfg: ModelConfig, dtype: str = "float32", layout: str = "stacked") -> dict:
  """The params of `cfg` as `jax.ShapeDtypeStruct`s in `layout`: every leaf the loader makes (the stacked
  tree `valuejax.models.convert` builds from a checkpoint, in the load dtype), or that tree in the decode
  layout as a sharded run makes it (whole matrices, no row blocks); no arrays (see `param_shapes`)."""
  from valuejax.models.layout import param_shapes
  return param_shapes(cfg, layout, parts=1, dtype=_np_dtype(dtype))


def _split(spec, axis_sizes: dict[str, int]) -> tuple[int, ...]:
  """How many ways each dimension is split by a PartitionSpec."""
  out = []
  for axis in tuple(spec):
    names = () if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)
    out.append(math.prod(axis_sizes.get(a, 1) for a in names))
  return tuple(out)


def shard_bytes(shape: Sequence[int], dtype, spec, axis_sizes: dict[str, int]) -> int:
  """Bytes one device holds of an array of `shape` placed with PartitionSpec `spec`."""
  ways = _split(spec, axis_sizes) + (1,) * (len(shape) - len(tuple(spec)))
  return math.prod(-(-int(n) // w) for n, w in zip(shape, ways)) * np.dtype(dtype).itemsize


def weight_bytes(params: dict, axis_sizes: dict[str, int], mode: str = "replicated", rules=None) -> tuple[int, int]:
  """(bytes per device, bytes in all) of abstract `params` placed by the sharding rules of `mode` (or
  `rules`) on a mesh with these axis sizes."""
  import jax
  from jax.sharding import PartitionSpec as P
  from valuejax.engine.sharding import param_specs
  specs = param_specs(params, axis_sizes, mode, rules)
  leaves = jax.tree.leaves(params)
  spec_leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, P))
  per_device = sum(shard_bytes(a.shape, a.dtype, s, axis_sizes) for a, s in zip(leaves, spec_leaves))
  total = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in leaves)
  return per_device, total


def param_count(cfg: ModelConfig) -> int:
  """The model's number of parameters (every weight of the stacked layout, the tied embedding once)."""
  import jax
  return sum(math.prod(a.shape) for a in jax.tree.leaves(abstract_params(cfg)))


# Where each activation axis comes from, in either layout: (weight, its dimension that produces the axis).
_PRODUCERS = {
    "heads": (("layers/q/kernel", 2), ("layers/0/q/kernel_t", 0), ("layers/0/qkv/kernel_t", 0)),
    "kv": (("layers/k/kernel", 2), ("layers/0/k/kernel_t", 0), ("layers/0/qkv/kernel_t", 0)),
    "neurons": (("layers/gate/kernel", 2), ("layers/0/gate/kernel_t", 0), ("layers/0/gate_up/kernel_t", 0)),
    "vocab": (("lm_head", 1), ("unembed_t", 0), ("embed", 0)),
}


def activation_splits(params: dict, axis_sizes: dict[str, int], mode: str = "replicated", rules=None) -> dict:
  """How many ways the weights split the axes of the activations they produce: attention heads (q), KV heads
  (k), neurons (gate) and vocabulary (the head, or the tied embedding), for abstract `params` of either
  layout. XLA's sharding propagation splits an activation as the weight that produces it."""
  import jax
  from jax.sharding import PartitionSpec as P
  from valuejax.engine.sharding import param_specs, path_name
  specs = param_specs(params, axis_sizes, mode, rules)
  flat = jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, P))[0]
  by_name = {path_name(path): s for path, s in flat}
  out = {}
  for axis, producers in _PRODUCERS.items():
    name, dim = next(((n, d) for n, d in producers if n in by_name), (None, 0))
    split = _split(by_name[name], axis_sizes) if name else ()
    out[axis] = split[dim] if dim < len(split) else 1
  return out


@dataclasses.dataclass(frozen=True)
class Item:
  name: str
  bytes: int  # per device
  note: str


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes per device of one record run (see the module docstring for what each item counts)."""
  model_type: str
  params_total: int  # parameters of the model
  weights_total: int  # bytes of all weights, before splitting
  data: int
  model: int
  dtype: str
  param_mode: str
  layout: str
  mode: str
  batch: int  # rows per batch as the engine runs it (bucketed, a multiple of the data axis)
  rows: int  # of them, rows per device
  prompt: int  # prompt tokens as the engine runs them (bucketed)
  new_tokens: int
  groups: int
  hist: bool
  hist_bins: str
  items: tuple[Item, ...]
  host_bytes: int  # the accumulated statistics on each host, int64 / float64
  host_peak: int  # about, while a batch is added: the old and new sums and one field of the batch
  device_bytes: int | None = None
  headroom: float = DEFAULT_HEADROOM

  @property
  def devices(self) -> int:
    return self.data * self.model

  @property
  def total(self) -> int:
    return sum(i.bytes for i in self.items)

  def get(self, name: str) -> int:
    return next(i.bytes for i in self.items if i.name == name)

  @property
  def usable(self) -> int | None:
    """The device memory the plan may fill: `device_bytes` less the headroom."""
    return None if self.device_bytes is None else int(self.device_bytes * (1 - self.headroom))

  @property
  def fits(self) -> bool | None:
    return None if self.device_bytes is None else self.total <= self.usable

  def table(self) -> str:
    """The plan as a plain-text table, with its inputs and the verdict."""
    mesh = f"{self.data} x {self.model} (data x model), {self.devices} device{'s' if self.devices > 1 else ''}"
    lines = [f"model      {self.model_type}, {self.params_total / 1e9:.2f} B parameters, {self.dtype} weights "
             f"{self.weights_total / 1e9:.1f} GB ({self.weights_total / GIB:.1f} GiB) in all",
             f"mesh       {mesh}; params {self.param_mode}, {self.layout} layout",
             f"batch      {self.batch} rows ({self.rows} per device), prompt {self.prompt} tokens, "
             + (f"{self.new_tokens} new tokens" if self.mode == "generate" else "teacher-forced"),
             f"groups     {self.groups}, " + (f"{self.hist_bins} histogram" if self.hist else "no histogram"),
             ""]
    width = max(len(i.name) for i in self.items)
    lines.append(f"{'per device':<{width}}  {'bytes':>10}  what")
    for i in self.items:
      lines.append(f"{i.name:<{width}}  {fmt_bytes(i.bytes):>10}  {i.note}")
    lines.append(f"{'total':<{width}}  {fmt_bytes(self.total):>10}")
    lines.append("")
    lines.append(f"host RAM   {fmt_bytes(self.host_bytes)} on each host: the accumulated statistics (int64/float64, "
                 "every neuron);")
    lines.append(f"           about {fmt_bytes(self.host_peak)} while a batch is added (old and new sums)")
    if self.device_bytes is not None:
      verdict = "fits" if self.fits else "does not fit"
      lines.append(f"{verdict}: {fmt_bytes(self.total)} of {fmt_bytes(self.usable)} usable per device "
                   f"({fmt_bytes(self.device_bytes)} less {self.headroom:.0%} headroom)")
    return "\n".join(lines)


def fmt_bytes(n: int) -> str:
  """1.23 GiB, 456.7 MiB or 12.3 KiB."""
  if n >= GIB:
    return f"{n / GIB:.2f} GiB"
  if n >= MIB:
    return f"{n / MIB:.1f} MiB"
  return f"{n / 1024:.1f} KiB"


def activation_bytes(cfg: ModelConfig, dtype: str, rows: int, tokens: int, slots: int, *, groups: int,
                     hist: bool, hist_bins: str, heads_split: int = 1, neurons_split: int = 1,
                     vocab_split: int = 1, logits: bool = True) -> dict[str, int]:
  """An estimate of the live temporaries of one forward step of `rows` rows (per device) by `tokens` tokens
  attending to `slots` key slots, by kind (bytes per device).

  Layers run one after another, so one layer's temporaries count, at the larger of its two phases:
    hidden     4 x [rows, T, D]: the residual stream, its normed copy and the layer's output (weights'
               dtype) and the float32 copy the norm computes in; live through both phases.
    attention  q, k, v [rows, T, (H + 2 KV) hd] and the output [rows, T, H hd] (weights' dtype); scores
               and their softmax [rows, H, T, S] float32, and the probabilities in the weights' dtype.
    mlp        [rows, T, F]: gate and up outputs, the activation and its product with up (weights' dtype),
               the float32 copy the statistics reduce and one float32 product (x > 0, x * x).
    histogram  two int32 [rows, T, F] (bin indices, token weights) and a [G, F, bins] int32 scatter
               buffer, all split over the neurons: each device bins its own rows and neurons (shard_map in
               `engine/stats.py`; XLA would not partition the scatter-add itself).
    logits     the last token's [rows, V] float32 logits, twice (the logits and the next-token selection)
               and the [rows, V] bool presence mask of the repetition penalty.
  Head, neuron and vocabulary axes are divided by `heads_split`, `neurons_split` and `vocab_split`: the ways
  the weights that produce them are split (under FSDP, XLA's sharding propagation keeps the activations
  split as their weights are). XLA fuses some of these away and keeps a few small ones not listed here
  (masks, RoPE tables, token ids): an estimate of the order of the peak, not XLA's own number (on the
  device, `jax.jit(...).lower(...).compile().memory_analysis()` gives that).
  """
  from valuejax.engine.histogram import hist_edges
  item = _itemsize(dtype)
  b, t, s = rows, tokens, slots
  D, F, V, hd = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim
  H, KV = cfg.num_heads, cfg.num_kv_heads
  out = {"hidden": b * t * D * (3 * item + 4),
         "attention": (b * t * (2 * H + 2 * KV) * hd * item + b * H * t * s * (2 * 4 + item)) // heads_split,
         "mlp": b * t * F * (4 * item + 2 * 4) // neurons_split,
         "histogram": 0,
         "logits": (b * V * (2 * 4) // vocab_split + b * V) if logits else 0}
  if hist:
    bins = hist_edges(hist_bins).size + 1
    out["histogram"] = (b * t * F * 2 * 4 + groups * F * bins * 4) // neurons_split
  return out


def step_peak(parts: dict[str, int]) -> int:
  """The peak of one step's temporaries (see `activation_bytes`): attention and MLP phases do not overlap."""
  return parts["hidden"] + max(parts["attention"], parts["mlp"]) + parts["histogram"] + parts["logits"]


def memory_plan(cfg: ModelConfig, *, data: int = 1, model: int = 1, dtype: str = "float32",
                params: str = "replicated", rules: Sequence | None = None, layout: str = "stacked",
                mode: str = "generate", batch: int = 16, prompt_tokens: int = 128, new_tokens: int = 48,
                groups: int = 2, hist: bool = False, hist_bins: str = "full", device_gib: float | None = None,
                headroom: float = DEFAULT_HEADROOM) -> MemoryPlan:
  """The bytes per device of recording statistics with `cfg` on a (data, model) mesh: weights, KV cache,
  activations of one step, statistics and histogram (see the module docstring), and the host's.

  batch: rows per batch over all devices (record.batch_size), padded as the engine pads it (to a batch
  bucket, then a multiple of `data`); prompt_tokens: the longest prompt, padded to its length bucket;
  new_tokens: the answer length (record.max_new_tokens); mode: "generate" or "teacher_forced" (record.mode:
  statistics over the prompt only, no KV cache); groups: the groups recorded (StatsSpec.num_groups).
  device_gib: the memory of one device; with it the plan says whether the run fits, keeping `headroom` (a
  fraction) free. Layout "auto" means "stacked", the layout an accelerator runs.
  """
  from valuejax.engine.batching import bucket
  from valuejax.engine.batching import BATCH_BUCKETS, PROMPT_BUCKETS
  from valuejax.engine.histogram import hist_edges
  for name, value, least in (("mesh data", data, 1), ("mesh model", model, 1), ("batch", batch, 1),
                             ("prompt tokens", prompt_tokens, 1), ("groups", groups, 1),
                             ("new tokens", new_tokens, 1 if mode == "generate" else 0)):
    if int(value) != value or value < least:
      raise ValueJaxError(f"{name} must be an integer of at least {least}, got {value!r}", name)
  if mode not in MODES:
    raise ValueJaxError(f"record mode {mode!r} is unknown", "mode", f"use one of {', '.join(MODES)}")
  if device_gib is not None and not device_gib > 0:
    raise ValueJaxError(f"device memory must be positive, got {device_gib!r} GiB", "device memory")
  if not 0 <= headroom < 1:
    raise ValueJaxError(f"headroom must lie in [0, 1), got {headroom!r}", "headroom")
  if hist:
    hist_edges(hist_bins)  # a known kind
  layout = "stacked" if layout == "auto" else layout
  item = _itemsize(dtype)
  axes = {"data": int(data), "model": int(model)}

  abstract = abstract_params(cfg, dtype, layout)
  w_dev, w_total = weight_bytes(abstract, axes, params, rules)
  ways = activation_splits(abstract, axes, params, rules)
  kv_split = ways["kv"]

  # Rows and tokens as the engine pads them (batching.prepare_batch).
  run_batch = -(-bucket(batch, BATCH_BUCKETS) // data) * data
  rows = run_batch // data
  prompt = bucket(prompt_tokens, PROMPT_BUCKETS)
  generate = mode == "generate"
  slots = prompt + (new_tokens if generate else 0)

  L, G, F = cfg.num_layers, groups, cfg.intermediate_size
  f_dev = F // model if F % model == 0 else F  # stats_shardings splits neurons only when the axis divides
  sets = 2 if generate else 1
  per_set = G * L * f_dev * (4 + 4 + 4) + 2 * G * 4
  bins = hist_edges(hist_bins).size + 1 if hist else 0
  hist_set = G * L * f_dev * bins * 4

  kv = (2 * L * cfg.num_kv_heads * rows * cfg.head_dim * slots * item) // kv_split if generate else 0
  # The per-layer sums a step computes before they join the returned statistics: the prefill's (one set),
  # then the decode loop's carried sums and each step's new ones (two sets).
  working = G * L * f_dev * 12 + hist_set
  split = dict(groups=G, hist=hist, hist_bins=hist_bins, heads_split=ways["heads"], neurons_split=ways["neurons"],
               vocab_split=ways["vocab"])
  prefill = step_peak(activation_bytes(cfg, dtype, rows, prompt, prompt, logits=generate, **split)) + working
  decode = 0
  if generate:
    # A decode step: one token per row against every slot, the layer's cache read (a stacked cache's layer
    # is copied out first), and two sets of sums.
    layer_cache = kv // L if layout == "stacked" else 0
    decode = step_peak(activation_bytes(cfg, dtype, rows, 1, slots, **split)) + layer_cache + 2 * working
  what = (f"prefill of {rows} x {prompt} tokens and its sums" if prefill >= decode
          else "a decode step: its temporaries, the carried and new sums")

  items = (
      Item("weights", w_dev, f"{params}, {layout} layout, {dtype} (exact)"),
      Item("KV cache", kv, (f"[{L}, {cfg.num_kv_heads}, {rows}, {cfg.head_dim}, {slots}] keys and values, "
                            f"{dtype}" + (f", heads x hd split {kv_split} ways" if kv_split > 1 else "")
                            if generate else "none (teacher-forced)")),
      Item("activations", max(prefill, decode), f"{what} (estimate)"),
      Item("statistics", sets * per_set, f"{sets} x [{G}, {L}, {f_dev}] count int32, s1/s2 float32"
                                         + (" (prompt, answer)" if generate else "")),
      Item("histogram", sets * hist_set, (f"{sets} x [{G}, {L}, {f_dev}, {bins}] int32" if hist else "off")),
  )
  # Every host accumulates the whole arrays (each gathers them from the devices): int64 / float64. Adding a
  # batch makes the new sums while the old ones are held, one field at a time from the batch's host copy
  # (32-bit) widened to 64 bits.
  host_set = G * L * F * (8 * 3 + bins * 8) + 2 * G * 8
  largest_field = G * L * F * max(bins, 1) * (4 + 8)
  return MemoryPlan(
      model_type=cfg.model_type, params_total=param_count(cfg), weights_total=w_total, data=int(data),
      model=int(model), dtype=dtype, param_mode=params, layout=layout, mode=mode, batch=run_batch, rows=rows,
      prompt=prompt, new_tokens=int(new_tokens) if generate else 0, groups=G, hist=hist, hist_bins=hist_bins,
      items=tuple(items), host_bytes=sets * host_set, host_peak=sets * 2 * host_set + largest_field,
      device_bytes=None if device_gib is None else int(device_gib * GIB), headroom=headroom)
