"""Registries: methods, locator rules, edit kinds and metrics found by the name a config gives.

A name is either registered (`@METRICS.register("pvq")` in the module that defines it) or written as
`package.module:name`, which imports the module first, so that a user's own method, rule, edit or metric
registers itself from their own code without touching valuejax (`--config.intervene.metric=mylab.metrics:calm`).
"""

from __future__ import annotations

import importlib
from typing import Any, Iterator

from valuejax.errors import ValueJaxError


class Registry:
  """Objects of one kind by name; `get` explains an unknown name with the names it knows."""

  def __init__(self, kind: str, key: str, builtin: str | None = None, instances: bool = False):
    self.kind, self.key = kind, key  # key: the config entry that selects one (for error messages)
    self._instances = instances  # a class found by module:name is instantiated (registries of objects)
    self._builtin = builtin  # the package whose modules register the shipped objects, imported on first use
    self._items: dict[str, Any] = {}

  def register(self, name: str, obj: Any = None) -> Any:
    """`REGISTRY.register("name", obj)`, or `@REGISTRY.register("name")` above a class or function."""
    def add(o: Any) -> Any:
      item = o() if self._instances and isinstance(o, type) else o
      old = self._items.get(name)
      if old is not None and old is not item and _where(old) != _where(item):
        raise ValueJaxError(f"two {self.kind}s are registered as {name!r}", getattr(o, "__module__", None),
                            "give one of them another name")
      self._items.setdefault(name, item)
      return o
    return add if obj is None else add(obj)

  def _load_builtin(self) -> None:
    if self._builtin is not None:
      importlib.import_module(self._builtin)

  def names(self) -> list[str]:
    self._load_builtin()
    return sorted(self._items)

  def __contains__(self, name: str) -> bool:
    try:
      self.get(name)
    except ValueJaxError:
      return False
    return True

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def get(self, name: str) -> Any:
    self._load_builtin()
    if not isinstance(name, str) or not name:
      raise ValueJaxError(f"{self.key} = {name!r} names no {self.kind}", f"--config.{self.key}",
                          f"use one of {', '.join(self.names())}, or module:name of your own")
    if name in self._items:
      return self._items[name]
    if ":" in name:
      module, _, attr = name.partition(":")
      try:
        mod = importlib.import_module(module)
      except ImportError as e:
        raise ValueJaxError(f"cannot import module {module!r} for {self.key} = {name!r}: {e}",
                            f"--config.{self.key}", "put the module on PYTHONPATH (or install it)") from None
      if name in self._items:  # the module registered itself under its full name
        return self._items[name]
      if attr in self._items:
        return self._items[attr]
      if hasattr(mod, attr):
        self.register(name, getattr(mod, attr))
        return self._items[name]
      raise ValueJaxError(f"module {module!r} defines no {self.kind} {attr!r}", f"--config.{self.key}",
                          f"define {attr} there or register it with valuejax's {self.kind} registry")
    raise ValueJaxError(f"unknown {self.kind} {name!r}", f"--config.{self.key}",
                        f"use one of {', '.join(self.names())}, or module:name of your own")


def _where(obj: Any) -> tuple[str, str]:
  """Where an object was defined: the same definition imported twice (a module run as a script and imported)
  registers twice without being a clash."""
  o = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
  return getattr(o, "__module__", ""), getattr(o, "__qualname__", "")
