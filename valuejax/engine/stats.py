"""Per-neuron statistics as plain sums: reduced on device per batch, accumulated exactly on the host.

Every field is a sum over tokens, so batches, devices and hosts merge by addition. On device a batch is
reduced into int32 counts and float32 sums (exact counts: a batch holds far fewer than 2**24 tokens); the
host adds batches into int64 / float64, so 10**9 tokens neither overflow nor lose precision.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from valuejax.engine.histogram import HIST_BINS, HIST_EDGES, HIST_WIDTH, hist_edges, hist_kind
from valuejax.errors import ValueJaxError


def hist_bin(a: jax.Array, kind: str = "full") -> jax.Array:
  """Bin index of each activation in a histogram of `kind` (see engine/histogram.py)."""
  if kind == "full":  # uniform bins: a division, exactly as NPTI bins
    k = jnp.ceil(a.astype(jnp.float32) / HIST_WIDTH)
    return jnp.clip(k, 0, HIST_BINS - 1).astype(jnp.int32)
  # Bin i holds edges[i-1] < a <= edges[i]: the number of edges below a.
  return jnp.searchsorted(jnp.asarray(hist_edges(kind), jnp.float32), a.astype(jnp.float32),
                          side="left").astype(jnp.int32)


def host_array(x) -> np.ndarray:
  """A device array on the host. Statistics may be split over the `model` axis across hosts: such an array
  is gathered here, when the host reads it, and nowhere before."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.sharding.is_fully_replicated:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


class DeviceStats(NamedTuple):
  """One batch's sums, on device. count/s1/s2: [G, L, F]; tokens/items: [G]; hist: [G, L, F, bins]."""
  tokens: jax.Array
  items: jax.Array
  count: jax.Array
  s1: jax.Array
  s2: jax.Array
  hist: jax.Array | None


def make_reducer(onehot: jax.Array, weight: jax.Array, *, hist: bool, target: str = "act", hist_bins: str = "full",
                 mesh=None, batch_axis: str | None = "data"):
  """A `capture` function for `forward` that reduces each layer's activations to [G, F] sums.

  onehot [B, G] maps rows to groups (all-zero rows are ignored); weight [B, T] is 1 for the tokens that
  count. `target` is "act" (a = act(gate(x)), the papers' hook point) or "hidden" (the input of down).
  `hist_bins`: the histogram's kind, "full" or "compact" (see engine/histogram.py). On a `mesh`, the
  histogram is built per device over its own neurons (and rows, when the batch is split over `batch_axis`;
  None for a batch every data shard holds whole), see `_histogram`.
  """
  gw = jnp.einsum("bg,bt->gbt", onehot, weight)  # [G, B, T]

  def reduce(layer, a, h):
    x = (a if target == "act" else h).astype(jnp.float32)
    out = {
        "count": jnp.einsum("gbt,btf->gf", gw, (x > 0).astype(jnp.float32)).astype(jnp.int32),
        "s1": jnp.einsum("gbt,btf->gf", gw, x),
        "s2": jnp.einsum("gbt,btf->gf", gw, x * x),
    }
    if hist:
      out["hist"] = _histogram(x, onehot, weight, hist_bins, mesh, batch_axis)
    return out

  return reduce


def _histogram(x: jax.Array, onehot: jax.Array, weight: jax.Array, kind: str = "full", mesh=None,
               batch_axis: str | None = "data") -> jax.Array:
  """[G, F, bins] token counts per bin.

  XLA does not partition a scatter-add: left to itself, every device would hold a whole [G, F, bins]
  buffer and [B, T, F] bin indices. On a mesh each device therefore bins its own rows and neurons
  (shard_map) and the data shards' counts are summed, so a device holds 1/model of the histogram.
  """
  if mesh is None or mesh.size == 1:
    return _local_histogram(x, onehot, weight, kind)
  from jax.sharding import PartitionSpec as P
  model = "model" if x.shape[-1] % mesh.shape["model"] == 0 else None
  rows = batch_axis if batch_axis and x.shape[0] % mesh.shape[batch_axis] == 0 else None

  def local(x, onehot, weight):
    h = _local_histogram(x, onehot, weight, kind)
    return jax.lax.psum(h, rows) if rows else h

  return jax.shard_map(local, mesh=mesh, in_specs=(P(rows, None, model), P(rows, None), P(rows, None)),
                       out_specs=P(None, model, None), check_vma=False)(x, onehot, weight)


