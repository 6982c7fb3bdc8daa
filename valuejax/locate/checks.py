"""Input checks shared by the locators (shapes, counts, rates, group names); every failure raises a
`ValueJaxError` naming the argument, what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from valuejax.errors import ValueJaxError


def as_array(x, name: str, ndim: int | None = None, where: str = "valuejax.locate") -> np.ndarray:
  try:
    a = np.asarray(x)
  except Exception as e:  # ragged lists and the like
    raise ValueJaxError(f"`{name}` is not an array ({e})", where, "pass a numpy array") from None
  if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
    raise ValueJaxError(f"`{name}` has non-numeric dtype {a.dtype}", where, "pass a numeric numpy array")
  if ndim is not None and a.ndim != ndim:
    raise ValueJaxError(f"`{name}` has shape {a.shape}, expected {ndim} dimensions", where,
                        "check which statistics array was passed")
  return a


def finite(a: np.ndarray, name: str, where: str) -> np.ndarray:
  if not np.all(np.isfinite(a)):
    bad = np.argwhere(~np.isfinite(a))[0].tolist()
    raise ValueJaxError(f"`{name}` has a non-finite value at {bad}", where,
                        "recompute the statistics; NaN/inf means a broken reduction")
  return a


def non_negative(a: np.ndarray, name: str, where: str) -> np.ndarray:
  finite(a, name, where)
  if np.any(a < 0):
    bad = np.argwhere(a < 0)[0].tolist()
    raise ValueJaxError(f"`{name}` has a negative value {a[tuple(bad)]} at {bad}", where,
                        "counts and probabilities are never negative; check the statistics")
  return a


def integral(a: np.ndarray, name: str, where: str) -> np.ndarray:
  if not np.issubdtype(a.dtype, np.integer):
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
      raise ValueJaxError(f"`{name}` holds non-integer values", where, "pass the raw integer counts")
  return a


def rate(x: float, name: str, where: str) -> float:
  try:
    x = float(x)
  except (TypeError, ValueError):
    raise ValueJaxError(f"`{name}` = {x!r} is not a number", where, "pass a float in (0, 1]") from None
  if not (0.0 < x <= 1.0):
    raise ValueJaxError(f"`{name}` = {x} is outside (0, 1]", where, "pass a fraction such as 0.95")
  return x


def group_names(names: Sequence[str] | None, count: int, where: str, default_prefix: str = "group"
                ) -> tuple[str, ...]:
  if names is None:
    return tuple(f"{default_prefix}{k}" for k in range(count))
  if isinstance(names, str):
    raise ValueJaxError("`group_names` is a single string", where, "pass a list of names, one per group")
  names = tuple(names)
  if len(names) != count:
    raise ValueJaxError(f"`group_names` has {len(names)} names for {count} groups", where,
                        "give exactly one name per group, in the order of the statistics")
  for n in names:
    if not isinstance(n, str) or not n:
      raise ValueJaxError(f"group name {n!r} is not a non-empty string", where, "name groups with strings")
  if len(set(names)) != len(names):
    raise ValueJaxError(f"`group_names` has duplicates: {list(names)}", where, "make every name unique")
  return names


def group_index(names: Sequence[str], name: str, where: str) -> int:
  try:
    return list(names).index(name)
  except ValueError:
    raise ValueJaxError(f"unknown group {name!r}", where, f"use one of {list(names)}") from None
