"""Reads Hugging Face checkpoint files into HF-named numpy state dicts, without torch.

Formats: safetensors (single or sharded), HF Flax msgpack (single or sharded) and torch zip `pytorch_model.bin`.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import zipfile
from typing import Any, Callable

import ml_dtypes
import numpy as np

from valuejax.errors import ValueJaxError

# Checked in this order: the first one present in a folder is read.
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json",
    "flax_model.msgpack", "flax_model.msgpack.index.json",
    "pytorch_model.bin", "pytorch_model.bin.index.json",
)


def load_state_dict(folder: str | os.PathLike) -> dict[str, np.ndarray]:
  """HF-named numpy arrays of the checkpoint in `folder` (bf16 tensors come back as ml_dtypes.bfloat16)."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise ValueJaxError("not a folder", where=folder, fix="pass the folder that holds the checkpoint files")
  for name in WEIGHT_FILES:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      if name.endswith(".index.json"):
        return _read_sharded(path, _READERS[name[:-len(".index.json")]])
      return _READERS[name](path)
  raise ValueJaxError("folder has no weights file", where=folder,
                      fix=f"the folder needs one of: {', '.join(WEIGHT_FILES)}")


def _read_sharded(index_path: str, read_one: Callable[[str], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  index = _read_json(index_path)
  weight_map = index.get("weight_map") if isinstance(index, dict) else None
  if not isinstance(weight_map, dict) or not weight_map:
    raise ValueJaxError("index has no 'weight_map'", where=index_path,
                        fix="re-save the checkpoint with save_pretrained")
  folder = os.path.dirname(index_path)
  state: dict[str, np.ndarray] = {}
  for shard in sorted(set(weight_map.values())):
    shard_path = os.path.join(folder, shard)
    if not os.path.isfile(shard_path):
      raise ValueJaxError(f"shard {shard!r} listed in the index is missing", where=index_path,
                          fix="copy every shard file next to the index")
    state.update(read_one(shard_path))
  return state


def _read_json(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueJaxError(f"invalid JSON: {e.msg}", where=f"{path}:{e.lineno}:{e.colno}",
                        fix="repair or re-create the file") from None


# --- safetensors ---------------------------------------------------------------------------------------


def _safetensors_header(path: str) -> tuple[dict, int]:
  """(header, byte offset of the data section)."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) < 8:
      raise ValueJaxError(f"truncated safetensors file ({size} bytes, too short to hold a header)", where=path,
                          fix=_TRUNCATED_FIX)
    (n,) = struct.unpack("<Q", raw)
    if n > size - 8:
      # a file cut inside its JSON header looks exactly like this (as does a file that is not safetensors)
      raise ValueJaxError(f"truncated or corrupt safetensors file: the header claims {n} bytes but the file "
                          f"holds only {size}", where=path, fix=_TRUNCATED_FIX)
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError):
      raise ValueJaxError("corrupt safetensors header", where=path, fix=_TRUNCATED_FIX) from None
  if not isinstance(header, dict):
    raise ValueJaxError("corrupt safetensors header (not a JSON object)", where=path, fix=_TRUNCATED_FIX)
  return header, 8 + n


_TRUNCATED_FIX = "the file is damaged or was cut short (an interrupted download or copy): download or copy it again"


_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Zero-copy views of a memory-mapped safetensors file (copy-on-write: edits never reach the file).

  The header is read directly rather than through `safetensors.numpy`, whose numpy backend copies every
  tensor and cannot represent bfloat16.
  """
  header, data_start = _safetensors_header(path)
  header.pop("__metadata__", None)
  size = os.path.getsize(path)
  try:
    spans = {}
    for name, info in header.items():
      begin, end = (data_start + int(o) for o in info["data_offsets"])
      spans[name] = (info["dtype"], tuple(int(d) for d in info["shape"]), begin, end)
  except (KeyError, TypeError, ValueError, AttributeError):
    raise ValueJaxError("corrupt safetensors header (a tensor entry lacks dtype, shape or data_offsets)",
                        where=path, fix=_TRUNCATED_FIX) from None
  # One check for the whole file before any tensor: a cut-off file (the common case: an interrupted
  # download) is then reported as such, instead of as a problem with whichever tensor happens to be first.
  needed = max((end for *_, end in spans.values()), default=data_start)
  if needed > size:
    raise ValueJaxError(f"truncated safetensors file: its header describes {needed} bytes but the file holds "
                        f"only {size} ({size * 100 // needed}%)", where=path, fix=_TRUNCATED_FIX)
  blob = np.memmap(path, dtype=np.uint8, mode="c") if size > data_start else np.zeros(0, np.uint8)
  out = {}
  for name, (dtype_name, shape, begin, end) in spans.items():
    if dtype_name not in _SAFETENSORS_DTYPES:
      raise ValueJaxError(f"tensor {name!r} has dtype {dtype_name}, which numpy cannot hold", where=path,
                          fix="re-save the checkpoint in float32, float16 or bfloat16")
    dtype = np.dtype(_SAFETENSORS_DTYPES[dtype_name])
    if begin < data_start or end - begin != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
      raise ValueJaxError(f"tensor {name!r} has the wrong byte size for its shape and dtype", where=path,
                          fix=_TRUNCATED_FIX)
    out[name] = blob[begin:end].view(dtype).reshape(shape)
  return out


# --- HF Flax msgpack -----------------------------------------------------------------------------------


def read_flax_msgpack(path: str) -> dict[str, np.ndarray]:
  """HF Flax params -> torch-style names: `kernel` [in, out] becomes `weight` [out, in]; `embedding` and
  norm `scale` become `weight`. This is the inverse of transformers' own torch -> Flax conversion."""
  from flax import serialization
  with open(path, "rb") as f:
    blob = f.read()
  try:
    tree = serialization.msgpack_restore(blob)
  except Exception as e:  # msgpack raises several unrelated types for a damaged file
    raise ValueJaxError(f"cannot decode Flax msgpack ({type(e).__name__}: {e})", where=path) from None
  if isinstance(tree, dict) and set(tree) == {"params"}:
    tree = tree["params"]
  out = {}
  for keys, value in _flatten(tree):
    value = np.asarray(value)
    *head, leaf = keys
    if leaf == "kernel":
      leaf, value = "weight", (value.T if value.ndim == 2 else value)
    elif leaf in ("embedding", "scale"):
      leaf = "weight"
    out[".".join([*head, leaf])] = np.ascontiguousarray(value)
  return out


def _flatten(tree: Any, prefix: tuple[str, ...] = ()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, prefix + (str(k),))
  else:
    yield prefix, tree


# --- torch zip pickles ---------------------------------------------------------------------------------

_TORCH_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_unused) -> np.ndarray:
  size, stride = tuple(size), tuple(stride)
  if 0 in size:
    return np.zeros(size, storage.dtype)
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride))
  return np.array(view)  # own the memory: the storage buffer belongs to the zip reader