def _local_histogram(x: jax.Array, onehot: jax.Array, weight: jax.Array, kind: str = "full") -> jax.Array:
  """[G, F, bins] token counts per bin, by scatter-add (no [.., bins] one-hot is materialised)."""
  b, t, f = x.shape
  g = onehot.shape[1]
  bins = hist_edges(kind).size + 1
  group = jnp.argmax(onehot, axis=1)  # rows with no group carry weight 0 below
  w = (weight * onehot.sum(1)[:, None]).astype(jnp.int32)  # [B, T]
  idx = (group[:, None, None] * f + jnp.arange(f)[None, None, :]) * bins + hist_bin(x, kind)
  flat = jnp.zeros(g * f * bins, jnp.int32).at[idx.reshape(-1)].add(
      jnp.broadcast_to(w[..., None], (b, t, f)).reshape(-1))
  return flat.reshape(g, f, bins)


def device_stats(layer_sums: dict, onehot: jax.Array, weight: jax.Array) -> DeviceStats:
  """Assembles the scan's stacked [L, G, F] layer sums into a [G, L, F] DeviceStats."""
  swap = lambda x: jnp.swapaxes(x, 0, 1)
  tokens = jnp.einsum("bg,bt->g", onehot, weight).astype(jnp.int32)
  items = jnp.einsum("bg,b->g", onehot, (weight.sum(1) > 0).astype(jnp.float32)).astype(jnp.int32)
  return DeviceStats(tokens=tokens, items=items, count=swap(layer_sums["count"]), s1=swap(layer_sums["s1"]),
                     s2=swap(layer_sums["s2"]), hist=swap(layer_sums["hist"]) if "hist" in layer_sums else None)


