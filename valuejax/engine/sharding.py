"""Device meshes and shardings: batches split over `data`, params replicated or split over `model`.

Reductions need no hand-written collectives: jit with NamedSharding inserts the all-reduce when a
batch-sharded sum is asked for replicated. Multi-host runs feed each host's rows of the global batch.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from valuejax.errors import ValueJaxError


def initialize_distributed(**kwargs) -> None:
  """Joins a multi-host run (TPU pod, multi-GPU cluster); a no-op for a single process."""
  jax.distributed.initialize(**kwargs)


def make_mesh(data: int | None = None, model: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, model) mesh over all devices (all hosts). data=None uses every device not used by `model`."""
  devices = list(devices if devices is not None else jax.devices())
  if model < 1 or len(devices) % model:
    raise ValueJaxError(f"mesh model size {model} does not divide the {len(devices)} devices",
                        fix="choose a model axis size that divides the device count")
  data = len(devices) // model if data is None else data
  if data * model != len(devices):
    raise ValueJaxError(f"mesh {data}x{model} needs {data * model} devices, {len(devices)} are present",
                        fix="set mesh.data * mesh.model to the number of devices (or leave mesh.data unset)")
  grid = np.array(devices).reshape(data, model)
  return Mesh(grid, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


# Sharding rules, as (regex, spec) pairs: the first regex that matches a weight's "/"-joined path (a list
# index or a row block is a path part: "layers/3/qkv/kernel_t/1") gives its PartitionSpec, written as a
# tuple of mesh axis names or None per dimension (shorter tuples leave the trailing dimensions whole).
# FSDP splits each weight matrix along its non-contracted dimension over the `model` axis; a leading
# [L] axis is never split. The rules cover both layouts the engine runs: the stacked one (layers on axis
# 0, kernels [in, out]) and the decode one (see `valuejax.models.layout`: a list of layers, q/k/v and gate/up
# fused, kernels transposed to [out, in] as `kernel_t`, possibly cut into row blocks).
REPLICATED_RULES = ((r".*", ()),)
FSDP_RULES = (
    (r"^embed(/\d+)?$", ("model", None)),
    (r"^lm_head$", (None, "model")),
    (r"^unembed_t(/\d+)?$", ("model", None)),
    (r"^layers/(q|k|v|gate|up)/kernel$", (None, None, "model")),
    (r"^layers/(q|k|v|gate|up)/bias$", (None, "model")),
    (r"^layers/(o|down)/kernel$", (None, "model", None)),
    (r"^layers/\d+/(qkv|gate_up|q|k|v|gate|up)/kernel_t(/\d+)?$", ("model", None)),
    (r"^layers/\d+/(qkv|gate_up|q|k|v|gate|up)/bias$", ("model",)),
    (r"^layers/\d+/(o|down)/kernel_t(/\d+)?$", (None, "model")),
    # Small weights every device keeps whole: norms and output biases.
    (r"(^|/)(\w*norm)/(scale|bias)$", ()),
    (r"^layers/(\d+/)?(o|down)/bias$", ()),
    (r"^pos_embed$", (None, "model")),
)
PARAM_MODES = {"replicated": REPLICATED_RULES, "fsdp": FSDP_RULES}
# A weight no rule matches is replicated when smaller than this, and an error otherwise: a large weight
# copied to every device by accident is how a model that fits stops fitting.
REPLICATE_BELOW = 1 << 20


def path_name(path) -> str:
  """The "/"-joined name of a pytree path ("layers/q/kernel", "layers/3/qkv/kernel_t/0")."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def rules_for(mode: str = "replicated", rules: Sequence | None = None) -> tuple:
  """The rules of a param mode ("replicated", "fsdp"), or `rules` as given (they replace the mode's)."""
  if rules:
    out = []
    for rule in rules:
      if len(rule) != 2 or not isinstance(rule[0], str):
        raise ValueJaxError(f"sharding rule {rule!r} is not a (regex, spec) pair", "mesh.rules",
                            'write rules as (("layers/.*/kernel$", (None, None, "model")), ...)')
      try:
        re.compile(rule[0])
      except re.error as e:
        raise ValueJaxError(f"sharding rule regex {rule[0]!r} does not compile: {e}", "mesh.rules",
                            "fix the regular expression") from None
      spec = tuple(rule[1] or ())
      if any(a is not None and a not in ("data", "model") for a in spec):
        raise ValueJaxError(f"sharding rule {rule[0]!r} names axes {spec}; the mesh has 'data' and 'model'",
                            "mesh.rules", "use 'model', 'data' or None in each spec")
      out.append((rule[0], spec))
    return tuple(out)
  if mode not in PARAM_MODES:
    raise ValueJaxError(f"param sharding {mode!r} is unknown", "mesh.params",
                        f"use one of {', '.join(PARAM_MODES)}")
  return PARAM_MODES[mode]


def param_specs(params: Any, axis_sizes: dict[str, int], mode: str = "replicated", rules: Sequence | None = None,
                replicate_below: int = REPLICATE_BELOW) -> Any:
  """The PartitionSpec of each weight of `params` (arrays or ShapeDtypeStructs: only shapes and dtypes are
  read), on a mesh with these axis sizes ({"data": 4, "model": 2}).

  The first matching rule wins. A weight that no rule matches, or whose split dimension the axis does not
  divide, is replicated if it is smaller than `replicate_below` bytes, and is an error otherwise.
  """
  table = rules_for(mode, rules)

  def spec(path, leaf):
    name = path_name(path)
    nbytes = int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    small = nbytes < replicate_below
    for pattern, s in table:
      if re.search(pattern, name):
        s = tuple(s)[:len(leaf.shape)]
        for dim, axis in enumerate(s):
          size = axis_sizes.get(axis, 1) if axis else 1
          if leaf.shape[dim] % size:
            if small:
              return P()
            raise ValueJaxError(f"weight {name} {tuple(leaf.shape)}: dimension {dim} ({leaf.shape[dim]}) does not "
                                f"split over the {axis!r} axis of size {size}", "mesh.rules",
                                "choose a mesh whose axis divides it, or a rule that splits another dimension")
        return P(*s)
    if small:
      return P()
    raise ValueJaxError(f"no sharding rule matches weight {name} {tuple(leaf.shape)} ({nbytes / 2**20:.1f} MiB); "
                        "it would be copied whole to every device", "mesh.rules",
                        f"add a (regex, spec) rule for it (rules of mode {mode!r}: see valuejax.engine.sharding)")

  return jax.tree_util.tree_map_with_path(spec, params)


def param_shardings(params: Any, mesh: Mesh, mode: str = "replicated", rules: Sequence | None = None,
                    replicate_below: int = REPLICATE_BELOW) -> Any:
  """NamedShardings for a params pytree of either layout: see `param_specs`."""
  specs = param_specs(params, dict(mesh.shape), mode, rules, replicate_below)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def shard_params(params: Any, mesh: Mesh, mode: str = "replicated", rules: Sequence | None = None,
                 replicate_below: int = REPLICATE_BELOW) -> Any:
  return jax.device_put(params, param_shardings(params, mesh, mode, rules, replicate_below))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  return NamedSharding(mesh, P("data", *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
  """Places a global batch, split over the `data` axis, replicated over `model`.

  Every host computes the same global batch (the data order is deterministic); each device takes the rows
  of its data shard from it (`jax.make_array_from_callback`). So a host feeds exactly the shards its
  devices hold, whatever the mesh: with a model axis wider than one host (a 70B model split 16 ways over
  4-chip TPU hosts), several hosts hold the same data shard and feed it the same rows.
  """
  out = []
  for a in arrays:
    a = np.asarray(a)
    sharding = batch_sharding(mesh, a.ndim)
    out.append(jax.make_array_from_callback(a.shape, sharding, lambda index, a=a: a[index]))
  return tuple(out)


def data_size(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.shape["data"]