def _rebuild_parameter(data, *_unused):
  return data


class _TorchUnpickler(pickle.Unpickler):
  """Rebuilds tensors as numpy arrays; any global outside a small allow-list is refused, so a
  checkpoint cannot run code the way `torch.load(weights_only=False)` would let it."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, big_endian: bool, where: str):
    super().__init__(file)
    self.archive, self.prefix, self.big_endian, self.where = archive, prefix, big_endian, where
    self.storages: dict[str, np.ndarray] = {}

  def find_class(self, module: str, name: str):
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
      return _rebuild_parameter
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch" and name in _TORCH_STORAGES:
      return _StorageType(_TORCH_STORAGES[name])
    raise ValueJaxError(f"checkpoint holds a {module}.{name} object, not just tensors", where=self.where,
                        fix="convert it to safetensors with a trusted torch install, then load the folder")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise ValueJaxError(f"unknown persistent id {pid!r:.80}", where=self.where)
    storage_type, key = pid[1], str(pid[2])
    if key not in self.storages:
      dtype = storage_type.dtype.newbyteorder(">" if self.big_endian else "<")
      raw = self.archive.read(f"{self.prefix}/data/{key}")
      self.storages[key] = np.frombuffer(raw, dtype=dtype).astype(storage_type.dtype, copy=False)
    return self.storages[key]


def read_torch_object(path: str, what: str = "file") -> Any:
  """Whatever a torch zip file (`torch.save`) holds, tensors as numpy arrays, read with a restricted
  unpickler (tensors, lists, tuples, dicts; nothing that runs code)."""
  if not zipfile.is_zipfile(path):
    if what == "checkpoint":
      raise ValueJaxError("legacy (pre-zip) torch checkpoint format", where=path,
                          fix="convert it to safetensors (model.safetensors) with torch, then load the folder")
    raise ValueJaxError("not a torch zip file (torch >= 1.6 torch.save)", where=path)
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise ValueJaxError(f"not a torch {what} (no single data.pkl inside)", where=path)
    prefix = pickles[0][:-len("/data.pkl")]
    order = f"{prefix}/byteorder"
    big = order in archive.namelist() and archive.read(order).strip() == b"big"
    with archive.open(pickles[0]) as f:
      try:
        return _TorchUnpickler(f, archive, prefix, big, path).load()
      except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as e:
        raise ValueJaxError(f"cannot unpickle the {what} ({type(e).__name__}: {e})", where=path) from None


class _Global:
  """A global of torch named by module and name, written into a pickle without importing torch."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args: Any) -> Any:  # pickle wants a reduce function to be callable; this one is torch's
    raise TypeError(f"{self.module}.{self.name} is torch's, not callable here")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_OF = {np.dtype(np.int64): _Global("torch", "LongStorage"),
               np.dtype(np.int32): _Global("torch", "IntStorage"),
               np.dtype(np.float32): _Global("torch", "FloatStorage"),
               np.dtype(np.bool_): _Global("torch", "BoolStorage")}


