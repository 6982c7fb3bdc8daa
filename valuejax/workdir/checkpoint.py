"""Statistics checkpoints with orbax: the record stage's whole state (sums, batches done, texts) at once.

Orbax writes each step into a temporary folder and renames it when complete, so a run killed at any
moment resumes from the last complete step, counting nothing twice. Each step also stores a sha256 of every
array it holds: a step whose bytes changed on disk is never resumed (the newest intact one is, with a
warning), and a sum that is not finite is never resumed either. A step that cannot be written (a full disk)
leaves no temporary folder behind, and a full disk or a permission error is one paragraph for the user.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging as pylogging
import os
import re
import shutil
import signal
import threading
from typing import Any

from absl import logging
import numpy as np
import orbax.checkpoint as ocp

from valuejax.errors import ValueJaxError

# Arrays of these kinds go to orbax's array store; strings and Python values travel in the JSON item.
_NUMERIC = "biuf"
_ARRAY = "__ndarray__"
# Orbax writes a step into `<step>.orbax-checkpoint-tmp...` and renames it when the step is complete.
_TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Write failures the user fixes (space, quota, permissions, read-only media): one paragraph, not a traceback.
USER_OS_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


class StatsCheckpointer:
  """Saves and restores a flat `{name: array or JSON value}` state under `directory/<batches_done>`."""

  def __init__(self, directory: str, keep: int, fingerprint: str):
    self.directory = os.path.abspath(directory)
    self.fingerprint = fingerprint
    self._options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                                 create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: dict[str, Any]) -> None:
    if step in self._manager.all_steps():
      return
    arrays, values = _split(state)
    meta = {"fingerprint": self.fingerprint, "values": values, "checksums": _checksums(arrays)}
    # Ctrl-C waits until the step is written: an interrupt inside orbax's writer would surface as its error
    # log, not as one clean line (a kill -9 still can land here; the step is then never published).
    try:
      with _sigint_deferred(), _quiet_orbax_errors():
        self._manager.save(step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                                         meta=ocp.args.JsonSave(meta)))
        self._manager.wait_until_finished()
    except Exception as e:
      # The step was never published; its temporary folder goes too, so the folder holds only complete steps.
      self._remove_unfinished()
      code = _os_error_code(e)
      if code not in USER_OS_ERRORS:
        raise
      last = max((s for s in self._manager.all_steps() if s < step), default=None)
      resume = (f"it resumes after batch {last}, the last complete checkpoint" if last is not None
                else "it starts from the first batch (no checkpoint was complete)")
      raise ValueJaxError(f"cannot write the record checkpoint after batch {step}: {os.strerror(code)}",
                          self.directory, f"free space (or fix the permissions), then rerun the same command: "
                          f"{resume}") from None

  def _remove_unfinished(self) -> None:
    """Deletes the temporary folders of steps orbax never completed (`<step>.orbax-checkpoint-tmp*`)."""
    with contextlib.suppress(OSError):
      for name in os.listdir(self.directory):
        if _TMP_SUFFIX in name:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def restore_latest(self) -> tuple[int, dict[str, Any]] | None:
    """(step, state) of the newest intact checkpoint written for this fingerprint, or None."""
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    bad = []
    for step in steps:
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(),
                                                                       meta=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 - whatever orbax raises on a damaged step, the step is unusable
        bad.append((step, f"it cannot be read ({type(e).__name__})"))
        continue
      meta = restored["meta"]
      if meta.get("fingerprint") != self.fingerprint:
        logging.warning("checkpoints in %s were written for another config; removing them and starting "
                        "over", self.directory)
        self._manager.close()
        clear(self.directory)
        self._manager = ocp.CheckpointManager(self.directory, options=self._options)
        return None
      problem = _verify(restored["arrays"], meta.get("checksums"))
      if problem:
        bad.append((step, problem))
        continue
      for s, why in bad:
        logging.warning("record checkpoint %s is damaged (%s); resuming from step %d instead", s, why, step)
      return step, _merge(restored["arrays"], meta["values"])
    raise ValueJaxError(f"every record checkpoint is damaged ({'; '.join(f'step {s}: {w}' for s, w in bad)})",
                        self.directory, "rerun with --force to record from the start")
  def close(self) -> None:
    self._manager.close()


def _flat_arrays(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat_arrays(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = np.asarray(v)
  return out


def _digest(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _checksums(arrays: dict[str, Any]) -> dict[str, Any]:
  return {k: {"sha256": _digest(a), "shape": list(a.shape), "dtype": a.dtype.str}
          for k, a in _flat_arrays(arrays).items()}


def _verify(arrays: dict[str, Any], checksums: dict[str, Any] | None) -> str | None:
  """Why restored arrays differ from what was saved (shape, dtype, bytes, a non-finite sum), or None."""
  flat = _flat_arrays(arrays)
  for k, a in flat.items():
    if a.dtype.kind == "f" and not np.isfinite(a).all():
      return f"array {k} holds non-finite values"
  for k, want in (checksums or {}).items():
    a = flat.get(k)
    if a is None:
      return f"array {k} is missing"
    if list(a.shape) != want["shape"] or a.dtype.str != want["dtype"]:
      return f"array {k} has shape {list(a.shape)} {a.dtype.str}, saved as {want['shape']} {want['dtype']}"
    if _digest(a) != want["sha256"]:
      return f"the bytes of array {k} differ from those saved"
  return None


def _os_error_code(e: BaseException) -> int | None:
  """The errno behind a failed write: an OSError's, or the one tensorstore names in its message
  ("... No space left on device [os_error_code='28']"), looked for along the exception's causes."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno:
      return e.errno
    found = re.search(r"os_error_code='?(\d+)", str(e))
    if found:
      return int(found.group(1))
    e = e.__cause__ or e.__context__
  return None


