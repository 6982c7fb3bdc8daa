"""One run per workdir: a lock file that names its holder (pid, host, command), taken over only when the
holder is provably gone.

Two runs writing one workdir would leave statistics of one config under the other's bookkeeping, with no
error. The second run refuses at once; a lock left by a killed run (same host, pid no longer alive, or a lock
file that was never completed) is taken over with a log line. A workdir that cannot be written at all
(read-only media) is read without a lock: no run can change it, and a run that only rereads it writes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from typing import Any, Iterator

from absl import logging

from valuejax.errors import ValueJaxError

LOCK = ".lock"
# A lock file with no readable holder is someone's half-written lock for this long, then it is stale.
_UNREADABLE_GRACE_S = 10.0
# Why a lock cannot be created in a workdir that nothing can write (read-only media, no permission).
READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _holder(path: str) -> dict[str, Any] | None:
  try:
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
    return d if isinstance(d, dict) and isinstance(d.get("pid"), int) else None
  except (OSError, ValueError):
    return None


def _stale(path: str, holder: dict[str, Any] | None) -> bool:
  if holder is None:
    try:
      return time.time() - os.path.getmtime(path) > _UNREADABLE_GRACE_S
    except FileNotFoundError:
      return True
  return holder.get("host") == socket.gethostname() and not _alive(holder["pid"])


@contextlib.contextmanager
def hold(root: str, command: str = "") -> Iterator[bool]:
  """Holds `<root>/.lock` for the duration; raises ValueJaxError when another live run holds it.

  Yields True when the lock is held (or already held by this process), False when the workdir cannot be
  written at all (read-only media, no write permission): then no run can change it, so a run that only
  reads it (a finished run reread, `launch.report`) needs no lock, and nothing is written. A live holder's
  lock still refuses such a reader."""
  path = os.path.join(root, LOCK)
  me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  held = None
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      holder = _holder(path)
      if holder is not None and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
        held = "reentrant"  # already held by this process (a stage inside launch.run)
        break
      if not _stale(path, holder):
        who = (f"process {holder['pid']} on {holder.get('host')} ({holder.get('command') or 'a valuejax run'}, "
               f"since {holder.get('started')})" if holder else "a run that is starting")
        raise ValueJaxError(f"the workdir is in use by {who}", path,
                            "wait for that run to finish, or use another --workdir; if that run is dead on "
                            "another machine, delete the lock file") from None
      try:
        os.remove(path)
      except FileNotFoundError:
        pass
      except OSError as e:
        if e.errno not in READ_ONLY:
          raise
        held = "read-only"  # a dead run's lock on a workdir nobody can write now: read it as it is
        break
      logging.warning("workdir lock %s was left by %s, which is no longer running; taking it over", path,
                      f"process {holder['pid']}" if holder else "an unfinished start")
      continue
    except OSError as e:
      if e.errno in READ_ONLY and os.path.isdir(root):
        held = "read-only"
        break
      raise ValueJaxError(f"cannot create the workdir lock: {e.strerror}", path,
                          "use a writable --workdir") from None
    try:
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(me, f)
    except OSError:
      # A lock with no readable holder would keep the next run waiting: none is better (a full disk).
      with contextlib.suppress(OSError):
        os.remove(path)
      raise
    held = "lock"
    break
  if held is None:
    raise ValueJaxError("could not take the workdir lock: another run took it at the same moment", path,
                        "run one command per workdir at a time")
  if held != "lock":
    if held == "read-only":
      logging.info("the workdir %s cannot be written: reading it without a lock; a stage that has to run "
                   "will stop with an error", root)
    yield held == "reentrant"
    return
  try:
    yield True
  finally:
    if (_holder(path) or {}).get("pid") == me["pid"]:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
