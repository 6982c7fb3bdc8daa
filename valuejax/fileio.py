"""Atomic file output: a reader never sees a half-written file, a crash leaves the old file or none. A file that
already holds the bytes is left as it is, so rewriting an unchanged output writes nothing (a finished run
reread from read-only media)."""

import contextlib
import json
import os
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` only if the block succeeds."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  os.close(fd)
  try:
    yield tmp
    with open(tmp, "rb") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  if _holds(path, data):
    return
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def _holds(path: str | os.PathLike, data: bytes) -> bool:
  """Whether the file at `path` already holds exactly `data`."""
  try:
    if not os.path.isfile(path) or os.path.getsize(path) != len(data):
      return False
    with open(path, "rb") as f:
      return f.read() == data
  except OSError:
    return False


def write_text(path: str | os.PathLike, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
  write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary directory beside `path`; it replaces `path` only if the block succeeds."""
  import shutil
  path = os.fspath(path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    yield tmp
    if os.path.exists(path):
      old = tmp + ".old"
      os.replace(path, old)
      os.replace(tmp, path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def pandas():
  """pandas, an optional extra (`pip install valuejax[pandas]`), imported when a table is asked for."""
  try:
    import pandas as pd
  except ImportError:
    from valuejax.errors import ValueJaxError
    raise ValueJaxError("pandas is not installed", "to_dataframe()",
                        "pip install 'valuejax[pandas]' (or pandas)") from None
  return pd