@dataclasses.dataclass
class NeuronStats:
  """Host-side running sums for groups x layers x neurons. `p` = count / tokens is the activation probability."""
  group_names: tuple[str, ...]
  tokens: np.ndarray  # [G] int64
  items: np.ndarray  # [G] int64
  count: np.ndarray  # [G, L, F] int64
  s1: np.ndarray  # [G, L, F] float64
  s2: np.ndarray  # [G, L, F] float64
  hist: np.ndarray | None = None  # [G, L, F, bins] int64
  hist_edges: np.ndarray | None = None  # [bins - 1] the bin edges (see engine/histogram.py); with `hist`

  def __post_init__(self):
    if self.hist is not None and self.hist_edges is None:
      self.hist_edges = HIST_EDGES
    if self.hist is not None and self.hist.shape[-1] != np.size(self.hist_edges) + 1:
      raise ValueJaxError(f"a histogram of {self.hist.shape[-1]} bins does not match its "
                          f"{np.size(self.hist_edges)} edges")

  @classmethod
  def zeros(cls, group_names: Sequence[str], num_layers: int, num_neurons: int, hist: bool = False,
            hist_bins: str = "full"):
    g, shape = len(group_names), (len(group_names), num_layers, num_neurons)
    edges = hist_edges(hist_bins) if hist else None
    return cls(tuple(group_names), np.zeros(g, np.int64), np.zeros(g, np.int64), np.zeros(shape, np.int64),
               np.zeros(shape, np.float64), np.zeros(shape, np.float64),
               np.zeros(shape + (edges.size + 1,), np.int64) if hist else None, edges)

  def add(self, other: "NeuronStats | DeviceStats") -> "NeuronStats":
    """Returns the sum (self is unchanged). Accepts another NeuronStats or one batch's DeviceStats."""
    if isinstance(other, NeuronStats) and other.group_names != self.group_names:
      raise ValueJaxError(f"cannot add statistics of groups {other.group_names} to {self.group_names}")
    get = lambda x, dt: None if x is None else host_array(x).astype(dt)
    hist = None
    if self.hist is not None:
      if other.hist is None:
        raise ValueJaxError("cannot add statistics without a histogram to ones with a histogram")
      if isinstance(other, NeuronStats) and hist_kind(other.hist_edges) != hist_kind(self.hist_edges):
        raise ValueJaxError(f"cannot add a {hist_kind(other.hist_edges)} histogram to a "
                            f"{hist_kind(self.hist_edges)} one")
      hist = self.hist + get(other.hist, np.int64)
    return NeuronStats(self.group_names, self.tokens + get(other.tokens, np.int64),
                       self.items + get(other.items, np.int64), self.count + get(other.count, np.int64),
                       self.s1 + get(other.s1, np.float64), self.s2 + get(other.s2, np.float64), hist,
                       self.hist_edges)

  @property
  def p(self) -> np.ndarray:
    """Activation probability C / T per group, [G, L, F] (0 for a group with no tokens)."""
    return self.count / np.maximum(self.tokens, 1)[:, None, None]

  @property
  def mean(self) -> np.ndarray:
    return self.s1 / np.maximum(self.tokens, 1)[:, None, None]

  @property
  def var(self) -> np.ndarray:
    return self.s2 / np.maximum(self.tokens, 1)[:, None, None] - self.mean ** 2

  def group(self, name: str) -> int:
    if name not in self.group_names:
      raise ValueJaxError(f"no group {name!r} in these statistics", fix=f"groups: {', '.join(self.group_names)}")
    return self.group_names.index(name)

  def to_dataframe(self):
    """One row per (group, layer, neuron): tokens, count, p, mean and variance (pandas, an optional extra)."""
    from valuejax.fileio import pandas
    g, layers, f = self.count.shape
    grid = np.meshgrid(np.arange(g), np.arange(layers), np.arange(f), indexing="ij")
    return pandas().DataFrame({
        "group": np.asarray(self.group_names, dtype=object)[grid[0].ravel()], "layer": grid[1].ravel(),
        "neuron": grid[2].ravel(), "tokens": np.repeat(self.tokens, layers * f), "count": self.count.ravel(),
        "p": self.p.ravel(), "mean": self.mean.ravel(), "var": self.var.ravel()})

  def to_arrays(self) -> dict[str, Any]:
    out = {"group_names": np.array(self.group_names, dtype=np.str_), "tokens": self.tokens,
           "items": self.items, "count": self.count, "s1": self.s1, "s2": self.s2}
    if self.hist is not None:
      out["hist"], out["hist_edges"] = self.hist, np.asarray(self.hist_edges, np.float64)
    return out

  @classmethod
  def from_arrays(cls, d: dict[str, Any]) -> "NeuronStats":
    hist = d.get("hist")
    return cls(tuple(str(x) for x in np.asarray(d["group_names"]).tolist()), np.asarray(d["tokens"], np.int64),
               np.asarray(d["items"], np.int64), np.asarray(d["count"], np.int64),
               np.asarray(d["s1"], np.float64), np.asarray(d["s2"], np.float64),
               None if hist is None else np.asarray(hist, np.int64),
               None if hist is None else np.asarray(d.get("hist_edges", HIST_EDGES), np.float64))

  def save(self, path: str) -> None:
    from valuejax import fileio
    with fileio.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, **self.to_arrays())

  @classmethod
  def load(cls, path: str) -> "NeuronStats":
    with np.load(path, allow_pickle=False) as z:
      return cls.from_arrays(dict(z))

  def __eq__(self, other) -> bool:
    if not isinstance(other, NeuronStats):
      return NotImplemented
    a, b = self.to_arrays(), other.to_arrays()
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@dataclasses.dataclass(frozen=True)
class StatsSpec:
  """What to reduce: over `num_groups` groups, of the "act" or "hidden" hook point, with a histogram or not
  (of `hist_bins` kind, "full" or "compact": see engine/histogram.py).

  `budget` > 0: generation also keeps a second set of sums over only the first `budget` generated tokens of
  each row (decode steps k < budget), in the same pass: a shorter token budget's statistics without a second
  generation (the first tokens of a longer generation are the shorter one's; see Generator)."""
  num_groups: int
  hist: bool = False
  target: str = "act"
  hist_bins: str = "full"
  budget: int = 0

  def reducer(self, onehot, weight, mesh=None, batch_axis: str | None = "data"):
    return make_reducer(onehot, weight, hist=self.hist, target=self.target, hist_bins=self.hist_bins, mesh=mesh,
                        batch_axis=batch_axis)

  def zeros(self, cfg, sharding=None) -> dict:
    """Zero sums in the layer scan's [L, G, F] order for ModelConfig `cfg` (split over neurons as
    `sharding` says); with a `budget`, [L, 2G, F]: the full sums' groups, then the budget's."""
    shape = (cfg.num_layers, self.num_groups * (2 if self.budget else 1), cfg.intermediate_size)
    out = {"count": jnp.zeros(shape, jnp.int32), "s1": jnp.zeros(shape, jnp.float32),
           "s2": jnp.zeros(shape, jnp.float32)}
    if self.hist:
      out["hist"] = jnp.zeros(shape + (hist_edges(self.hist_bins).size + 1,), jnp.int32)
    return out if sharding is None else jax.lax.with_sharding_constraint(out, sharding)


def stats_shardings(mesh, spec: StatsSpec | None, num_neurons: int):
  """(DeviceStats of shardings, the in-loop [L, G, F] sums' shardings): per-neuron arrays split over the
  `model` axis (as FSDP splits the weights), so that no device holds a whole [G, L, F] array, let alone a
  whole histogram; token counts replicated. Neurons are split only when the axis divides them."""
  if mesh is None or spec is None:
    return None, None
  from jax.sharding import NamedSharding, PartitionSpec as P
  axis = "model" if num_neurons % mesh.shape["model"] == 0 else None
  neurons = NamedSharding(mesh, P(None, None, axis))
  hist = NamedSharding(mesh, P(None, None, axis, None)) if spec.hist else None
  rep = NamedSharding(mesh, P())
  loop = {"count": neurons, "s1": neurons, "s2": neurons}
  if spec.hist:
    loop["hist"] = hist
  return DeviceStats(rep, rep, neurons, neurons, neurons, hist), loop