class _DropOrbaxErrors(pylogging.Filter):
  def filter(self, record: pylogging.LogRecord) -> bool:
    return not (record.levelno >= pylogging.ERROR and "orbax" in record.pathname)


@contextlib.contextmanager
def _quiet_orbax_errors():
  """Orbax logs a failed write from each of its threads, traceback included, and then raises it: the raised
  error is what the user is told (in one paragraph for a full disk), so the logged copies are dropped."""
  logger, drop = pylogging.getLogger("absl"), _DropOrbaxErrors()
  logger.addFilter(drop)
  try:
    yield
  finally:
    logger.removeFilter(drop)


@contextlib.contextmanager
def _sigint_deferred():
  """A Ctrl-C pressed meanwhile is held and raised after the block (main thread only: signal handlers)."""
  if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    yield  # not the main thread, or interrupts are ignored here (a background job): nothing to hold
    return
  held: list[int] = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    if held:
      raise KeyboardInterrupt


def clear(directory: str) -> None:
  """Removes old checkpoints (another config, or --force) so they can never be resumed by mistake."""
  if os.path.isdir(directory):
    shutil.rmtree(directory)


def _split(tree: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """(numeric arrays, everything else as JSON) with the same nesting."""
  arrays, values = {}, {}
  for k, v in tree.items():
    if isinstance(v, dict):
      a, j = _split(v)
      if a:
        arrays[k] = a
      if j or not a:
        values[k] = j
    elif isinstance(v, np.ndarray) and v.dtype.kind in _NUMERIC:
      arrays[k] = v
    elif isinstance(v, np.ndarray):
      values[k] = {_ARRAY: v.tolist(), "dtype": v.dtype.str}
    else:
      values[k] = to_jsonable(v)
  return arrays, values


def _merge(arrays: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
  out = {}
  for k in list(arrays) + [k for k in values if k not in arrays]:
    a, v = arrays.get(k), values.get(k)
    if isinstance(a, dict) or (isinstance(v, dict) and _ARRAY not in v and a is None):
      out[k] = _merge(a or {}, v or {})
    elif a is not None:
      out[k] = np.asarray(a)
    elif isinstance(v, dict) and _ARRAY in v:
      out[k] = np.asarray(v[_ARRAY], dtype=np.dtype(v["dtype"]))
    else:
      out[k] = v
  return out


def nest(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
  """{"a/b": x} -> {"a": {"b": x}}: orbax stores nested dicts as folders, not names with slashes."""
  out: dict[str, Any] = {}
  for k, v in flat.items():
    node = out
    *parents, leaf = k.split(sep)
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def flatten(tree: dict[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) and v:
      out.update(flatten(v, sep, f"{prefix}{k}{sep}"))
    else:
      out[f"{prefix}{k}"] = v
  return out


def to_jsonable(value: Any) -> Any:
  """Texts and other record outputs as plain JSON values (dict keys as strings)."""
  return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
