"""Neuron sets: which neurons of which layers belong to each value group, with their scores; the
output of every locator and the input of every edit, saved as JSON or npz.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from valuejax import fileio as vio
from valuejax.errors import ValueJaxError
from valuejax.locate import checks

FORMAT = "valuejax.neuron_set"
VERSION = 1


@dataclasses.dataclass(frozen=True, eq=False)
class GroupNeurons:
  """One group's neurons; build with `GroupNeurons.create` (sorts, checks) rather than directly."""
  num_layers: int
  num_neurons: int
  layer: np.ndarray  # int64 [n], sorted together with `index`
  index: np.ndarray  # int64 [n]
  scores: Mapping[str, np.ndarray]  # name -> float64 [n]

  @classmethod
  def create(cls, layer, index, num_layers: int, num_neurons: int,
             scores: Mapping[str, Any] | None = None) -> "GroupNeurons":
    where = "GroupNeurons"
    if int(num_layers) < 1 or int(num_neurons) < 1:
      raise ValueJaxError(f"shape [{num_layers}, {num_neurons}] is empty", where,
                          "pass the model's number of layers and MLP neurons")
    layer = checks.as_array(layer, "layer", 1, where)
    index = checks.as_array(index, "index", 1, where)
    if layer.shape != index.shape:
      raise ValueJaxError(f"`layer` {layer.shape} and `index` {index.shape} differ in length", where,
                          "pass one layer and one index per neuron")
    for name, a, hi in (("layer", layer, num_layers), ("index", index, num_neurons)):
      checks.integral(a, name, where)
      if a.size and (a.min() < 0 or a.max() >= hi):
        raise ValueJaxError(f"`{name}` has values outside [0, {hi})", where,
                            "check the model shape the neurons were located on")
    layer, index = layer.astype(np.int64), index.astype(np.int64)
    flat = layer * int(num_neurons) + index
    order = np.argsort(flat, kind="stable")
    if np.any(np.diff(flat[order]) == 0):
      raise ValueJaxError("a neuron is listed twice", where, "pass each (layer, index) once")
    cols = {}
    for name, v in (scores or {}).items():
      v = checks.as_array(v, f"scores[{name!r}]", 1, where).astype(np.float64)
      if v.shape != layer.shape:
        raise ValueJaxError(f"score {name!r} has {v.size} values for {layer.size} neurons", where,
                            "pass one score per neuron")
      cols[str(name)] = v[order]
    return cls(int(num_layers), int(num_neurons), layer[order], index[order], cols)

  @classmethod
  def from_flat(cls, flat, num_layers: int, num_neurons: int,
                scores: Mapping[str, Any] | None = None) -> "GroupNeurons":
    flat = np.asarray(flat, np.int64)
    return cls.create(flat // num_neurons, flat % num_neurons, num_layers, num_neurons, scores)

  @classmethod
  def from_mask(cls, mask, scores: Mapping[str, Any] | None = None) -> "GroupNeurons":
    """Neurons where `mask` [L, F] is nonzero; `scores` may be [L, F] arrays, read at those neurons."""
    mask = checks.as_array(mask, "mask", 2, "GroupNeurons.from_mask")
    layer, index = np.nonzero(mask)
    cols = {k: np.asarray(v, np.float64)[layer, index] for k, v in (scores or {}).items()}
    return cls.create(layer, index, mask.shape[0], mask.shape[1], cols)

  @classmethod
  def from_per_layer(cls, per_layer: Iterable[Iterable[int]], num_neurons: int,
                     scores: Mapping[str, Iterable[Iterable[float]]] | None = None) -> "GroupNeurons":
    """From the papers' mask format `[layer] -> neuron indices` (scores laid out the same way)."""
    per_layer = [np.asarray(list(x), np.int64) for x in per_layer]
    layer = np.concatenate([np.full(len(x), l, np.int64) for l, x in enumerate(per_layer)] or [[]])
    index = np.concatenate(per_layer or [[]]).astype(np.int64)
    cols = {k: np.concatenate([np.asarray(list(x), np.float64) for x in v] or [[]])
            for k, v in (scores or {}).items()}
    return cls.create(layer, index, len(per_layer), num_neurons, cols)

  def __len__(self) -> int:
    return int(self.layer.size)

  @property
  def flat(self) -> np.ndarray:
    """Layer-major flat ids `layer * num_neurons + index`, ascending."""
    return self.layer * self.num_neurons + self.index

  def per_layer(self) -> list[np.ndarray]:
    """`[layer] -> sorted neuron indices`, the released masks' format."""
    cuts = np.searchsorted(self.layer, np.arange(self.num_layers + 1))
    return [self.index[cuts[l]:cuts[l + 1]] for l in range(self.num_layers)]

  def scores_per_layer(self, name: str) -> list[np.ndarray]:
    col = self.score(name)
    cuts = np.searchsorted(self.layer, np.arange(self.num_layers + 1))
    return [col[cuts[l]:cuts[l + 1]] for l in range(self.num_layers)]

  def score(self, name: str) -> np.ndarray:
    if name not in self.scores:
      raise ValueJaxError(f"no score {name!r}", "GroupNeurons.score", f"use one of {sorted(self.scores)}")
    return self.scores[name]

  def counts_per_layer(self) -> np.ndarray:
    return np.bincount(self.layer, minlength=self.num_layers).astype(np.int64)

  def mask(self, num_layers: int | None = None, num_neurons: int | None = None, dtype=bool) -> np.ndarray:
    """`[L, F]` array: 1/True at this group's neurons (the shape `NeuronEdit` fields take)."""
    self._check_shape(num_layers, num_neurons, "GroupNeurons.mask")
    m = np.zeros((self.num_layers, self.num_neurons), dtype)
    m[self.layer, self.index] = 1
    return m

  def score_map(self, name: str, fill: float = 0.0) -> np.ndarray:
    """`[L, F]` float array holding score `name` at this group's neurons, `fill` elsewhere."""
    m = np.full((self.num_layers, self.num_neurons), fill, np.float64)
    m[self.layer, self.index] = self.score(name)
    return m

  def restrict_layers(self, layers: Iterable[int]) -> "GroupNeurons":
    """Only the neurons in `layers` (e.g. the decision layers of a `layer_split`)."""
    keep = np.isin(self.layer, np.asarray(list(layers), np.int64))
    return self._take(keep)

  def _take(self, keep: np.ndarray) -> "GroupNeurons":
    return GroupNeurons(self.num_layers, self.num_neurons, self.layer[keep], self.index[keep],
                        {k: v[keep] for k, v in self.scores.items()})

  def _check_shape(self, num_layers, num_neurons, where: str) -> None:
    if (num_layers is not None and int(num_layers) != self.num_layers) or (
        num_neurons is not None and int(num_neurons) != self.num_neurons):
      raise ValueJaxError(
          f"asked for shape [{num_layers}, {num_neurons}] but the neurons were located on "
          f"[{self.num_layers}, {self.num_neurons}]", where, "use neuron sets located on the same model")

  def _combine(self, other: "GroupNeurons", op: Callable, name: str) -> "GroupNeurons":
    if not isinstance(other, GroupNeurons):
      raise ValueJaxError(f"cannot take the {name} with a {type(other).__name__}", "GroupNeurons",
                          "combine GroupNeurons with GroupNeurons (ns[group])")
    other._check_shape(self.num_layers, self.num_neurons, f"GroupNeurons.{name}")
    a, b = self.flat, other.flat
    flat = op(a, b)
    cols = {}
    # Left-biased: a neuron's value comes from the left operand whenever the left has it.
    ia, ib = np.searchsorted(a, flat), np.searchsorted(b, flat)
    in_a, in_b = np.isin(flat, a), np.isin(flat, b)
    for col in list(self.scores) + [c for c in other.scores if c not in self.scores]:
      v = np.full(flat.size, np.nan)
      if col in other.scores:
        v[in_b] = other.scores[col][ib[in_b]]
      if col in self.scores:
        v[in_a] = self.scores[col][ia[in_a]]
      cols[col] = v
    return GroupNeurons(self.num_layers, self.num_neurons, flat // self.num_neurons,
                        flat % self.num_neurons, cols)

  def union(self, other: "GroupNeurons") -> "GroupNeurons":
    return self._combine(other, np.union1d, "union")

  def intersection(self, other: "GroupNeurons") -> "GroupNeurons":
    return self._combine(other, np.intersect1d, "intersection")

  def difference(self, other: "GroupNeurons") -> "GroupNeurons":
    return self._combine(other, np.setdiff1d, "difference")

  __or__, __and__, __sub__ = union, intersection, difference

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, GroupNeurons):
      return NotImplemented
    return (self.num_layers == other.num_layers and self.num_neurons == other.num_neurons
            and np.array_equal(self.layer, other.layer) and np.array_equal(self.index, other.index)
            and list(self.scores) == list(other.scores)
            and all(np.array_equal(v, other.scores[k], equal_nan=True) for k, v in self.scores.items()))

  __hash__ = None  # mutable arrays inside

  def random_like(self, seed: int | np.random.Generator) -> "GroupNeurons":
    """A random control: uniformly drawn neurons with exactly this group's per-layer counts, no scores."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    counts = self.counts_per_layer()
    layer = np.repeat(np.arange(self.num_layers), counts)
    index = np.concatenate([rng.choice(self.num_neurons, c, replace=False) for c in counts] or [[]])
    return GroupNeurons.create(layer, index, self.num_layers, self.num_neurons)


@dataclasses.dataclass(eq=False)
class NeuronSet:
  """Named groups of neurons of one model shape, plus where they came from.

  Layout. `GroupNeurons` holds one group's neurons as parallel arrays sorted by (layer, index), with no
  duplicates: `layer` and `index` (int64) and named float64 score columns (`delta`, `p`, `v95`,
  `entropy`, ...). `NeuronSet` maps group names (in a fixed order) to `GroupNeurons` of one model shape
  `[num_layers, num_neurons]`, plus a provenance dict (model, data, method, parameters, statistics path).

  Set algebra (`|`, `&`, `-`, or `union`/`intersection`/`difference`) works between groups of one set and
  between sets; scores follow one left-biased rule: a neuron's column value comes from the left operand
  if the left holds that neuron and column, else from the right, else NaN.
  """
  groups: dict[str, GroupNeurons]
  provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    where = "NeuronSet"
    self.groups = dict(self.groups)
    if not self.groups:
      raise ValueJaxError("a NeuronSet needs at least one group", where, "pass {name: GroupNeurons}")
    checks.group_names(list(self.groups), len(self.groups), where)
    shapes = {(g.num_layers, g.num_neurons) for g in self.groups.values()}
    if len(shapes) != 1:
      raise ValueJaxError(f"groups come from different model shapes {sorted(shapes)}", where,
                          "combine only groups located on the same model")
    self.provenance = dict(self.provenance)

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(self.groups)

  @property
  def num_layers(self) -> int:
    return next(iter(self.groups.values())).num_layers

  @property
  def num_neurons(self) -> int:
    return next(iter(self.groups.values())).num_neurons

  def __getitem__(self, group: str) -> GroupNeurons:
    if group not in self.groups:
      raise ValueJaxError(f"unknown group {group!r}", "NeuronSet", f"use one of {list(self.groups)}")
    return self.groups[group]

  def __contains__(self, group: str) -> bool:
    return group in self.groups

  def indices(self, group: str) -> list[np.ndarray]:
    """`[layer] -> sorted neuron indices` of `group`."""
    return self[group].per_layer()

  def mask(self, group: str, num_layers: int | None = None, num_neurons: int | None = None,
           dtype=bool) -> np.ndarray:
    """`[num_layers, num_neurons]` array of `dtype`, 1/True at the group's neurons."""
    return self[group].mask(num_layers, num_neurons, dtype)

  def counts_per_layer(self, group: str) -> np.ndarray:
    return self[group].counts_per_layer()

  def rename(self, mapping: Mapping[str, str]) -> "NeuronSet":
    for old in mapping:
      if old not in self.groups:
        raise ValueJaxError(f"unknown group {old!r}", "NeuronSet.rename", f"use one of {list(self.groups)}")
    return NeuronSet({mapping.get(k, k): v for k, v in self.groups.items()}, self.provenance)

  def with_groups(self, groups: Mapping[str, GroupNeurons], **provenance: Any) -> "NeuronSet":
    """A copy with groups added or replaced (e.g. `unique_support = ns["s"] - ns["c"]`)."""
    prov = dict(self.provenance)
    prov.update(provenance)
    return NeuronSet({**self.groups, **dict(groups)}, prov)

  def _groupwise(self, other: "NeuronSet", name: str) -> "NeuronSet":
    if not isinstance(other, NeuronSet):
      raise ValueJaxError(f"cannot take the {name} with a {type(other).__name__}", "NeuronSet",
                          "combine a NeuronSet with a NeuronSet")
    common = [g for g in self.groups if g in other.groups]
    if not common:
      raise ValueJaxError(f"no group name in common between {list(self.groups)} and {list(other.groups)}",
                          f"NeuronSet.{name}", "rename groups first (NeuronSet.rename) so they match")
    groups = {g: getattr(self.groups[g], name)(other.groups[g]) for g in common}
    return NeuronSet(groups, {"method": name, "left": self.provenance, "right": other.provenance})

  def union(self, other: "NeuronSet") -> "NeuronSet":
    """Group-wise union over the groups both sets share."""
    return self._groupwise(other, "union")

  def intersection(self, other: "NeuronSet") -> "NeuronSet":
    return self._groupwise(other, "intersection")

  def difference(self, other: "NeuronSet") -> "NeuronSet":
    return self._groupwise(other, "difference")

  __or__, __and__, __sub__ = union, intersection, difference

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, NeuronSet):
      return NotImplemented
    return (list(self.groups) == list(other.groups) and _canon(self.provenance) == _canon(other.provenance)
            and all(self.groups[k] == other.groups[k] for k in self.groups))

  __hash__ = None

  def summary(self) -> str:
    lines = [f"NeuronSet [{self.num_layers} layers x {self.num_neurons} neurons], "
             f"method={self.provenance.get('method', '?')}"]
    for name, g in self.groups.items():
      lines.append(f"  {name}: {len(g)} neurons, per layer {g.counts_per_layer().tolist()}")
    return "\n".join(lines)

  # -- files --------------------------------------------------------------------------------------

  def to_json_dict(self) -> dict[str, Any]:
    groups = {}
    for name, g in self.groups.items():
      groups[name] = {
          "count": len(g),
          "indices": [x.tolist() for x in g.per_layer()],
          "scores": {k: [[_enc_float(v) for v in x] for x in g.scores_per_layer(k)] for k in g.scores},
      }
    return {"format": FORMAT, "version": VERSION, "num_layers": self.num_layers,
            "num_neurons": self.num_neurons, "provenance": _canon(self.provenance), "groups": groups}

  def save_json(self, path: str) -> None:
    """Human-readable: per group, `indices[layer]` lists and `scores[name][layer]` aligned with them."""
    vio.write_text(path, json.dumps(self.to_json_dict(), indent=1, ensure_ascii=False, allow_nan=False)
                   + "\n")

  def save_npz(self, path: str) -> None:
    """Compact: per group `g{i}/layer`, `g{i}/index`, `g{i}/score/{name}` arrays plus a JSON header."""
    header = {"format": FORMAT, "version": VERSION, "num_layers": self.num_layers,
              "num_neurons": self.num_neurons, "provenance": _canon(self.provenance),
              "groups": [{"name": n, "scores": list(g.scores)} for n, g in self.groups.items()]}
    arrays = {"header": np.frombuffer(json.dumps(header, allow_nan=False).encode("utf-8"), np.uint8)}
    for i, g in enumerate(self.groups.values()):
      arrays[f"g{i}/layer"], arrays[f"g{i}/index"] = g.layer, g.index
      for k, v in g.scores.items():
        arrays[f"g{i}/score/{k}"] = v
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    vio.write_bytes(path, buf.getvalue())

  def save(self, path: str) -> None:
    """By extension: `.json` or `.npz`."""
    if str(path).endswith(".json"):
      self.save_json(path)
    elif str(path).endswith(".npz"):
      self.save_npz(path)
    else:
      raise ValueJaxError(f"unknown neuron-set file type {path!r}", "NeuronSet.save",
                          "end the name in .json or .npz")

  @classmethod
  def load(cls, path: str) -> "NeuronSet":
    where = str(path)
    try:
      if where.endswith(".npz"):
        return cls._load_npz(path)
      with open(path, encoding="utf-8") as f:
        d = json.load(f)
      return cls.from_json_dict(d, where)
    except FileNotFoundError:
      raise ValueJaxError("no such file", where, "check the path of the neuron set") from None
    except ValueJaxError as e:
      if e.where == where:
        raise
      # A check deep inside (an index out of range, a bad shape) names the file it was reading.
      raise ValueJaxError(e.what + (f" ({e.where})" if e.where else ""), where, e.fix) from None
    except (json.JSONDecodeError, ValueError, KeyError) as e:
      raise ValueJaxError(f"not a readable neuron-set file ({e})", where,
                          "write it with NeuronSet.save_json / save_npz") from None

  @classmethod
  def from_lape_masks(cls, path: str, group_names: Sequence[str], num_neurons: int, **provenance: Any
                      ) -> "NeuronSet":
    """The LAPE / ValueExploration mask layout (`activation_mask`, `value_neuron_*`): a `torch.save`d list
    over groups of per-layer 1-D index tensors, read without torch. The file names neither the groups nor
    the layer width, so both are given."""
    from valuejax.models.checkpoint_io import read_torch_object
    obj = read_torch_object(path)
    if not isinstance(obj, (list, tuple)) or len(obj) != len(group_names):
      got = f"a list of {len(obj)}" if isinstance(obj, (list, tuple)) else type(obj).__name__
      raise ValueJaxError(f"expected a list over {len(group_names)} groups ({', '.join(group_names)}), found {got}",
                          path, "give the group names in the order the masks were saved")
    groups = {}
    for name, per_layer in zip(group_names, obj):
      if not isinstance(per_layer, (list, tuple)) or not all(isinstance(x, np.ndarray) for x in per_layer):
        raise ValueJaxError(f"group {name!r} is not a list of per-layer index tensors", path)
      idx = [np.asarray(x).reshape(-1).astype(np.int64) for x in per_layer]
      bad = [(layer, int(x.max())) for layer, x in enumerate(idx) if x.size and (x.min() < 0 or x.max() >= num_neurons)]
      if bad:
        raise ValueJaxError(f"group {name!r}, layer {bad[0][0]}: neuron index {bad[0][1]} is outside "
                            f"[0, {num_neurons})",
                            path, "pass the model's intermediate size as num_neurons")
      groups[name] = GroupNeurons.from_per_layer(idx, num_neurons)
    return cls(groups, {"method": "lape_masks", "source": os.path.abspath(path), **provenance})

  def to_dataframe(self):
    """One row per (group, neuron): layer, index and every score column (pandas, an optional extra)."""
    from valuejax.fileio import pandas
    frames = []
    for name, g in self.groups.items():
      cols = {"group": [name] * len(g), "layer": g.layer, "neuron": g.index}
      cols.update({k: np.asarray(v) for k, v in g.scores.items()})
      frames.append(pandas().DataFrame(cols))
    return pandas().concat(frames, ignore_index=True)

  def to_lape_masks(self, path: str) -> None:
    """This set in the LAPE mask layout: `torch.load(path)` gives a list over groups (in `names` order) of
    per-layer int64 index tensors. Written without torch."""
    from valuejax.models.checkpoint_io import write_torch_object
    write_torch_object(path, [[np.asarray(x, np.int64) for x in self.indices(g)] for g in self.names])

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any], where: str = "NeuronSet") -> "NeuronSet":
    _check_header(d, where)
    groups = {}
    for name, g in d["groups"].items():
      scores = {k: [[_dec_float(v) for v in x] for x in per] for k, per in g.get("scores", {}).items()}
      groups[name] = GroupNeurons.from_per_layer(g["indices"], d["num_neurons"], scores)
      if groups[name].num_layers != d["num_layers"]:
        raise ValueJaxError(f"group {name!r} lists {groups[name].num_layers} layers, header says "
                            f"{d['num_layers']}", where, "rewrite the file with NeuronSet.save_json")
    return cls(groups, d.get("provenance", {}))

  @classmethod
  def _load_npz(cls, path: str) -> "NeuronSet":
    with np.load(path, allow_pickle=False) as z:
      header = json.loads(z["header"].tobytes().decode("utf-8"))
      _check_header(header, str(path))
      groups = {}
      for i, g in enumerate(header["groups"]):
        groups[g["name"]] = GroupNeurons.create(
            z[f"g{i}/layer"], z[f"g{i}/index"], header["num_layers"], header["num_neurons"],
            {k: z[f"g{i}/score/{k}"] for k in g["scores"]})
    return cls(groups, header.get("provenance", {}))


