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


# FSDP-style rules: split each weight along the axis that is not contracted away first. Regexes match
# "/"-joined param paths; the first match wins. Leading [L] axes are never split.
_FSDP_RULES = (
    (r"^embed$", P("model", None)),
    (r"^lm_head$", P(None, "model")),
    (r"layers/(q|k|v|gate|up)/kernel$", P(None, None, "model")),
    (r"layers/(o|down)/kernel$", P(None, "model", None)),
)


def param_shardings(params: Any, mesh: Mesh, mode: str = "replicated") -> Any:
  """NamedShardings for a params pytree: "replicated", or "fsdp" (weights split over the model axis)."""
  if mode not in ("replicated", "fsdp"):
    raise ValueJaxError(f"param sharding {mode!r} is unknown", fix="use 'replicated' or 'fsdp'")
  size = mesh.shape["model"]

  def spec(path, leaf):
    if mode == "replicated" or size == 1:
      return NamedSharding(mesh, P())
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    for pattern, p in _FSDP_RULES:
      if re.search(pattern, name):
        axis = list(p).index("model")
        if leaf.shape[axis] % size == 0:
          return NamedSharding(mesh, p)
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(spec, params)


def shard_params(params: Any, mesh: Mesh, mode: str = "replicated") -> Any:
  return jax.device_put(params, param_shardings(params, mesh, mode))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  return NamedSharding(mesh, P("data", *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
  """Places a global batch, split over the `data` axis; each host contributes only its own rows.

  Every host computes the same global batch (the data order is deterministic), then hands
  `jax.make_array_from_process_local_data` its contiguous block of rows: devices are numbered host by
  host, so host p feeds rows [p * B / P, (p + 1) * B / P). With one process that is the whole batch.
  """
  procs, me = jax.process_count(), jax.process_index()
  out = []
  for a in arrays:
    a = np.asarray(a)
    if procs > 1:
      if a.shape[0] % procs:
        raise ValueJaxError(f"a batch of {a.shape[0]} rows does not split over {procs} hosts",
                            fix="use a batch size that is a multiple of the number of data-parallel devices")
      per = a.shape[0] // procs
      a = a[me * per:(me + 1) * per]
    out.append(jax.make_array_from_process_local_data(batch_sharding(mesh, a.ndim), a))
  return tuple(out)


def data_size(mesh: Mesh | None) -> int:
  return 1 if mesh is None else mesh.shape["data"]
