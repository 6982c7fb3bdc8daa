"""The data model: a value taxonomy (values, opposing aspects) and the typed items written against it.

Every framework (Schwartz, C-voice, a user's own) is an instance of these frozen dataclasses, no subclassing.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping, TypeVar

K = TypeVar("K")
V = TypeVar("V")

SPLITS = ("locate", "eval")
REVERSED_SUFFIX = "_reversed"


class FrozenMap(Mapping[K, V]):
  """A read-only, hashable mapping, so items holding per-language texts stay frozen and hashable."""

  __slots__ = ("_d", "_h")

  def __init__(self, items: Mapping[K, V] | None = None):
    self._d = dict(items or {})
    self._h: int | None = None

  def __getitem__(self, key: K) -> V:
    return self._d[key]

  def __iter__(self) -> Iterator[K]:
    return iter(self._d)

  def __len__(self) -> int:
    return len(self._d)

  def __hash__(self) -> int:
    if self._h is None:
      self._h = hash(tuple(self._d.items()))
    return self._h

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Mapping) and dict(self._d) == dict(other)

  def __repr__(self) -> str:
    return f"FrozenMap({self._d!r})"


@dataclasses.dataclass(frozen=True)
class Value:
  """One basic value. `names`/`definitions` are per language; `anti_value` names what opposes it."""
  id: str
  name: str
  definition: str
  names: FrozenMap[str, str] = FrozenMap()
  definitions: FrozenMap[str, str] = FrozenMap()
  anti_value: FrozenMap[str, str] | None = None

  def label(self, lang: str = "en") -> str:
    return self.names.get(lang) or self.name


@dataclasses.dataclass(frozen=True)
class Aspect:
  """One pole of a bipolar dimension (e.g. Conservation), grouping some basic values."""
  id: str
  name: str
  definition: str
  values: tuple[str, ...]
  dimension: str


@dataclasses.dataclass(frozen=True)
class Dimension:
  """A bipolar dimension: exactly two aspects that oppose each other."""
  id: str
  name: str
  definition: str
  aspects: tuple[Aspect, Aspect]


@dataclasses.dataclass(frozen=True)
class Taxonomy:
  """A value framework: its values and (optionally) its opposing aspect pairs."""
  framework: str
  name: str
  values: tuple[Value, ...]
  dimensions: tuple[Dimension, ...] = ()
  source: str = ""
  files: FrozenMap[str, str] = FrozenMap()

  @property
  def aspects(self) -> tuple[Aspect, ...]:
    return tuple(a for d in self.dimensions for a in d.aspects)

  @property
  def value_ids(self) -> tuple[str, ...]:
    return tuple(v.id for v in self.values)

  @property
  def aspect_ids(self) -> tuple[str, ...]:
    return tuple(a.id for a in self.aspects)

  def value(self, value_id: str) -> Value:
    for v in self.values:
      if v.id == value_id:
        return v
    raise KeyError(value_id)

  def aspect(self, aspect_id: str) -> Aspect:
    for a in self.aspects:
      if a.id == aspect_id:
        return a
    raise KeyError(aspect_id)

  def dimension(self, dimension_id: str) -> Dimension:
    for d in self.dimensions:
      if d.id == dimension_id:
        return d
    raise KeyError(dimension_id)

  def opposite(self, aspect_id: str) -> str:
    a = self.aspect(aspect_id)
    first, second = self.dimension(a.dimension).aspects
    return second.id if first.id == aspect_id else first.id

  def is_opposing_pair(self, a: str, b: str) -> bool:
    return a in self.aspect_ids and b in self.aspect_ids and self.opposite(a) == b

  def value_by_label(self, label: str) -> Value:
    """Finds a value by id or by any of its names in any language (e.g. '公正' or 'Justice')."""
    wanted = label.strip()
    for v in self.values:
      if wanted == v.id or wanted == v.name or wanted in v.names.values():
        return v
    raise KeyError(label)

  def description_groups(self) -> tuple[str, ...]:
    """Legal description labels: every aspect and every value, each also with its reversal."""
    base = dict.fromkeys(self.aspect_ids + self.value_ids)
    return tuple(g for b in base for g in (b, b + REVERSED_SUFFIX))


@dataclasses.dataclass(frozen=True)
class ValueDescription:
  """A first-person statement holding (or, for a `_reversed` group, rejecting) an aspect or value."""
  id: str
  group: str
  text: str
  lang: str = "en"

  @property
  def reversed(self) -> bool:
    return self.group.endswith(REVERSED_SUFFIX)

  @property
  def target(self) -> str:
    return self.group[:-len(REVERSED_SUFFIX)] if self.reversed else self.group


@dataclasses.dataclass(frozen=True)
class Situation:
  """A real-world context and open question, with one action per aspect of a bipolar dimension."""
  id: str
  dimension: str
  split: str
  situation: str
  question: str
  actions: FrozenMap[str, str]
  lang: str = "en"


@dataclasses.dataclass(frozen=True)
class Portrait:
  """A PVQ-style portrait of a person, rated on how much the respondent is like them."""
  id: str
  value: str
  text: str
  lang: str = "en"


@dataclasses.dataclass(frozen=True)
class DilemmaText:
  context: str
  aligned: str
  violating: str


@dataclasses.dataclass(frozen=True)
class Dilemma:
  """A value dilemma with a value-aligned and a value-violating action, in one or more languages."""
  id: str
  value: str
  split: str
  anti_value: FrozenMap[str, str]
  texts: FrozenMap[str, DilemmaText]
  conflict_type: str | None = None

  @property
  def zh(self) -> DilemmaText | None:
    return self.texts.get("zh")

  @property
  def en(self) -> DilemmaText | None:
    return self.texts.get("en")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A taxonomy plus every item file found beside it."""
  taxonomy: Taxonomy
  root: str
  descriptions: tuple[ValueDescription, ...] = ()
  situations: tuple[Situation, ...] = ()
  portraits: tuple[Portrait, ...] = ()
  dilemmas: tuple[Dilemma, ...] = ()

  def split(self, name: str) -> "Dataset":
    """The same dataset with situations and dilemmas restricted to one split."""
    if name not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
    return dataclasses.replace(
        self,
        situations=tuple(s for s in self.situations if s.split == name),
        dilemmas=tuple(d for d in self.dilemmas if d.split == name))

  def descriptions_by_group(self) -> dict[str, tuple[ValueDescription, ...]]:
    out: dict[str, list[ValueDescription]] = {}
    for d in self.descriptions:
      out.setdefault(d.group, []).append(d)
    return {k: tuple(v) for k, v in out.items()}