def _check_header(d: Mapping[str, Any], where: str) -> None:
  if d.get("format") != FORMAT:
    raise ValueJaxError(f"format is {d.get('format')!r}, not {FORMAT!r}", where,
                        "load a file written by NeuronSet.save_json / save_npz")
  if d.get("version") != VERSION:
    raise ValueJaxError(f"format version {d.get('version')} is not {VERSION}", where,
                        "rewrite the file with this version of valuejax")


# Strict JSON has no NaN/inf; scores can hold them (filtered neurons have entropy +inf, a union fills
# missing scores with NaN), so they travel as strings.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _enc_float(v: float) -> float | str:
  v = float(v)
  if math.isnan(v):
    return "NaN"
  if math.isinf(v):
    return "Infinity" if v > 0 else "-Infinity"
  return v


def _dec_float(v: Any) -> float:
  return _NONFINITE[v] if isinstance(v, str) else float(v)


def _canon(obj: Any) -> Any:
  """Provenance as plain JSON values, so a saved-and-loaded set compares equal to the original."""
  try:
    return json.loads(json.dumps(obj, default=_json_default, allow_nan=False))
  except (TypeError, ValueError) as e:
    raise ValueJaxError(f"provenance is not JSON-serialisable ({e})", "NeuronSet.provenance",
                        "keep provenance to strings, numbers, lists and dicts") from None


def _json_default(o: Any) -> Any:
  if isinstance(o, np.generic):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  raise TypeError(f"{type(o).__name__} is not JSON-serialisable")