class _Tensor:
  def __init__(self, array: np.ndarray, key: str):
    self.array, self.key = np.ascontiguousarray(array), key

  def __reduce__(self):
    a = self.array
    stride = tuple(s // a.itemsize for s in a.strides) if a.size else tuple(0 for _ in a.shape)
    return _REBUILD, (_Storage(self), 0, a.shape, stride, False, collections.OrderedDict())


class _Storage:
  def __init__(self, tensor: _Tensor):
    self.tensor = tensor


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler: save_global can be taught torch's names
  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      a = obj.tensor.array
      return ("storage", _STORAGE_OF[a.dtype], obj.tensor.key, "cpu", a.size)
    return None

  def save_global(self, obj, name=None):
    if isinstance(obj, _Global):
      self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
      self.memoize(obj)
      return
    super().save_global(obj, name)

  dispatch = dict(pickle._Pickler.dispatch)
  dispatch[_Global] = save_global


def write_torch_object(path: str, obj: Any) -> None:
  """`obj` (nested lists / tuples / dicts of numpy arrays of int64, int32, float32 or bool) as a torch zip
  file that `torch.load` reads back as tensors, written without torch, atomically."""
  from valuejax.fileio import write_bytes
  import io
  tensors: list[_Tensor] = []

  def wrap(x: Any) -> Any:
    if isinstance(x, np.ndarray):
      if x.dtype not in _STORAGE_OF:
        raise ValueJaxError(f"cannot write a {x.dtype} array as a torch tensor", where=path,
                            fix=f"use one of {', '.join(str(d) for d in _STORAGE_OF)}")
      tensors.append(_Tensor(x, str(len(tensors))))
      return tensors[-1]
    if isinstance(x, (list, tuple)):
      return type(x)(wrap(v) for v in x)
    if isinstance(x, dict):
      return {k: wrap(v) for k, v in x.items()}
    return x

  wrapped = wrap(obj)
  buf = io.BytesIO()
  _TorchPickler(buf, protocol=2).dump(wrapped)
  name = os.path.splitext(os.path.basename(path))[0] or "archive"
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{name}/data.pkl", buf.getvalue())
    z.writestr(f"{name}/byteorder", "little")
    for t in tensors:
      z.writestr(f"{name}/data/{t.key}", t.array.astype(t.array.dtype.newbyteorder("<"), copy=False).tobytes())
    z.writestr(f"{name}/version", "3\n")
  write_bytes(path, out.getvalue())


def read_torch_bin(path: str) -> dict[str, np.ndarray]:
  """A torch zip checkpoint (torch >= 1.6 `torch.save`) read with a restricted unpickler."""
  state = read_torch_object(path, "checkpoint")
  if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
    state = state["state_dict"]
  if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
    raise ValueJaxError("checkpoint is not a flat dict of tensors", where=path,
                        fix="save model.state_dict(), or convert to safetensors")
  return dict(state)


_READERS: dict[str, Callable[[str], dict[str, np.ndarray]]] = {
    "model.safetensors": read_safetensors,
    "flax_model.msgpack": read_flax_msgpack,
    "pytorch_model.bin": read_torch_bin,
}
